"""How good is the self-made reward? A run's training data checked against gold answers.

LIDR never sees gold answers: it prefers the model's translated English answer over its
native one. On prompts that do have a gold number (the bundled arithmetic family), this
script measures, per iteration and language, what that preference teaches:

    answers    the model's own answers to the training prompts: share correct (the imbalance)
    pairs      pairs kept after the gates, and among them
               chosen ok   the chosen answer gives the gold number
               rejected ok the rejected answer gives the gold number
               helps       chosen right, rejected wrong (the pair teaches the right answer)
               hurts       chosen wrong, rejected right (it teaches a wrong one)

With --gates-off the pairs are rebuilt from the run's responses and translations without
the quality gates (what a gates-off run would train on), and split into those the gates
keep and those they drop: whether the gates remove the pairs that teach wrong answers.
With --by-sample, a run with several answers per prompt (`generation.samples`) is split by
answer: the first (a one-answer run's) against the sampled ones.

Shares carry Wilson 95 % intervals. Usage:

    python benchmarks/pairs_vs_gold.py runs/evidence_arith [--gates-off] [--by-sample]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from lidr import rundir
from lidr.config import parse_config
from lidr.data.prompts import read_records, resolve_path
from lidr.evaluate.stats import wilson_interval
from lidr.stages.generate import sample_of
from lidr.stages.pairs import build_pairs, translation_task_ids
from lidr.store import read_records as read_stage
from lidr.text.answers import answers_match, extract_answer


def gold_answers(run_dir: Path) -> dict[tuple[str, str], str]:
    """(language, prompt id) -> gold answer, from the word problems (`task: math`) of every
    prompt block of the run's config (everyday instructions in a mix have no gold answer)."""
    cfg = parse_config(yaml.safe_load(rundir.config_path(run_dir).read_text(encoding="utf-8")))
    gold = {}
    for src in (s for block in cfg.prompts for s in block.sources if s.task == "math"):
        for lang in cfg.all_languages:
            spec = src.paths[lang] if src.paths else src.path.replace("{lang}", lang)
            for _, rec in read_records(resolve_path(spec, None)):
                if "answer" in rec:
                    gold[(lang, str(rec[src.id_key or "id"]))] = str(rec["answer"])
    return gold


def correct(text: str | None, gold: str) -> bool:
    return bool(text) and answers_match(extract_answer(text), gold)


def share(k: int, n: int) -> str:
    if not n:
        return "-"
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def ungated_pairs(it_dir: Path, cfg) -> list[dict]:
    """The iteration's pairs as pairing makes them, before the gates; each marked `kept` when
    the run's gates kept it (same prompt, language and sides)."""
    responses, translations = read_stage(it_dir / "responses"), read_stage(it_dir / "translations")
    task_ids = translation_task_ids(responses, set(), cfg.pairs.detect_translation_tasks)
    rows, _ = build_pairs(responses, translations, cfg.dominant_language, cfg.languages, task_ids,
                          cfg.pairs.translation_tasks, cfg.pairs.dominant_pairs)
    pairs_file = it_dir / "pairs" / rundir.PAIRS_FILE
    kept = {_key(p) for p in pq.read_table(pairs_file).to_pylist()} if pairs_file.is_file() else set()
    return [{**p, "kept": _key(p) in kept} for p in rows]


def _key(p: dict) -> tuple:
    return (p["language"], str(p["prompt_id"]), sample_of(p), p["chosen"][-1]["content"],
            p["rejected"][-1]["content"])


def by_answer(record: dict) -> str:
    """The first answer to a prompt (what a one-answer run makes) or a sampled one."""
    return "first answer" if sample_of(record) == 0 else "sampled answers"


def iteration_rows(it_dir: Path, gold: dict[tuple[str, str], str], pairs: list[dict] | None = None,
                   split=None, by_sample: bool = False) -> list[list[str]]:
    answers = defaultdict(lambda: [0, 0])
    for r in read_stage(it_dir / "responses"):
        g = gold.get((r["language"], str(r["prompt_id"])))
        if g is not None:
            key = f"{r['language']}, {by_answer(r)}" if by_sample else r["language"]
            answers[key][0] += correct(r["response"], g)
            answers[key][1] += 1
    if pairs is None:
        pairs_file = it_dir / "pairs" / rundir.PAIRS_FILE
        pairs = pq.read_table(pairs_file).to_pylist() if pairs_file.is_file() else []
    counts = defaultdict(lambda: defaultdict(int))
    for p in pairs:
        g = gold.get((p["language"], str(p["prompt_id"])))
        if g is None:
            continue
        c, r = correct(p["chosen"][-1]["content"], g), correct(p["rejected"][-1]["content"], g)
        key = p["language"] if p.get("via_language") is None else f"{p['language']} (via {p['via_language']})"
        if by_sample:
            key += f", {by_answer(p)}"
        if split:
            key += f", {split(p)}"
        for name, hit in (("n", True), ("chosen", c), ("rejected", r), ("helps", c and not r),
                          ("hurts", r and not c)):
            counts[key][name] += hit
    rows = []
    for lang, (k, n) in sorted(answers.items()):
        rows.append([it_dir.name, lang, f"answers {share(k, n)} (n {n})", "", "", "", ""])
    for key, c in sorted(counts.items()):
        n = c["n"]
        rows.append([it_dir.name, key, "", str(n), share(c["chosen"], n), share(c["rejected"], n),
                     f"{share(c['helps'], n)} / {share(c['hurts'], n)}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--gates-off", action="store_true", help="all pairs before the gates, split by kept/dropped")
    ap.add_argument("--by-sample", action="store_true", help="split by answer: the first, or a sampled one")
    args = ap.parse_args(argv)
    gold = gold_answers(args.run_dir)
    cfg = parse_config(yaml.safe_load(rundir.config_path(args.run_dir).read_text(encoding="utf-8")))
    header = ["iteration", "language", "model's own answers correct", "pairs kept", "chosen correct",
              "rejected correct", "helps / hurts"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for t, it_dir in rundir.iteration_dirs(args.run_dir).items():
        if t == 0 or not (it_dir / "responses").is_dir():
            continue
        if args.gates_off:
            if not (it_dir / "translations" / "_done.json").is_file():
                continue
            rows = iteration_rows(it_dir, gold, ungated_pairs(it_dir, cfg),
                                  lambda p: "kept by the gates" if p["kept"] else "dropped by the gates",
                                  by_sample=args.by_sample)
        else:
            rows = iteration_rows(it_dir, gold, by_sample=args.by_sample)
        for row in rows:
            print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
