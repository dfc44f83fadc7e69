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
    # Rates carry their 95 % Wilson interval (computed from n for results saved without one).
    assert _row(acc, "es") == ["es", "0.46 [0.40, 0.52]", "0.60 [0.54, 0.66] (+0.14)",
                               "0.64 [0.58, 0.70] (+0.18)", "250"]
    assert _row(acc, "en") == ["en", "0.70 [0.64, 0.75]", "0.71 [0.65, 0.76] (+0.01)",
                               "0.72 [0.66, 0.77] (+0.02)", "250"]
    # The mean over languages: equal n, so the Wilson interval of the pooled counts (289/500).
    assert _row(acc, "**mean**") == ["**mean**", "0.58 [0.53, 0.62]", "0.66 [0.61, 0.70] (+0.08)",
                                     "0.68 [0.64, 0.72] (+0.10)", ""]
    # Counts stay integers; off_target is a rate.
    assert _row(_section(text, "#### mgsm: correct"), "es") == ["es", "114", "150 (+36)", "160 (+46)", "250"]
    assert _row(_section(text, "#### mgsm: off_target"), "es")[2] == "0.06 [0.04, 0.10] (-0.06)"
    # A change that rounds to zero is "+0.00", never "-0.00".
    assert _row(_section(text, "#### mgsm: off_target"), "en")[3] == "0.00 [0.00, 0.02] (+0.00)"

    # The gap to the dominant language (no config.yaml here: English), Newcombe's interval.
    gap = _section(text, "#### mgsm: accuracy gap to en (accuracy_xx − accuracy_en)")
    assert "| language | M0 | M1 | M2 |" in gap
    assert _row(gap, "es") == ["es", "-0.24 [-0.32, -0.16]", "-0.11 [-0.19, -0.03]", "-0.08 [-0.16, 0.00]"]
    assert "en" not in [line.split("|")[1].strip() for line in gap.splitlines() if line.startswith("| ")]

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
    assert _row(_section(text, "#### fidelity: fidelity"), "es") == ["es", "0.50 [0.30, 0.70]",
                                                                      "0.90 [0.70, 0.97] (+0.40)", "20"]
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
        "x_alpacaeval": ["win_rate", "standard_error", "wins"]}.items() for m in ms} | {"mgsm_accuracy_gap.png"}
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
    assert "| es | 0.40 [0.12, 0.77] | 0.60 [0.23, 0.88] | 5 |" in text


# ---- intervals, paired tests and comparisons from saved per-item files ----------------------

def _rows(lang: str, correct: list[int], off: list[int] | None = None) -> list[dict]:
    """Scored rows in the shape `evaluate_mgsm` saves them (one per item)."""
    off = off or [0] * len(correct)
    return [{"id": f"q{i}", "language": lang, "question": "?", "gold": "1", "response": "",
             "extracted": 1 if c else None, "correct": bool(c), "detected_language": "en" if o else lang,
             "off_target": bool(o), "correct_in_language": bool(c and not o), "finish_reason": "stop",
             "degenerate": False}
            for i, (c, o) in enumerate(zip(correct, off))]


def _config(run_dir: Path, **over) -> None:
    import yaml

    cfg = {"model": "m", "dominant_language": "en", "languages": ["es", "de"], "iterations": 1,
           "training": {"learning_rate": 5e-6, "beta": 0.1}, **over}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")


# M0 and M1 per-item outcomes: es 3/10 -> 7/10 (1 lost, 5 gained), de 0/10 -> 9/10 (9 gained),
# en 7/10 on both, the same items; off-target es 5/10 -> 1/10 (4 lost, none gained).
PAIRED = {
    0: {"en": ([1] * 7 + [0] * 3, None), "es": ([1, 1, 1] + [0] * 7, [1] * 5 + [0] * 5), "de": ([0] * 10, None)},
    1: {"en": ([1] * 7 + [0] * 3, None), "es": ([0] + [1] * 7 + [0, 0], [0] * 4 + [1] + [0] * 5),
        "de": ([1] * 9 + [0], None)},
}


def write_paired_run(run_dir: Path, **config) -> Path:
    from lidr.evaluate.tasks.mgsm import write_outputs

    _config(run_dir, **config)
    for t, langs in PAIRED.items():
        write_outputs(run_dir / f"iter_{t}" / "eval", {lang: _rows(lang, c, o) for lang, (c, o) in langs.items()},
                      f"M{t}")
    return run_dir


