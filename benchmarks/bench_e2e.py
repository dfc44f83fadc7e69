"""One LIDR iteration end to end, by stage, as prompts and languages grow.

    python benchmarks/bench_e2e.py [--points p6L4,p12L4,p24L4,p12L2,p12L6]

Every point is the demo's settings (SmolLM2-135M-Instruct, 128-token answers, 256-token
translations, quality gates on, training batch 4) for one iteration without evaluation, on
Alpagasus prompts from ../shared/data (11 languages, so that 6 are possible): pN = N prompts
per language, LK = K languages including English. Stage times are the ones the run records
in its _done.json files; wall = the whole `lidr run` process, model loading included.
Results: benchmarks/results/e2e.json.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import machine, save
from lidr.config import demo_config
from lidr.store import read_json

ROOT = Path(__file__).resolve().parents[1]
ALPAGASUS = ROOT.parent / "shared" / "data" / "alpagasus" / "id_0_1000" / "{lang}.jsonl"
LANGS = ["es", "fr", "de", "ru", "zh"]


def config(prompts: int, languages: int) -> dict:
    cfg = demo_config(iterations=1).model_dump(mode="json")
    cfg.update(name=None, languages=LANGS[: languages - 1],
               prompts=[{"path": str(ALPAGASUS), "limit": prompts}], evaluation={"tasks": []})
    return cfg


def run_point(name: str, work: Path) -> dict:
    p, l = map(int, re.fullmatch(r"p(\d+)L(\d+)", name).groups())
    cfg_file, run_dir = work / f"{name}.yaml", work / name
    cfg_file.write_text(yaml.safe_dump(config(p, l)), encoding="utf-8")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lidr", "run", str(cfg_file), "-o", str(run_dir)],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    it = run_dir / "iter_1"
    gen, tr = read_json(it / "responses" / "_done.json"), read_json(it / "translations" / "_done.json")
    pairs, train = read_json(it / "pairs" / "_done.json"), read_json(it / "train" / "_done.json")
    return {"prompts_per_language": p, "languages": l, "wall_s": round(wall, 1),
            "generate_s": gen["seconds"], "generate_tokens": gen["tokens"], "responses": gen["n"],
            "translate_s": tr["seconds"], "translate_tokens": tr["tokens"], "translations": tr["n"],
            "pairs_s": pairs["seconds"], "pairs": pairs["n"], "train_s": train["seconds"],
            "train_steps": train["steps"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", default="p6L4,p12L4,p24L4,p12L2,p12L6")
    ap.add_argument("--work", default="/tmp/lidr-bench-e2e")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "points": {}}
    for name in args.points.split(","):
        result["points"][name] = r = run_point(name, work)
        print(name, r, flush=True)
    print(save("e2e", result))


if __name__ == "__main__":
    main()
