"""The run report, built from a run directory written by hand (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

from lidr.evaluate.base import write_result
from lidr.report import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# task -> iteration -> lang -> metrics, in the shapes mgsm.py, fidelity.py and judge.py write.
RESULTS = {
    "mgsm": {
        0: {"en": {"n": 250, "correct": 175, "accuracy": 0.700, "off_target": 0.004},
            "es": {"n": 250, "correct": 114, "accuracy": 0.456, "off_target": 0.120}},
        1: {"en": {"n": 250, "correct": 178, "accuracy": 0.712, "off_target": 0.004},
            "es": {"n": 250, "correct": 150, "accuracy": 0.600, "off_target": 0.060}},
        2: {"en": {"n": 250, "correct": 180, "accuracy": 0.720, "off_target": 0.000},
            "es": {"n": 250, "correct": 160, "accuracy": 0.640, "off_target": 0.040}},
    },
    "fidelity": {
        0: {"en": {"n": 20, "fidelity": 1.0, "detected": {"en": 20}},
            "es": {"n": 20, "fidelity": 0.5, "detected": {"es": 10, "en": 10}}},
        2: {"en": {"n": 20, "fidelity": 1.0, "detected": {"en": 20}},
            "es": {"n": 20, "fidelity": 0.9, "detected": {"es": 18, "en": 2}}},
    },
    "x_alpacaeval": {
        0: {"es": {"n": 805, "win_rate": 14.72, "standard_error": 1.2345, "wins": 100},
            "ru": {"n": 805, "win_rate": 10.0, "standard_error": 1.05, "wins": 70}},
        1: {"es": {"n": 805, "win_rate": 18.3, "standard_error": 1.3, "wins": 130},
            "ru": {"n": 800, "win_rate": 15.25, "standard_error": None, "wins": 110}},
        2: {"es": {"n": 805, "win_rate": 22.18, "standard_error": 1.4, "wins": 160},
            "ru": {"n": 805, "win_rate": 20.0, "standard_error": 1.35, "wins": 150}},
    },
}

PAIRS = {
    1: {"n": 30, "seconds": 0.5, "languages": {
        "en": {"kept": 8, "dropped": {}},
        "es": {"kept": 12, "dropped": {"identical": 2, "empty": 1}},
        "ru": {"kept": 10, "dropped": {"translation_task": 3}}}},
    2: {"n": 33, "seconds": 0.25, "languages": {
        "en": {"kept": 9, "dropped": {}},
        "es": {"kept": 13, "dropped": {"identical": 1}},
        "ru": {"kept": 11, "dropped": {}}}},
}


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_run(run_dir: Path) -> Path:
    for task, per_iter in RESULTS.items():
        for t, langs in per_iter.items():
            write_result(run_dir / f"iter_{t}" / "eval", task, f"M{t}", langs)
    # A raw file next to the results must not be taken for a result.
    _write_json(run_dir / "iter_0" / "eval" / "lm_eval_raw.json", {"results": {"arc_es": {"acc,none": 0.3}}})
    for t, done in PAIRS.items():
        _write_json(run_dir / f"iter_{t}" / "pairs" / "_done.json", done)
        _write_json(run_dir / f"iter_{t}" / "responses" / "_done.json", {"n": 90, "seconds": 12.5 * t})
        _write_json(run_dir / f"iter_{t}" / "translations" / "_done.json", {"n": 60, "seconds": 30.0})
        _write_json(run_dir / f"iter_{t}" / "train" / "_done.json", {"pairs": 30, "seconds": 100.25})
    # An iteration that has started but has no evaluation yet.
    _write_json(run_dir / "iter_3" / "responses" / "_done.json", {"n": 90, "seconds": 7.0})
    return run_dir


def _section(text: str, heading: str) -> str:
    """The lines under a markdown heading, up to the next heading."""
    rest = text[text.index(heading + "\n") + len(heading) + 1:]
    end = rest.find("\n#")
    return rest if end == -1 else rest[:end]


def _row(section: str, first_cell: str) -> list[str]:
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{section}")


def test_report_tables_and_plots(tmp_path):
    run_dir = write_run(tmp_path / "run")
    report = build_report(run_dir)
    assert report == run_dir / "report.md"
    text = report.read_text(encoding="utf-8")

    acc = _section(text, "#### mgsm: accuracy")
    assert "| language | M0 | M1 | M2 | n |" in acc
    assert _row(acc, "es") == ["es", "0.456", "0.600 (+0.144)", "0.640 (+0.184)", "250"]
    assert _row(acc, "en") == ["en", "0.700", "0.712 (+0.012)", "0.720 (+0.020)", "250"]
    assert _row(acc, "**mean**") == ["**mean**", "0.578", "0.656 (+0.078)", "0.680 (+0.102)", ""]
    # Counts stay integers; off_target is a rate.
    assert _row(_section(text, "#### mgsm: correct"), "es") == ["es", "114", "150 (+36)", "160 (+46)", "250"]
    assert _row(_section(text, "#### mgsm: off_target"), "es")[2] == "0.060 (-0.060)"

    # Win rates are percents: one decimal; a missing standard error is "-"; differing n shown per model.
    wr = _section(text, "#### x_alpacaeval: win_rate")
    assert _row(wr, "es") == ["es", "14.7", "18.3 (+3.6)", "22.2 (+7.5)", "805"]
    assert _row(wr, "ru") == ["ru", "10.0", "15.2 (+5.2)", "20.0 (+10.0)", "805/800/805"]
    assert _row(wr, "**mean**")[3] == "21.1 (+8.7)"
    se = _section(text, "#### x_alpacaeval: standard_error")
    assert _row(se, "ru") == ["ru", "1.1", "-", "1.4 (+0.3)", "805/800/805"]

    # fidelity has no M1 result: no M1 column, and the report says so; the histogram is no table.
    fid = _section(text, "### fidelity")
    assert "No `fidelity` results for M1." in fid
    assert "| language | M0 | M2 | n |" in text
    assert _row(_section(text, "#### fidelity: fidelity"), "es") == ["es", "0.500", "0.900 (+0.400)", "20"]
    assert "fidelity: detected" not in text
    assert "lm_eval_raw" not in text
    assert "Iterations with no evaluation results: M3 (`iter_3`)" in text

    pairs = _section(text, "## Preference pairs")
    assert "| iteration | language | kept | dropped | dropped by reason |" in pairs
    assert "| 1 | es | 12 | 3 | empty 1, identical 2 |" in pairs
    assert "| 1 | ru | 10 | 3 | translation_task 3 |" in pairs
    assert "| 2 | en | 9 | 0 | - |" in pairs

    times = _section(text, "## Time per stage (seconds)")
    assert "| iteration | responses | translations | pairs | train | total |" in times
    assert "| 1 | 12.5 | 30.0 | 0.5 | 100.2 | 143.2 |" in times
    assert "| 3 | 7.0 | - | - | - | 7.0 |" in times

    expected = {f"{task}_{m}.png" for task, ms in {
        "mgsm": ["correct", "accuracy", "off_target"], "fidelity": ["fidelity"],
        "x_alpacaeval": ["win_rate", "standard_error", "wins"]}.items() for m in ms}
    assert {p.name for p in (run_dir / "plots").iterdir()} == expected
    for name in expected:
        data = (run_dir / "plots" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1024, name
        assert f"](plots/{name})" in text


def test_report_of_a_run_without_results(tmp_path):
    run_dir = tmp_path / "run"
    _write_json(run_dir / "iter_1" / "responses" / "_done.json", {"n": 4, "seconds": 1.0})
    (run_dir / "iter_0" / "eval").mkdir(parents=True)
    (run_dir / "iter_0" / "eval" / "broken.json").write_text("{not json", encoding="utf-8")
    text = build_report(run_dir).read_text(encoding="utf-8")
    assert "No evaluation results in this run" in text
    assert "Iterations with no evaluation results: M0 (`iter_0`), M1 (`iter_1`)" in text
    assert "broken.json" in text and "unreadable" in text
    assert "| 1 | 1.0 | 1.0 |" in text
    assert not (run_dir / "plots").exists() or not any((run_dir / "plots").iterdir())


def test_report_without_m0_shows_no_deltas(tmp_path):
    run_dir = tmp_path / "run"
    write_result(run_dir / "iter_1" / "eval", "mgsm", "M1", {"es": {"n": 5, "accuracy": 0.4}})
    write_result(run_dir / "iter_2" / "eval", "mgsm", "M2", {"es": {"n": 5, "accuracy": 0.6}})
    text = build_report(run_dir).read_text(encoding="utf-8")
    assert "No M0 result: no deltas." in text
    assert "| es | 0.400 | 0.600 | 5 |" in text
