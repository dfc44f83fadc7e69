"""DPO+NLL training throughput and peak memory on SmolLM2-135M-Instruct, by setting.

    python benchmarks/bench_training.py [--repeats 3] [--pairs 8]

Each setting trains in a fresh process (so peak RSS is its own) on the same pairs, batch 4,
max_length 384 (the demo's): pairs/s = pairs / wall time of trainer.train(), which includes
the one-off reference log-prob pass where it is precomputed. Pairs are made from the bundled
demo prompts with answers of about 120 tokens (what the demo trains on; throughput depends
on lengths, not on content). Results: benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from common import demo_prompts, machine, median, save

SETTINGS = {
    "fp32, reference precomputed (default)": {},
    "fp32, reference held": {"precompute_ref_log_probs": False},
    "bf16 autocast, reference precomputed": {"precision": "bf16"},
    "LoRA r=16, fp32, reference precomputed": {"lora": {"enabled": True, "r": 16, "alpha": 32},
                                               "learning_rate": 5e-4},
    "gradient checkpointing, fp32, reference precomputed": {"gradient_checkpointing": True},
}
BASE = {"learning_rate": 5e-6, "batch_size": 4, "epochs": 1, "max_length": 384, "warmup_ratio": 0.0}


def make_pairs(path: Path, n: int) -> None:
    from lidr.store import write_parquet_atomic

    p = demo_prompts(40)
    en, es = [x.text for x in p["en"]], [x.text for x in p["es"]]

    def answer(k: int, texts: list[str]) -> str:  # ~120 tokens of real sentences
        return " ".join(texts[(k + j) % len(texts)] for j in range(5))

    rows = [{"prompt": [{"role": "user", "content": es[k]}],
             "chosen": [{"role": "assistant", "content": answer(k, es)}],
             "rejected": [{"role": "assistant", "content": answer(k + 7, en)}]} for k in range(n)]
    write_parquet_atomic(path, rows)


def child(args) -> None:
    """One training run; prints its summary and peak RSS as JSON."""
    import os

    os.environ["TQDM_DISABLE"] = "1"
    from lidr.config import TrainingConfig
    from lidr.models import bundled_model_dir
    from lidr.stages.train import train_dpo

    cfg = TrainingConfig.model_validate({**BASE, **json.loads(args.setting)})
    work = Path(args.work)
    s = train_dpo(str(bundled_model_dir()), Path(args.pairs_file), work / "model", cfg, work / "trainer",
                  log=lambda m: None)
    s["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(s))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--work", default="/tmp/lidr-bench-training")
    ap.add_argument("--setting")
    ap.add_argument("--pairs-file")
    args = ap.parse_args()
    if args.setting:
        return child(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pairs_file = work / "pairs.parquet"
    make_pairs(pairs_file, args.pairs)
    result = {"machine": machine(), "model": "SmolLM2-135M-Instruct", "pairs": args.pairs, "base": BASE,
              "settings": {}}
    for _ in range(args.repeats):  # settings interleaved, so drift in the machine hits all alike
        for name, over in SETTINGS.items():
            out = subprocess.run([sys.executable, __file__, "--setting", json.dumps(over), "--pairs-file",
                                  str(pairs_file), "--work", str(work / "run")], capture_output=True, text=True)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            s = json.loads(line[7:])
            runs = result["settings"].setdefault(name, {"runs": []})["runs"]
            runs.append({"train_seconds": s["train_seconds"], "steps": s["steps"],
                         "pairs_s": s["pairs"] / s["train_seconds"], "peak_rss_gb": round(s["peak_rss_gb"], 2),
                         "losses": [h["loss"] for h in s["history"]]})
            print(f"{name}: {runs[-1]['pairs_s']:.3f} pairs/s, peak {runs[-1]['peak_rss_gb']:.2f} GB, "
                  f"losses {runs[-1]['losses']}", flush=True)
    base = None
    for name, r in result["settings"].items():
        r["pairs_s"] = round(median([x["pairs_s"] for x in r["runs"]]), 4)
        r["peak_rss_gb"] = round(median([x["peak_rss_gb"] for x in r["runs"]]), 2)
        base = base or r["pairs_s"]
        r["speed_vs_default"] = round(r["pairs_s"] / base, 3)
    print(save("training", result))


if __name__ == "__main__":
    main()
