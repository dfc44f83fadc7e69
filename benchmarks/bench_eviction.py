"""Before/after for the largest cost of a demo iteration, the translation stage: the hf
engine run with each batch to its end (before) vs dropping finished rows from the batch
every N decode steps (after). Same requests, same greedy settings, in one process.

    python benchmarks/bench_eviction.py [--repeats 3] [--every 0,16,32]

Also checks that results do not change: the texts of every setting against evict_every=0.
Results: benchmarks/results/eviction.json.
"""

from __future__ import annotations

import argparse

from bench_generation import throughput
from common import demo_prompts, machine, save
from lidr.engines.base import Sampling
from lidr.engines.hf import HFEngine
from lidr.models import bundled_model_dir
from lidr.stages import generate, translate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--every", default="0,16,32")
    ap.add_argument("--per-language", type=int, default=12)  # the demo's iteration size
    args = ap.parse_args()
    engine = HFEngine(str(bundled_model_dir()), batch_size=32)
    sampling = Sampling(repetition_penalty=1.1)  # the demo's settings, greedy
    prompts = demo_prompts(args.per_language)
    requests = generate.generation_requests(prompts, 128, None)
    stage = {"generate": requests}
    responses = [generate.response_record(q, c) for q, c in zip(requests, engine.generate(requests, sampling))]
    stage["translate"] = translate.translation_requests(responses, "en", ["es", "fr", "de"], set(), 2.0, 256)
    result = {"machine": machine(), "batch_size": 32, "stages": {}}
    for name, reqs in stage.items():
        texts, rows = {}, {}
        for _ in range(args.repeats):  # settings interleaved within each repeat
            for every in map(int, args.every.split(",")):
                engine.evict_every = every
                r = throughput(engine, reqs, sampling, 1)
                texts[every] = r.pop("texts")
                rows.setdefault(every, []).append(r["runs"][0])
        out = result["stages"][name] = {"requests": len(reqs)}
        base = None
        for every, runs in rows.items():
            tok_s = sorted(x["tok_s"] for x in runs)[len(runs) // 2]
            base = base or tok_s
            same = sum(a == b for a, b in zip(texts[every], texts[0]))
            out[f"evict_every={every}"] = {"tok_s": round(tok_s, 1), "speedup": round(tok_s / base, 3),
                                           "waste": round(runs[0]["waste"], 3), "tokens": runs[0]["tokens"],
                                           "seconds": [round(x["seconds"], 1) for x in runs],
                                           "same_text_as_before": f"{same}/{len(reqs)}"}
            print(name, every, out[f"evict_every={every}"], flush=True)
    print(save("eviction", result))


if __name__ == "__main__":
    main()
