"""Generation and translation throughput of the hf engine on SmolLM2-135M-Instruct, and the
machine's floor for a 135M model.

    python benchmarks/bench_generation.py [--repeats 3] [--max-new-tokens 128]

Useful tokens/s = generated tokens kept (up to end of turn or stop string) / wall time.
Batch 1 is the one-prompt-at-a-time loop. "waste" = decode slots spent on rows that had
finished (or were padding) / all decode slots. Results: benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse

import torch

from common import demo_prompts, machine, median, save, timed
from lidr.engines.base import Sampling
from lidr.engines.hf import HFEngine
from lidr.models import bundled_model_dir
from lidr.stages import generate, translate


def throughput(engine: HFEngine, requests, sampling, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        engine.slots = engine.useful = 0
        seconds, out = timed(lambda: engine.generate(requests, sampling))
        tokens = sum(c.n_tokens for c in out)
        runs.append({"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds,
                     "waste": 1 - engine.useful / max(engine.slots, 1)})
    best = median([r["tok_s"] for r in runs])
    return {"requests": len(requests), "tok_s": round(best, 1), "runs": runs,
            "tokens": runs[0]["tokens"], "waste": round(runs[0]["waste"], 3),
            "texts": [c.text for c in out]}


def floor_estimate(model) -> dict:
    """Peak bf16 matmul FLOP/s and copy bandwidth measured here, against the model's needs."""
    a = torch.randn(2048, 2048, dtype=torch.bfloat16)
    b = torch.randn(2048, 2048, dtype=torch.bfloat16)
    a @ b
    seconds, _ = timed(lambda: [a @ b for _ in range(20)])
    flops = 20 * 2 * 2048**3 / seconds
    x = torch.empty(2**28, dtype=torch.bfloat16)  # 512 MiB
    y = torch.empty_like(x)
    y.copy_(x)
    seconds, _ = timed(lambda: [y.copy_(x) for _ in range(5)])
    bandwidth = 5 * 2 * x.numel() * 2 / seconds  # bytes read + written
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    # Per generated token: 2 FLOPs per weight (the tied embedding is used once, as the head).
    flops_per_token = 2 * n_params
    weight_bytes = n_params * 2
    floor = {}
    for batch in (1, 8, 32, 64):
        step = max(batch * flops_per_token / flops, weight_bytes / bandwidth)
        floor[batch] = round(batch / step, 1)
    return {"matmul_bf16_gflops": round(flops / 1e9, 1), "copy_gb_s": round(bandwidth / 1e9, 1),
            "params_m": round(n_params / 1e6, 1), "layers": cfg.num_hidden_layers,
            "gflop_per_token": round(flops_per_token / 1e9, 3), "floor_tok_s": floor}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    model_dir = str(bundled_model_dir())
    prompts = demo_prompts(16)  # 16 per language x en/es/fr/de = 64 requests
    requests = generate.generation_requests(prompts, args.max_new_tokens, None)
    sampling = Sampling(repetition_penalty=1.1)  # the demo's generation settings, greedy
    result = {"machine": machine(), "model": "SmolLM2-135M-Instruct", "max_new_tokens": args.max_new_tokens,
              "generation": {}}
    engine = HFEngine(model_dir, batch_size=32)
    result["dtype"] = str(engine.dtype)
    result["floor"] = floor_estimate(engine.model)
    cases = [("batch 1 (one at a time)", 1, True, requests[::8]), ("batch 8", 8, True, requests),
             ("batch 32", 32, True, requests), ("batch 64", 64, True, requests),
             ("batch 32 unsorted", 32, False, requests)]
    texts = {}
    for name, batch, sort, reqs in cases:
        engine.batch_size, engine.sort_by_length = batch, sort
        r = throughput(engine, reqs, sampling, args.repeats)
        print(f"{name}: {r['tok_s']} tok/s over {r['requests']} requests, waste {r['waste']}", flush=True)
        texts[name] = r.pop("texts")
        result["generation"][name] = r
    # Greedy decoding in bf16: does the batch shape change any answer?
    for name, *_ in cases[1:]:
        same = sum(a == b for a, b in zip(texts[name], texts["batch 32"]))
        result["generation"][name]["same_text_as_batch_32"] = f"{same}/{len(requests)}"
    engine.batch_size, engine.sort_by_length = 32, True
    responses = [generate.response_record(q, c) for q, c in zip(requests, engine.generate(requests, sampling))]
    # The translation stage on those responses, as the pipeline builds it.
    treqs = translate.translation_requests(responses, "en", ["es", "fr", "de"], set(), 2.0, 256)
    for batch in (8, 32):
        engine.batch_size, engine.sort_by_length = batch, True
        r = throughput(engine, treqs, sampling, args.repeats)
        print(f"translate batch {batch}: {r['tok_s']} tok/s over {r['requests']} requests, waste {r['waste']}",
              flush=True)
        result.setdefault("translation", {})[f"batch {batch}"] = {k: v for k, v in r.items() if k != "texts"}
    print(save("generation", result))


if __name__ == "__main__":
    main()
