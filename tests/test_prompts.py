"""Prompt sources and alignment across languages."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lidr.config import PromptMix, PromptSource
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


# ---- a mix of sources in one block ------------------------------------------------------------

def test_a_mix_is_its_sources_in_turn_each_with_its_task_and_limit(shared_data):
    """Word problems and everyday instructions in one block: both real sets, aligned, each
    prompt carrying its source's task; the run's limit applies to each source."""
    mix = PromptMix(mix=[
        PromptSource(path="bundled:arith/train_1/{lang}.jsonl", text_key="question", task="math"),
        PromptSource(path=str(shared_data / "alpagasus/id_0_1000/{lang}.jsonl"), offset=10, limit=3),
    ])
    out = load_aligned(mix, ["en", "es"], None, limit=2)
    assert [p.id for p in out["en"]] == ["train_1-0001", "train_1-0002", "alpagasus-10", "alpagasus-11"]
    assert [p.id for p in out["es"]] == [p.id for p in out["en"]]
    assert [p.task for p in out["es"]] == ["math", "math", "instruction", "instruction"]
    assert out["es"][0].text.startswith("Julia tiene 7 años")
    # Without the run's limit, each source keeps its own: 300 word problems, then 3 instructions.
    assert [p.task for p in load_aligned(mix, ["en", "es"], None)["en"]] == ["math"] * 300 + ["instruction"] * 3


def test_a_mix_refuses_an_id_in_two_sources(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    one, two = make_set(tmp_path / "a", {"en": ["x", "y"], "es": ["x", "y"]}), \
        make_set(tmp_path / "b", {"en": ["z", "y"], "es": ["z", "y"]})
    with pytest.raises(DataError, match=r"prompt id 'y' is in mix sources 0 and 1"):
        load_aligned(PromptMix(mix=[one, two]), ["en", "es"], None)
