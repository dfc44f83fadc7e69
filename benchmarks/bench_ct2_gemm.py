"""CTranslate2's matrix-multiply back ends in float32, one process each, against the hf engine.

    python benchmarks/bench_ct2_gemm.py [--per-language 16]

CTranslate2 picks its GEMM library from the CPU vendor (oneDNN on AMD, Intel MKL on Intel)
and reads two variables when it loads: CT2_USE_MKL forces MKL on or off, and
CT2_USE_EXPERIMENTAL_PACKED_GEMM packs the weights once for the GEMM calls. Whether either
makes the ct2 engine faster is measured here on the generation workload of bench_engines.py
(64 demo prompts, en/es/fr/de, 128 new tokens, greedy, batch 64), each variant in a fresh
process (the variables are read at load), the hf engine in float32 as the baseline, and the
share of texts equal to ct2's default. Results: benchmarks/results/ct2_gemm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench_engines import cpu_flags
from common import demo_prompts, machine, save, timed

VARIANTS = {
    "hf float32": {},
    "ct2 default": {},
    "ct2 CT2_USE_MKL=1": {"CT2_USE_MKL": "1"},
    "ct2 CT2_USE_MKL=1 + packed": {"CT2_USE_MKL": "1", "CT2_USE_EXPERIMENTAL_PACKED_GEMM": "1"},
    "ct2 packed": {"CT2_USE_EXPERIMENTAL_PACKED_GEMM": "1"},
}


def child(engine: str, per_language: int) -> dict:
    """Runs in its own process: one engine, one warm-up call, then the timed workload."""
    from lidr.engines.base import Sampling
    from lidr.models import bundled_model_dir
    from lidr.stages import generate

    model = str(bundled_model_dir())
    requests = generate.generation_requests(demo_prompts(per_language), 128, None)
    if engine == "hf":
        from lidr.engines.hf import HFEngine
        eng = HFEngine(model, dtype="float32", batch_size=64)
    else:
        from lidr.engines.ct2 import CT2Engine
        eng = CT2Engine(model, compute_type="float32", batch_size=64)
    eng.generate(requests[:4], Sampling())
    seconds, out = timed(lambda: eng.generate(requests, Sampling()))
    tokens = sum(c.n_tokens for c in out)
    return {"seconds": round(seconds, 1), "tokens": tokens, "tok_s": round(tokens / seconds, 1),
            "texts": [c.text for c in out]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-language", type=int, default=16)
    ap.add_argument("--child", choices=("hf", "ct2"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.per_language)))
        return
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(cpu_flags())}", flush=True)
    runs: dict[str, dict] = {}
    for name, env in VARIANTS.items():
        cmd = [sys.executable, __file__, "--child", name.split()[0], "--per-language", str(args.per_language)]
        proc = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True, check=True)
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    default, hf = runs["ct2 default"].pop("texts"), runs["hf float32"]
    for name, r in runs.items():
        texts = r.pop("texts", default)
        r["ratio_vs_hf"] = round(r["tok_s"] / hf["tok_s"], 2)
        r["texts_equal_to_ct2_default"] = f"{sum(a == b for a, b in zip(texts, default))}/{len(default)}"
        print(f"{name}: {r}", flush=True)
    print(f"saved to {save('ct2_gemm', {'machine': info, 'flags': cpu_flags(), 'runs': runs})}")


if __name__ == "__main__":
    main()
