"""Two CTranslate2 batches at once, one core each, against one batch on both cores, in one run.

    python benchmarks/bench_ct2_parallel.py [--per-language 16]

On two cores a 135M model's step is small, so splitting it over two threads costs about as
much in synchronisation as it gains. CTranslate2 can instead run `inter_threads` batches in
parallel, each on its own cores: the ct2 engine's `generation.ct2.workers` (default 2 on a
CPU). Measured on the three workloads of bench_engines.py (generation, translation,
evaluation; greedy, repetition penalty 1.0), 64 requests at batch 64 (workers 2: two batches
of 32 at once), against the hf engine in float32 at the same batch in the same process, with
the share of texts equal to the hf engine's. Results: benchmarks/results/ct2_parallel.json.
"""

from __future__ import annotations

import argparse

from bench_engines import machine_and_workloads, run_workloads
from common import save
from lidr.engines.ct2 import CT2Engine
from lidr.engines.hf import HFEngine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-language", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    info, model, loads = machine_and_workloads(args.per_language)
    settings = [
        ("hf float32", lambda: HFEngine(model, dtype="float32", batch_size=args.batch)),
        ("ct2 float32, workers 1", lambda: CT2Engine(model, compute_type="float32", batch_size=args.batch, workers=1)),
        ("ct2 float32, workers 2", lambda: CT2Engine(model, compute_type="float32", batch_size=args.batch, workers=2)),
    ]
    result = {"machine": info, "model": "SmolLM2-135M-Instruct", "batch": args.batch, "runs": {}}
    texts: dict[str, dict[str, list[str]]] = {}
    for name, make in settings:
        engine = make()
        run_workloads(engine, name, loads, result["runs"], texts)
        engine.close()
    base = settings[0][0]
    for key, r in result["runs"].items():
        name, work = key.rsplit(": ", 1)
        r["ratio_vs_hf"] = round(r["tok_s"] / result["runs"][f"{base}: {work}"]["tok_s"], 2)
        same = sum(a == b for a, b in zip(texts[work][name], texts[work][base]))
        r["same_text_as_hf"] = f"{same}/{len(texts[work][base])}"
        print(f"{key}: {r['ratio_vs_hf']}x hf float32, texts equal to hf's {r['same_text_as_hf']}")
    print(save("ct2_parallel", result))


if __name__ == "__main__":
    main()
