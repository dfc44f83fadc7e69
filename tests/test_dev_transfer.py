"""benchmarks/dev_transfer.py: models against M0 on several splits, pooled, and how their gains agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dev_transfer.py"
TEMPLATES = ["t1", "t2", "t3", "t4"]
N = 40  # items per language and split, 10 per template


def data(folder: Path, split: str) -> str:
    """The split's data files: each item's id and template, as the bundled splits name them."""
    for lang in ("en", "es", "fr"):
        (folder / split).mkdir(parents=True, exist_ok=True)
        with open(folder / split / f"{lang}.jsonl", "w", encoding="utf-8") as f:
            for i in range(N):
                f.write(json.dumps({"id": f"{split}-{i}", "question": "?", "template": TEMPLATES[i % 4]}) + "\n")
    return str(folder / split / "{lang}.jsonl")


def result(folder: Path, split: str, name: str, gained: int) -> str:
    """A saved evaluation where the model gets the first `gained` es and fr items right (M0: none)."""
    (folder / split / name).mkdir(parents=True)
    with open(folder / split / name / "items.jsonl", "w", encoding="utf-8") as f:
        for lang in ("en", "es", "fr"):
            for i in range(N):
                ok = lang == "en" or i < gained
                f.write(json.dumps({"id": f"{split}-{i}", "language": lang, "correct": ok,
                                    "correct_in_language": ok, "off_target": False}) + "\n")
    path = folder / split / f"{name}.json"
    path.write_text(json.dumps({"task": "mgsm", "items": f"{name}/items.jsonl"}), encoding="utf-8")
    return str(path)


def test_gains_per_split_pooled_and_their_rank_agreement(tmp_path):
    splits = {s: data(tmp_path / "data", s) for s in ("a", "b")}
    # Items right out of 40 per language: a, b. Model "late" gains on a only.
    gains = {"M0": (0, 0), "big": (8, 8), "small": (4, 4), "late": (12, 0)}
    models = {m: {s: result(tmp_path, s, m.lower(), g) for s, g in zip(splits, gs)} for m, gs in gains.items()}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"baseline": "M0", "splits": splits, "models": models}), encoding="utf-8")
    done = subprocess.run([sys.executable, str(SCRIPT), str(spec)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:] for line in done.stdout.splitlines()
            if line.startswith("| ")}
    a, b, pooled = (c.strip() for c in rows["big"][:3])
    assert a.startswith("+0.200") and b.startswith("+0.200") and pooled.startswith("+0.200")
    assert "(8 templates)" in pooled  # each split's templates are groups of their own
    assert rows["late"][0].strip().startswith("+0.300") and rows["late"][1].strip().startswith("+0.000")
    assert rows["late"][2].strip().startswith("+0.150")
    assert "M0" not in rows  # the baseline is not compared with itself
    # Ranks on a: late > big > small; on b: big > small > late. Spearman: -0.5.
    assert rows["a vs b"][:2] == [" 3 ", " -0.50 "]