def test_report_paired_tests_and_intervals(tmp_path):
    run_dir = write_paired_run(tmp_path / "run")
    text = build_report(run_dir).read_text(encoding="utf-8")

    # Wilson intervals, checked against scipy's binomtest(k, n).proportion_ci(method="wilson").
    acc = _section(text, "#### mgsm: accuracy")
    assert _row(acc, "es") == ["es", "0.30 [0.11, 0.60]", "0.70 [0.40, 0.89] (+0.40)", "10"]
    assert _row(acc, "de") == ["de", "0.00 [0.00, 0.28]", "0.90 [0.60, 0.98] (+0.90)", "10"]

    paired = _section(text, "#### mgsm: accuracy, M<t> vs M0 on the same items")
    assert "| model | language | n | M0 | M<t> | change | 1→0 | 0→1 | p | verdict |" in paired
    # Exact McNemar: 1 vs 5 discordant -> 2 * (1 + 6) / 64 = 0.219; 0 vs 9 -> 2 / 512 = 0.004.
    assert _row(paired, "M1")[1:] == ["en", "10", "0.70", "0.70", "+0.00", "0", "0", "1.000", "not significant"]
    rows = {cells[1]: cells for cells in (_cells(line) for line in paired.splitlines()) if cells[0] == "M1"}
    assert rows["es"] == ["M1", "es", "10", "0.30", "0.70", "+0.40", "1", "5", "0.219", "not significant"]
    assert rows["de"] == ["M1", "de", "10", "0.00", "0.90", "+0.90", "0", "9", "0.004", "significant"]
    # The bootstrap mean is over the non-dominant languages only: ((0.7 - 0.3) + 0.9) / 2 = 0.65.
    mean = rows["**mean es, de**"]
    assert mean[2:5] == ["20", "0.15", "0.80"] and mean[8:] == ["<0.001", "significant"]
    delta, lo, hi = (float(x) for x in mean[5].replace("[", "").replace("]", "").replace(",", "").split())
    # Normal approximation of the resampled statistic: sd = sqrt(0.44/10 + 0.09/10) / 2 = 0.115.
    assert delta == 0.65 and 0.65 - 0.3 < lo < 0.65 - 0.15 and 0.65 + 0.15 < hi <= 0.95

    off = _section(text, "#### mgsm: off_target, M<t> vs M0 on the same items")
    rows = {cells[1]: cells for cells in (_cells(line) for line in off.splitlines()) if cells[0] == "M1"}
    assert rows["es"][6:] == ["4", "0", "0.125", "not significant"]
    assert rows["de"][6:] == ["0", "0", "1.000", "not significant"]

    # In language: es M0's three right answers are all off-target (0/10); M1 is right on items
    # 1-7, item 4 off-target (6/10): 0 lost, 6 gained, exact McNemar 2 / 64 = 0.031.
    inl = _section(text, "#### mgsm: accuracy_in_language, M<t> vs M0 on the same items")
    rows = {cells[1]: cells for cells in (_cells(line) for line in inl.splitlines()) if cells[0] == "M1"}
    assert rows["es"] == ["M1", "es", "10", "0.00", "0.60", "+0.60", "0", "6", "0.031", "significant"]
    assert _row(_section(text, "#### mgsm: accuracy_in_language"), "es") == [
        "es", "0.00 [0.00, 0.28]", "0.60 [0.31, 0.83] (+0.60)", "10"]
    assert "#### mgsm: accuracy_in_language gap to en" in text


def test_report_tests_over_templates_when_items_name_them(tmp_path):
    """A gain made on one template of seven: significant when items are resampled, not when tested
    over templates; a run whose items name no template gets no such row."""
    from lidr.evaluate.tasks.mgsm import write_outputs

    run_dir = tmp_path / "run"
    _config(run_dir)
    templates = [t for t in "abcdefg" for _ in range(4)]
    for t in (0, 1):
        rows = {lang: _rows(lang, [1 if (t == 1 and tpl == "a") else 0 for tpl in templates])
                for lang in ("en", "es", "de")}
        for lang_rows in rows.values():
            for row, tpl in zip(lang_rows, templates):
                row["template"] = tpl
        write_outputs(run_dir / f"iter_{t}" / "eval", rows, f"M{t}")
    paired = _section(build_report(run_dir).read_text(encoding="utf-8"),
                      "#### mgsm: accuracy, M<t> vs M0 on the same items")
    rows = {cells[1]: cells for cells in (_cells(line) for line in paired.splitlines()) if cells[0] == "M1"}
    assert rows["**mean es, de**"][8:] == ["<0.001", "significant"]
    by_template = rows["**mean by template (7 templates) es, de**"]
    assert by_template[2:5] == ["56", "0.00", "0.14"] and by_template[9] == "not significant"
    # One template's gain, flipped, reaches the same |sum|: p = 1, and no shift below 0 is accepted.
    assert by_template[5].startswith("+0.14 [+0.00, ") and by_template[8] == "1.000"
    assert "flips the sign of each template's change" in paired

    plain = _section(build_report(write_paired_run(tmp_path / "plain")).read_text(encoding="utf-8"),
                     "#### mgsm: accuracy, M<t> vs M0 on the same items")
    assert "by template" not in plain and "flips the sign" not in plain


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else [""]


