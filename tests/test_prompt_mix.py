"""A run whose training block mixes word problems and everyday instructions (`mix:`)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import yaml
from helpers import write_config, write_prompt_set

from lidr.store import read_json


def test_a_run_on_a_mix_of_word_problems_and_instructions(tmp_path, translating_model_dir):
    instructions = write_prompt_set(tmp_path / "prompts", n=2)  # ids p0, p1
    mix = {"mix": [
        {"path": "bundled:arith/train_1/{lang}.jsonl", "text_key": "question", "task": "math", "limit": 3,
         "samples": 2},  # two answers to each word problem, one (generation's) to each instruction
        {"path": str(instructions / "{lang}.jsonl"), "max_new_tokens": 6},  # generation's cap is 24
    ]}
    cfg = write_config(tmp_path / "mix.yaml", translating_model_dir, instructions, iterations=1,
                       generation={"engine": "hf", "sample_temperature": 0.7})
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "prompts": [mix]}), encoding="utf-8")

    def lidr(*args):
        proc = subprocess.run([sys.executable, "-m", "lidr", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    plan = lidr("run", str(cfg), "-o", str(tmp_path / "run"), "--dry-run")
    assert "iteration 1: prompts en 5, es 5, fr 5 (math 3, instruction 2 in each)" in plan
    assert "24 responses (1 or 2 per prompt)" in plan  # 3 x (3 x 2 + 2)
    lidr("run", str(cfg), "-o", str(tmp_path / "run"))

    it = tmp_path / "run" / "iter_1"
    responses = pq.read_table(it / "responses").to_pylist()
    ids = ["train_1-0001", "train_1-0002", "train_1-0003", "p0", "p1"]
    assert sorted(r["prompt_id"] for r in responses if r["language"] == "fr" and not r["sample"]) == sorted(ids)
    # Each source's number of answers: the word problems' 2, the instructions' 1.
    answers = Counter((r["prompt_id"], r["language"]) for r in responses)
    assert answers == {(i, lang): 2 if i.startswith("train_1-") else 1 for i in ids for lang in ("en", "es", "fr")}
    by_id = {(r["prompt_id"], r["language"]): r["prompt"] for r in responses}
    assert by_id[("train_1-0002", "es")].startswith("Un libro cuesta 4 euros")
    # Each source's answers under its own token cap: the instructions' 6, the word problems' 24.
    tokens = {kind: [r["n_tokens"] for r in responses if r["prompt_id"].startswith("p") == (kind == "instruction")]
              for kind in ("instruction", "math")}
    assert max(tokens["instruction"]) <= 6 < max(tokens["math"]) <= 24, tokens
    pairs = pq.read_table(it / "pairs" / "pairs.parquet").to_pylist()
    assert {p["prompt_id"] in ("p0", "p1") for p in pairs} == {True, False}  # pairs of both kinds
    stats = read_json(it / "pairs" / "_done.json")["languages"]
    for lang, s in stats.items():
        mine = [p for p in pairs if p["language"] == lang]
        assert s["kept_by_task"] == {
            "instruction": sum(p["prompt_id"] in ("p0", "p1") for p in mine),
            "math": sum(p["prompt_id"].startswith("train_1-") for p in mine)}
        assert sum(s["kept_by_task"].values()) == s["kept"] == len(mine)
    # The saved config keeps the mix, and the same command on the finished run is accepted (a resume).
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["prompts"][0]["mix"][0]["task"] == "math"
    lidr("run", str(cfg), "-o", str(tmp_path / "run"))
    lidr("report", str(tmp_path / "run"))
    text = (tmp_path / "run" / "report.md").read_text()
    assert "| iteration | language | kept | of them from sampled answers | kept by prompt kind | dropped |" in text
    es = stats["es"]["kept_by_task"]
    assert stats["es"]["kept_sampled"] == sum(1 for p in pairs if p["language"] == "es" and p["sample"])
    assert (f"| 1 | es | {stats['es']['kept']} | {stats['es']['kept_sampled']} | "
            f"instruction {es['instruction']}, math {es['math']} |") in text
