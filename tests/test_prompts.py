"""Prompt sources and alignment across languages."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lidr.config import PromptSource
from lidr.data.prompts import DataError, load_aligned


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def make_set(tmp_path, ids_by_lang):
    for lang, ids in ids_by_lang.items():
        write_jsonl(tmp_path / f"{lang}.jsonl", [{"id": i, "instruction": f"{lang} {i}"} for i in ids])
    return PromptSource(path=str(tmp_path / "{lang}.jsonl"))


def test_aligned_in_dominant_order_and_limited(tmp_path):
    src = make_set(tmp_path, {"en": ["a", "b", "c"], "es": ["c", "a", "b"]})
    out = load_aligned(src, ["en", "es"], None, limit=2)
    assert [p.id for p in out["es"]] == ["a", "b"]
    assert [p.text for p in out["es"]] == ["es a", "es b"]


def test_ids_that_do_not_align_are_refused(tmp_path):
    src = make_set(tmp_path, {"en": ["a", "b"], "es": ["a", "z"]})
    with pytest.raises(DataError, match=r"do not align: .*missing in es: \['b'\].*not in en: \['z'\]"):
        load_aligned(src, ["en", "es"], None)


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    make_set(tmp_path, {"en": ["a"], "es": ["a"]})
    with (tmp_path / "es.jsonl").open("a") as f:
        f.write('{"id": "b", "instruction": \n')
    with pytest.raises(DataError, match=r"es\.jsonl:2: malformed JSON line"):
        load_aligned(PromptSource(path=str(tmp_path / "{lang}.jsonl")), ["en", "es"], None)


def test_missing_file_and_missing_key(tmp_path):
    src = make_set(tmp_path, {"en": ["a"]})
    with pytest.raises(DataError, match=r"prompt file not found: .*fr\.jsonl"):
        load_aligned(src, ["en", "fr"], None)
    with pytest.raises(DataError, match=r"en\.jsonl:1: no text key 'question'"):
        load_aligned(PromptSource(path=str(tmp_path / "{lang}.jsonl"), text_key="question"), ["en"], None)


def test_duplicate_ids_are_refused(tmp_path):
    src = make_set(tmp_path, {"en": ["a", "a"]})
    with pytest.raises(DataError, match=r"en\.jsonl:2: duplicate id 'a'"):
        load_aligned(src, ["en"], None)


def test_json_csv_parquet_and_row_alignment(tmp_path):
    (tmp_path / "en.json").write_text(json.dumps([{"question": "one?"}, {"question": "two?"}]))
    (tmp_path / "es.csv").write_text("instruction\n¿uno?\n¿dos?\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist([{"instruction": "un ?"}, {"instruction": "deux ?"}]), tmp_path / "fr.parquet")
    src = PromptSource(paths={"en": "en.json", "es": "es.csv", "fr": "fr.parquet"},
                       text_keys={"en": "question"}, id_key=None)
    out = load_aligned(src, ["en", "es", "fr"], tmp_path)  # relative paths against the config's folder
    assert [(p.id, p.text) for p in out["es"]] == [("0", "¿uno?"), ("1", "¿dos?")]
    assert out["fr"][1].text == "deux ?"


def test_bundled_demo_prompts_align():
    src = PromptSource(path="bundled:demo/iter_1/{lang}.jsonl")
    out = load_aligned(src, ["en", "es", "fr", "de"], None)
    assert len(out["en"]) >= 24
    assert [p.id for p in out["de"]] == [p.id for p in out["en"]]


def test_shared_gsm8k_aligns_by_row(shared_data):
    src = PromptSource(
        paths={"en": str(shared_data / "gsm8k/train/en_openai_format.jsonl"),
               "es": str(shared_data / "gsm8k/train/es.jsonl")},
        text_keys={"en": "question"}, id_key=None, limit=5)
    out = load_aligned(src, ["en", "es"], None)
    assert out["en"][0].text.startswith("Natalia sold clips")
    assert out["es"][0].text.startswith("Natalia vendió clips")