def test_report_reads_older_and_damaged_item_files(tmp_path):
    """Per-item files saved before `off_target` and `correct_in_language` existed still pair
    (from detected_language and correct), a result saved before accuracy_in_language gets it
    from its items; a damaged line is named in the report and the other lines are used."""
    run_dir = write_paired_run(tmp_path / "run", dominant_language="de", languages=["en", "es"])
    for t in (0, 1):
        path = run_dir / f"iter_{t}" / "eval" / "mgsm_generations.jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for r in rows:
            del r["off_target"], r["correct_in_language"]
        result = json.loads((path.parent / "mgsm.json").read_text(encoding="utf-8"))
        for values in result["languages"].values():
            del values["accuracy_in_language"], values["accuracy_in_language_ci"]
        (path.parent / "mgsm.json").write_text(json.dumps(result), encoding="utf-8")
        lines = [json.dumps(r) for r in rows]
        if t == 1:
            lines.insert(3, "{not json")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = build_report(run_dir).read_text(encoding="utf-8")
    assert "mgsm_generations.jsonl:4: expected a JSON object with id and language" in text
    off = _section(text, "#### mgsm: off_target, M<t> vs M0 on the same items")
    rows = {cells[1]: cells for cells in (_cells(line) for line in off.splitlines()) if cells[0] == "M1"}
    assert rows["es"][6:] == ["4", "0", "0.125", "not significant"]
    inl = _section(text, "#### mgsm: accuracy_in_language, M<t> vs M0 on the same items")
    rows = {cells[1]: cells for cells in (_cells(line) for line in inl.splitlines()) if cells[0] == "M1"}
    assert rows["es"][6:] == ["0", "6", "0.031", "significant"]
    assert _row(_section(text, "#### mgsm: accuracy_in_language"), "es") == [
        "es", "0.00 [0.00, 0.28]", "0.60 [0.31, 0.83] (+0.60)", "10"]
    # de is the dominant language here (config.yaml): the mean is over en and es, the gap is to de.
    assert "**mean en, es**" in _section(text, "#### mgsm: accuracy, M<t> vs M0 on the same items")
    assert _row(_section(text, "#### mgsm: accuracy gap to de (accuracy_xx − accuracy_de)"), "es")[1:] == [
        "0.30 [-0.04, 0.60]", "-0.20 [-0.51, 0.16]"]  # Newcombe's formula on scipy's Wilson bounds


def _lidr(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "lidr", *args], capture_output=True, text=True, timeout=300)


def test_compare_runs_side_by_side(tmp_path):
    a = write_paired_run(tmp_path / "lr5e-6")
    b = write_paired_run(tmp_path / "lr1e-5", training={"learning_rate": 1e-5, "beta": 0.1}, iterations=2)
    # Run b has a second model: its final column is M2 (es 10/10), and no M2 for run a.
    write_outputs_m2(b)
    out = tmp_path / "compare"
    res = _lidr("report", str(a), str(b), "--output", str(out))
    assert res.returncode == 0, res.stderr
    text = (out / "report.md").read_text(encoding="utf-8")

    assert "# lidr comparison: lr5e-6, lr1e-5" in text
    cfg = _section(text, "## Configuration keys that differ")
    assert "| key | lr5e-6 | lr1e-5 |" in cfg
    assert _row(cfg, "`iterations`") == ["`iterations`", "1", "2"]
    assert _row(cfg, "`training.learning_rate`") == ["`training.learning_rate`", "5e-06", "1e-05"]
    assert "beta" not in cfg and "dominant_language" not in cfg

    acc = _section(text, "#### mgsm: accuracy")
    assert "| language | lr5e-6 M0 | lr5e-6 M1 | lr1e-5 M0 | lr1e-5 M2 | n |" in acc
    assert _row(acc, "es") == ["es", "0.30 [0.11, 0.60]", "0.70 [0.40, 0.89] (+0.40)", "0.30 [0.11, 0.60]",
                               "1.00 [0.72, 1.00] (+0.70)", "10"]
    assert _row(_section(text, "#### mgsm: correct"), "es") == ["es", "3", "7 (+4)", "3", "10 (+7)", "10"]
    png = out / "plots" / "mgsm_accuracy.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and "](plots/mgsm_accuracy.png)" in text

    # Several runs need --output; --output may not be a run directory (its files stay as they were).
    res = _lidr("report", str(a), str(b))
    assert res.returncode == 2 and "give --output DIR" in res.stderr
    before = sorted(p.name for p in a.iterdir())
    res = _lidr("report", str(b), "--output", str(a))
    assert res.returncode == 2 and "is a run directory" in res.stderr
    assert sorted(p.name for p in a.iterdir()) == before
    (tmp_path / "file").write_text("keep", encoding="utf-8")
    res = _lidr("report", str(a), str(b), "--output", str(tmp_path / "file"))
    assert res.returncode == 2 and "is a file; expected a directory" in res.stderr
    assert (tmp_path / "file").read_text(encoding="utf-8") == "keep"


