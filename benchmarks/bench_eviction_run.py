"""The eviction change on a whole demo iteration: pairs and training before vs after.

    python benchmarks/bench_eviction_run.py

Runs one iteration of the demo config (bundled prompts, 12 per language, no evaluation)
twice, with generation.evict_every 0 (before) and 32 (after), and compares stage times,
the pairs (prompt, chosen, rejected of every row) and the training loss curves.
Results: benchmarks/results/eviction_run.json.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from common import machine, save
from lidr.config import demo_config
from lidr.store import read_json


def run(every: int, work: Path) -> dict:
    cfg = demo_config(iterations=1).model_dump(mode="json")
    cfg["evaluation"] = {"tasks": []}
    cfg["generation"]["evict_every"] = every
    path, run_dir = work / f"evict{every}.yaml", work / f"evict{every}"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lidr", "run", str(path), "-o", str(run_dir)],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    it = run_dir / "iter_1"
    pairs_file = it / "pairs" / "pairs.parquet"
    rows = pq.read_table(pairs_file).to_pylist() if pairs_file.is_file() else []
    train = read_json(it / "train" / "_done.json")
    return {"wall_s": round(time.perf_counter() - t0, 1),
            "generate_s": read_json(it / "responses" / "_done.json")["seconds"],
            "translate_s": read_json(it / "translations" / "_done.json")["seconds"],
            "train_s": train["seconds"], "losses": [h["loss"] for h in train["history"]],
            "pairs": [(r["prompt_id"], r["language"], str(r["prompt"]), str(r["chosen"]), str(r["rejected"]))
                      for r in rows]}


def main() -> None:
    work = Path("/tmp/lidr-bench-eviction-run")
    work.mkdir(parents=True, exist_ok=True)
    before, after = run(0, work), run(32, work)
    same = sorted(before["pairs"]) == sorted(after["pairs"])
    result = {"machine": machine(), "same_pairs": same, "n_pairs": [len(before["pairs"]), len(after["pairs"])],
              "before": {k: v for k, v in before.items() if k != "pairs"},
              "after": {k: v for k, v in after.items() if k != "pairs"}}
    for stage in ("generate_s", "translate_s"):
        result[f"{stage}_speedup"] = round(before[stage] / after[stage], 3)
    print(result)
    print(save("eviction_run", result))


if __name__ == "__main__":
    main()
