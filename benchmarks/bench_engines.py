"""The ct2 engine (CTranslate2) against the hf engine (transformers) on the CPU, in one run.

    python benchmarks/bench_engines.py [--per-language 16] [--skip-int8]

Three workloads on SmolLM2-135M-Instruct, each built as the pipeline builds it:
generation (demo prompts, 128 new tokens), translation (the paper's prompt, prefilled
`<translated>`, stop at `</translated>`, per-request caps, on the hf engine's answers) and
evaluation (held-out arithmetic with the mgsm template, 192 new tokens). Greedy,
repetition penalty 1.0. Each at batch 1 (a subset, one request at a time), 32 and 64.
Useful tokens/s = tokens kept / wall time; exact match = share of greedy texts equal to
the hf engine's in float32 at batch 32. Results: benchmarks/results/engines.json.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common import demo_prompts, machine, save, timed
from lidr.engines.base import ChatRequest, Sampling
from lidr.engines.ct2 import CT2Engine
from lidr.engines.hf import HFEngine
from lidr.evaluate.tasks.mgsm import load_math_items
from lidr.models import bundled_model_dir
from lidr.stages import generate, translate
from lidr.text.templates import render, resolve_template

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
HELDOUT = Path(__file__).resolve().parents[1] / "src" / "lidr" / "data" / "demo" / "heldout_math"


def cpu_flags() -> list[str]:
    flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split(":", 1)[1].split())
    return [f for f in FLAGS if f in flags]


def workloads(model_dir: str, per_language: int) -> dict[str, list[ChatRequest]]:
    prompts = demo_prompts(per_language)
    gen_reqs = generate.generation_requests(prompts, 128, None)
    hf = HFEngine(model_dir, dtype="float32", batch_size=32)
    responses = [generate.response_record(q, c) for q, c in zip(gen_reqs, hf.generate(gen_reqs, Sampling()))]
    hf.close()
    tr_reqs = translate.translation_requests(responses, "en", ["es", "fr", "de"], set(), 2.0, 256)
    template = resolve_template("mgsm")
    ev_reqs = [ChatRequest(f"{lang}-{it['id']}", [{"role": "user", "content": render(template, it["question"], lang)}],
                           max_new_tokens=192)
               for lang in ("en", "es", "fr", "de") for it in load_math_items(HELDOUT / f"{lang}.jsonl")[:per_language]]
    return {"generation": gen_reqs, "translation": tr_reqs, "evaluation": ev_reqs}


def machine_and_workloads(per_language: int) -> tuple[dict, str, dict[str, list[ChatRequest]]]:
    """The machine (printed with its CPU flags), the bundled model's directory and the three workloads."""
    info = machine() | {"cpu_flags": cpu_flags(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}", flush=True)
    model_dir = str(bundled_model_dir())
    return info, model_dir, workloads(model_dir, per_language)


def run_workloads(engine, name: str, loads: dict[str, list[ChatRequest]], runs: dict,
                  texts: dict[str, dict[str, list[str]]]) -> None:
    """Each workload once on `engine` at its batch size: runs["NAME: WORK"] = timings, texts[WORK][NAME]."""
    for work, reqs in loads.items():
        seconds, out = timed(lambda: engine.generate(reqs, Sampling()))
        tokens = sum(c.n_tokens for c in out)
        texts.setdefault(work, {})[name] = [c.text for c in out]
        runs[f"{name}: {work}"] = {"requests": len(reqs), "seconds": round(seconds, 2), "tokens": tokens,
                                   "tok_s": round(tokens / seconds, 1)}
        print(f"{name}: {work}: {tokens / seconds:.1f} tok/s ({tokens} tokens, {seconds:.1f} s)", flush=True)


def measure(engine, requests, batch: int) -> dict:
    engine.batch_size = batch
    seconds, out = timed(lambda: engine.generate(requests, Sampling()))
    tokens = sum(c.n_tokens for c in out)
    return {"requests": len(requests), "seconds": round(seconds, 2), "tokens": tokens,
            "tok_s": round(tokens / seconds, 1), "texts": [c.text for c in out]}


def float32_baselines(model_dir: str, requests: list[ChatRequest], batch1: int, result: dict) -> dict[int, list[str]]:
    """hf and ct2 float32 on `requests` at batch 1 (the first `batch1`), 32 and 64, into
    result["runs"]; the ct2 texts per batch, to compare another engine's against."""
    texts: dict[int, list[str]] = {}
    for name, make in (("hf float32", lambda: HFEngine(model_dir, dtype="float32")),
                       ("ct2 float32", lambda: CT2Engine(model_dir, compute_type="float32"))):
        engine = make()
        for batch in (1, 32, 64):
            r = measure(engine, requests[:batch1] if batch == 1 else requests, batch)
            texts[batch] = r.pop("texts")
            if name == "ct2 float32":
                r["ratio_vs_hf"] = round(r["tok_s"] / result["runs"][f"hf float32 batch {batch}"]["tok_s"], 2)
            result["runs"][f"{name} batch {batch}"] = r
            print(f"{name} batch {batch}: {r}", flush=True)
        engine.close()
    return texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-language", type=int, default=16)
    ap.add_argument("--batch1", type=int, default=6, help="requests run one at a time per workload")
    ap.add_argument("--skip-int8", action="store_true")
    args = ap.parse_args()
    info, model_dir, loads = machine_and_workloads(args.per_language)
    engines = [("hf float32", lambda: HFEngine(model_dir, dtype="float32")),
               ("ct2 float32", lambda: CT2Engine(model_dir, compute_type="float32"))]
    if not args.skip_int8:
        engines.append(("ct2 int8", lambda: CT2Engine(model_dir, compute_type="int8")))
    result = {"machine": info, "model": "SmolLM2-135M-Instruct", "sampling": "greedy, repetition penalty 1.0",
              "runs": {}}
    reference: dict[str, list[str]] = {}
    for name, make in engines:
        load_s, engine = timed(make)
        result["runs"][name] = {"load_seconds": round(load_s, 1)}
        for work, reqs in loads.items():
            for batch, subset in ((1, reqs[: args.batch1]), (32, reqs), (64, reqs)):
                r = measure(engine, subset, batch)
                texts = r.pop("texts")
                if name == "hf float32" and batch == 32:
                    reference[work] = texts
                result["runs"][name][f"{work} batch {batch}"] = r | {"_texts": texts}
                print(f"{name} {work} batch {batch}: {r['tok_s']} tok/s ({r['tokens']} tokens, "
                      f"{r['seconds']} s)", flush=True)
        engine.close()
    for name, runs in result["runs"].items():  # exact match against hf float32 batch 32
        for key, r in runs.items():
            if isinstance(r, dict) and "_texts" in r:
                ref = reference[key.split(" batch")[0]]
                texts = r.pop("_texts")
                same = sum(a == b for a, b in zip(texts, ref))
                r["exact_match"] = f"{same}/{len(texts)}"
    hf = result["runs"]["hf float32"]
    result["speedup_vs_hf"] = {name: {k: round(r["tok_s"] / hf[k]["tok_s"], 2) for k, r in runs.items()
                                      if isinstance(r, dict) and "tok_s" in r}
                               for name, runs in result["runs"].items() if name != "hf float32"}
    print(result["speedup_vs_hf"])
    print(save("engines", result))


if __name__ == "__main__":
    main()