def write_outputs_m2(run_dir: Path) -> None:
    from lidr.evaluate.tasks.mgsm import write_outputs

    langs = {"en": [1] * 8 + [0] * 2, "es": [1] * 10, "de": [1] * 9 + [0]}
    write_outputs(run_dir / "iter_2" / "eval", {lang: _rows(lang, c) for lang, c in langs.items()}, "M2")


def test_status_prints_rates_with_intervals(tmp_path):
    run_dir = write_paired_run(tmp_path / "run")
    res = _lidr("status", str(run_dir))
    assert res.returncode == 0, res.stderr
    es = [line for line in res.stdout.splitlines() if "│ es " in line]
    # M0 then M1: accuracy 3/10 -> 7/10, off-target 5/10 -> 1/10, each with its Wilson interval.
    assert "0.30 [0.11, 0.60]" in es[0] and "0.50 [0.24, 0.76]" in es[0]
    assert "0.70 [0.40, 0.89]" in es[1] and "0.10 [0.02, 0.40]" in es[1]


def test_report_of_real_tiny_runs(tmp_path, tiny_model_dir, shared_data):
    """Two real one-iteration runs of the tiny random Llama, evaluated on MGSM; the reports
    are built from what the runs saved."""
    import yaml

    from helpers import write_config, write_prompt_set

    prompts = write_prompt_set(tmp_path / "prompts", n=2)
    evaluation = {"tasks": [{"task": "mgsm", "data": [str(shared_data / "mgsm" / "mgsm_{lang}.jsonl")],
                             "limit": 3, "max_new_tokens": 8, "batch_size": 9}]}
    runs = []
    for name, lr in (("lr-a", 1e-4), ("lr-b", 5e-4)):
        cfg = write_config(tmp_path / f"{name}.yaml", tiny_model_dir, prompts, iterations=1,
                           training={"learning_rate": lr}, evaluation=evaluation)
        res = _lidr("run", str(cfg), "--output", str(tmp_path / name))
        assert res.returncode == 0, res.stderr[-3000:]
        runs.append(tmp_path / name)

    run = runs[0]
    items = [json.loads(line) for line in (run / "iter_1" / "eval" / "mgsm_generations.jsonl").open()]
    assert len(items) == 9 and all({"id", "correct", "off_target"} <= set(r) for r in items)
    result = json.loads((run / "iter_0" / "eval" / "mgsm.json").read_text())
    assert result["items"] == "mgsm_generations.jsonl"
    # The run wrote its report at the end; cells and paired rows come from the saved files.
    text = (run / "report.md").read_text(encoding="utf-8")
    es = result["languages"]["es"]
    lo, hi = es["accuracy_ci"]
    assert _row(_section(text, "#### mgsm: accuracy"), "es")[1] == f"{es['accuracy']:.2f} [{lo:.2f}, {hi:.2f}]"
    # The mean over the non-dominant languages, the ones the method is for, beside the mean over all.
    langs = result["languages"]
    mean_x = (langs["es"]["correct"] + langs["fr"]["correct"]) / (langs["es"]["n"] + langs["fr"]["n"])
    assert _row(_section(text, "#### mgsm: accuracy"), "**mean es, fr**")[1].startswith(f"{mean_x:.2f} [")
    paired = _section(text, "#### mgsm: accuracy, M<t> vs M0 on the same items")
    rows = {cells[1]: cells for cells in (_cells(line) for line in paired.splitlines()) if cells[0] == "M1"}
    assert set(rows) == {"en", "es", "fr", "**mean es, fr**"} and all(r[2] == "3" for r in rows.values() if
                                                                        not r[1].startswith("**"))
    assert (run / "plots" / "mgsm_accuracy_gap.png").read_bytes()[:8] == PNG_MAGIC

    res = _lidr("report", *map(str, runs), "--output", str(tmp_path / "both"))
    assert res.returncode == 0, res.stderr
    both = (tmp_path / "both" / "report.md").read_text(encoding="utf-8")
    assert "| language | lr-a M0 | lr-a M1 | lr-b M0 | lr-b M1 | n |" in both
    saved = [yaml.safe_load((r / "config.yaml").read_text()) for r in runs]
    lrs = [str(c["training"]["learning_rate"]) for c in saved]
    assert _row(_section(both, "## Configuration keys that differ"), "`training.learning_rate`")[1:] == lrs
