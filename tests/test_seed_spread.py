"""benchmarks/seed_spread.py: one setting trained several times, against M0 on the same items."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_spread.py"


def result(folder: Path, name: str, right: dict[str, list[int]]) -> Path:
    """A saved evaluation: its summary json, and per-item rows naming what each got right."""
    (folder / name).mkdir(parents=True)
    with open(folder / name / "items.jsonl", "w", encoding="utf-8") as f:
        for lang, outcomes in right.items():
            for i, ok in enumerate(outcomes):
                f.write(json.dumps({"id": f"q{i}", "language": lang, "correct": bool(ok),
                                    "correct_in_language": bool(ok), "off_target": False}) + "\n")
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"task": "dev", "items": f"{name}/items.jsonl"}), encoding="utf-8")
    return path


def run(*paths: Path) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), *map(str, paths)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_training_its_spread_and_the_average_model(tmp_path):
    n = 40
    base = result(tmp_path, "m0", {"en": [1] * n, "es": [0] * n, "fr": [0] * n})
    # Three trainings: 8, 4 and 0 more right answers in es (of 40), none in fr.
    seeds = [result(tmp_path, f"s{k}", {"en": [1] * n, "es": [1] * g + [0] * (n - g), "fr": [0] * n})
             for k, g in enumerate((8, 4, 0))]
    out = run(base, *seeds)
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    # Mean over es and fr: 8/40/2 = +0.100, 4/40/2 = +0.050, 0.
    assert "+0.100" in rows[str(seeds[0])] and "+0.050" in rows[str(seeds[1])] and "+0.000" in rows[str(seeds[2])]
    assert "| 1.000 |" in rows[str(seeds[2])]
    # The average model scores each item by the share of trainings that got it right: +0.050.
    assert rows["average of the 3 trainings"].split("|")[2].strip().startswith("+0.050")
    assert "standard deviation 0.050, range +0.000 to +0.100" in out
    assert "mean of es, fr (n = 80 items)" in out  # English, the dominant language, is left out


def test_only_items_every_training_has_are_compared(tmp_path):
    base = result(tmp_path, "m0", {"es": [0, 0, 0, 0]})
    a = result(tmp_path, "a", {"es": [1, 1, 0, 0]})
    b = result(tmp_path, "b", {"es": [1, 1]})  # evaluated on the first two items only
    out = run(base, a, b)
    assert "(n = 2 items)" in out and "+1.000" in out


def test_one_training_has_no_average_row_nor_spread(tmp_path):
    base = result(tmp_path, "m0", {"es": [0, 0, 0, 0]})
    out = run(base, result(tmp_path, "a", {"es": [1, 0, 0, 0]}))
    assert "+0.250" in out and "average" not in out and "spread" not in out
