"""Several data files per language pooled into one evaluation (a dev split made of dev and
dev_2): which files a task reads, ids kept unique across them, and a real `lidr eval` on both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lidr.data.prompts import DataError, resolve_path
from lidr.evaluate.base import data_files, one_file_each
from lidr.evaluate.tasks.fidelity import _load_prompts
from lidr.evaluate.tasks.mgsm import load_math_items

DEV, DEV_2 = "bundled:arith/dev/{lang}.jsonl", "bundled:arith/dev_2/{lang}.jsonl"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_two_templates_give_each_language_both_files_in_order():
    files = data_files([DEV, DEV_2], ["es", "fr"])
    assert list(files) == ["es", "fr"]
    for lang in ("es", "fr"):
        assert files[lang] == [resolve_path(f"bundled:arith/{split}/{lang}.jsonl", None) for split in ("dev", "dev_2")]
    # One entry is one file per language, as before.
    assert data_files([DEV], ["es"]) == {"es": [resolve_path("bundled:arith/dev/es.jsonl", None)]}


def test_files_named_by_language_pool_and_mix_with_a_template(tmp_path):
    a = _jsonl(tmp_path / "a" / "mgsm_es.jsonl", [{"id": "a1", "question": "1 + 1?", "answer": 2}])
    b = _jsonl(tmp_path / "b" / "mgsm_es.jsonl", [{"id": "b1", "question": "2 + 2?", "answer": 4}])
    for lang in ("es", "fr"):
        _jsonl(tmp_path / "c" / f"{lang}.jsonl", [{"id": f"c-{lang}", "question": "3 + 3 ?", "answer": 6}])
    # Two files of one language: both read (the second no longer replaces the first).
    assert data_files([str(a), str(b)], None) == {"es": [a, b]}
    mixed = data_files([str(a), str(tmp_path / "c" / "{lang}.jsonl")], ["fr", "es"])
    assert mixed == {"fr": [tmp_path / "c" / "fr.jsonl"], "es": [a, tmp_path / "c" / "es.jsonl"]}
    # A template names a file for every language asked for.
    with pytest.raises(DataError, match="not found: .*c/de.jsonl"):
        data_files([str(tmp_path / "c" / "{lang}.jsonl")], ["es", "de"])


def test_bad_lists_are_named(tmp_path):
    a = _jsonl(tmp_path / "es.jsonl", [{"id": "a1", "question": "1 + 1?", "answer": 2}])
    with pytest.raises(DataError, match=f"given twice: {a}"):
        data_files([str(a), str(tmp_path / "{lang}.jsonl")], ["es"])
    with pytest.raises(DataError, match=r"no data file for \['de'\]"):
        data_files([str(a)], ["es", "de"])
    with pytest.raises(DataError, match="not found: .*dev_3/es.jsonl"):
        data_files([DEV, "bundled:arith/dev_3/{lang}.jsonl"], ["es"])
    with pytest.raises(DataError, match="x_alpacaeval reads one data file per language; es has 2"):
        one_file_each(data_files([DEV, DEV_2], ["es"]), "x_alpacaeval")


def test_pooled_items_keep_both_splits_ids_and_templates():
    dev, dev_2 = (load_math_items(p) for p in data_files([DEV, DEV_2], ["de"])["de"])
    pooled = load_math_items(data_files([DEV, DEV_2], ["de"])["de"])
    assert pooled == dev + dev_2
    assert len({i["id"] for i in pooled}) == len(pooled) == len(dev) + len(dev_2)
    templates = [{i["template"] for i in part} for part in (dev, dev_2)]
    # Disjoint templates: the pooled split has as many as both (7 + 7 in the bundled sets).
    assert not templates[0] & templates[1]
    assert len({i["template"] for i in pooled}) == len(templates[0]) + len(templates[1]) == 14


def test_an_id_in_two_files_is_an_error_and_row_ids_are_told_apart(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"id": 7, "question": "1 + 1?", "answer": 2}])
    b = _jsonl(tmp_path / "b.jsonl", [{"question": "2 + 2?", "answer": 4}, {"id": 7, "question": "3?", "answer": 3}])
    with pytest.raises(DataError, match=f"{b}:2: duplicate id '7' \\(first at {a}:1\\)"):
        load_math_items([a, b])
    # Without ids, rows are numbered per file and told apart by the file's place.
    c = _jsonl(tmp_path / "c.jsonl", [{"prompt": "Hola"}, {"prompt": "¿Qué tal?"}])
    d = _jsonl(tmp_path / "d.jsonl", [{"prompt": "Buenos días"}])
    assert [p["id"] for p in _load_prompts([c, d])] == ["0:0", "0:1", "1:0"]
    assert [p["id"] for p in _load_prompts(c)] == ["0", "1"]


def test_lidr_eval_reads_dev_and_dev_2_as_one_split(tiny_model_dir, tmp_path):
    from lidr.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--task", "mgsm", "--languages", "es,fr",
                                      "--data", DEV, "--data", DEV_2, "--template", "{question}",
                                      "--max-new-tokens", "4", "--batch-size", "64", "--engine", "hf", "-o", str(out)])
    assert result.exit_code == 0, result.output
    mgsm = json.loads((out / "mgsm.json").read_text())
    rows = [json.loads(line) for line in (out / "mgsm_generations.jsonl").read_text().splitlines()]
    for lang in ("es", "fr"):
        expected = load_math_items(data_files([DEV, DEV_2], [lang])[lang])
        mine = [r for r in rows if r["language"] == lang]
        assert mgsm["languages"][lang]["n"] == len(mine) == len(expected) == 300
        assert [r["id"] for r in mine] == [i["id"] for i in expected]
        assert len({r["template"] for r in mine}) == 14
