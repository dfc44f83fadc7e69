"""`lidr demo`, shrunk: the bundled model, the bundled arithmetic family, evaluation and report."""

from __future__ import annotations

import subprocess
import sys

from lidr.store import read_json


def test_demo_runs_end_to_end_with_report(tmp_path, smollm2_dir):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "lidr", "demo", "--limit", "2", "--iterations", "1",
                             "--output", str(out)], capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stderr[-3000:]
    responses = read_json(out / "iter_1" / "responses" / "_done.json")
    assert responses["n"] == 8  # 2 prompts x en, es, fr, de
    for t in (0, 1):
        mgsm = read_json(out / f"iter_{t}" / "eval" / "arith_test.json")
        assert set(mgsm["languages"]) == {"en", "es", "fr", "de"}
        assert all(m["n"] == 2 for m in mgsm["languages"].values())
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "M0" in report and "M1" in report and "accuracy" in report
    assert str(out) in result.stdout and "iteration 1" in result.stdout
