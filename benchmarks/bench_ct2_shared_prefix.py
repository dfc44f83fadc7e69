"""The ct2 engine with and without its shared-head prefill, against the hf engine, in one run.

    python benchmarks/bench_ct2_shared_prefix.py [--per-language 16] [--batch 64]

Every row of a batch starts with the same tokens (the chat template's system turn; for a
translation request, the instructions before the text). The ct2 engine runs that head once,
for one row, and copies its state to every row (CTranslate2's `static_prompt`), instead of
running it once per row. Measured on the three workloads of bench_engines.py (generation,
translation, evaluation; greedy, repetition penalty 1.0) at one batch size, each engine in
turn in one process, with the share of texts equal to the hf engine's in float32. On a CPU
with bf16 instructions the hf engine's default (bfloat16) is measured too. Results:
benchmarks/results/ct2_shared_prefix.json.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import lidr.engines.ct2 as ct2_engine
from bench_engines import machine_and_workloads, run_workloads
from common import save
from lidr.chat import format_chat
from lidr.engines.ct2 import CT2Engine
from lidr.engines.hf import HFEngine, pick_dtype

SHARED = ct2_engine.shared_prefix_length


def without_shared_head(prompts: list[list[int]]) -> int:
    return 0


def shared_share(engine: CT2Engine, reqs, batch: int) -> dict:
    """Mean prompt tokens, and mean tokens shared by the batch (as the engine batches them)."""
    tok = engine.tokenizer
    ids = tok([format_chat(tok, r.messages, r.prefill) for r in reqs], add_special_tokens=False)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), reqs[i].max_new_tokens, i))
    shared = []
    for k in range(0, len(order), batch):
        chunk = [ids[i] for i in order[k:k + batch]]
        shared += [SHARED(chunk)] * len(chunk)
    return {"prompt_tokens": round(statistics.mean(map(len, ids)), 1), "shared_tokens": round(statistics.mean(shared), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-language", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    info, model, loads = machine_and_workloads(args.per_language)
    settings = [("hf float32", lambda: HFEngine(model, dtype="float32", batch_size=args.batch), SHARED)]
    if pick_dtype("auto", "cpu") == torch.bfloat16:
        settings.append(("hf bfloat16", lambda: HFEngine(model, dtype="bfloat16", batch_size=args.batch), SHARED))
    ct2 = lambda: CT2Engine(model, compute_type="float32", batch_size=args.batch)  # noqa: E731
    settings += [("ct2 float32, every row its own head", ct2, without_shared_head),
                 ("ct2 float32, shared head once", ct2, SHARED)]
    result = {"machine": info, "model": "SmolLM2-135M-Instruct", "batch": args.batch, "runs": {}, "prompts": {}}
    texts: dict[str, dict[str, list[str]]] = {}
    for name, make, shared in settings:
        ct2_engine.shared_prefix_length = shared
        engine = make()
        if isinstance(engine, CT2Engine) and not result["prompts"]:
            result["prompts"] = {work: shared_share(engine, reqs, args.batch) for work, reqs in loads.items()}
        run_workloads(engine, name, loads, result["runs"], texts)
        engine.close()
    ct2_engine.shared_prefix_length = SHARED
    base, own_head = settings[0][0], settings[-2][0]
    for key, r in result["runs"].items():
        name, work = key.rsplit(": ", 1)
        r["ratio_vs_hf_float32"] = round(r["tok_s"] / result["runs"][f"{base}: {work}"]["tok_s"], 2)
        r["ratio_vs_ct2_own_head"] = round(r["tok_s"] / result["runs"][f"{own_head}: {work}"]["tok_s"], 2)
        same = sum(a == b for a, b in zip(texts[work][name], texts[work][base]))
        r["same_text_as_hf_float32"] = f"{same}/{len(texts[work][base])}"
        print(f"{key}: {r['ratio_vs_hf_float32']}x hf float32, {r['ratio_vs_ct2_own_head']}x ct2 own head, "
              f"texts equal to hf float32's {r['same_text_as_hf_float32']}")
    print(result["prompts"])
    print(save("ct2_shared_prefix", result))


if __name__ == "__main__":
    main()
