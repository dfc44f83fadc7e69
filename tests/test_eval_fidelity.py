"""Language fidelity: scoring hand-written texts, and a real run of SmolLM2 on demo prompts."""

from __future__ import annotations

import json

import pytest

from lidr.config import GatesConfig
from lidr.data.prompts import resolve_path
from lidr.evaluate.tasks.fidelity import evaluate_fidelity, fidelity_of_records, mark_same_opening, opening
from lidr.stages.gates import is_degenerate
from lidr.store import read_json


def test_fidelity_of_records_on_known_texts():
    records = [
        {"lang": "en", "text": "The weather is lovely today, so we will walk to the park after lunch."},
        {"lang": "en", "text": "Hoy hace muy buen tiempo, así que iremos al parque después de comer."},
        {"lang": "es", "text": "Me gusta mucho leer libros de historia por la noche antes de dormir."},
        {"lang": "de", "text": "Ich trinke jeden Morgen eine Tasse Kaffee und lese die Zeitung."},
        {"lang": "de", "text": "12 + 5 = 17"},
    ]
    result = fidelity_of_records(records, text_key="text", language_key="lang")
    # Wilson 95 % intervals, computed by hand from the formula: 1/2 -> [0.0945, 0.9055], 1/1 -> [0.2065, 1].
    half = pytest.approx([0.0945, 0.9055], abs=1e-4)
    assert result["en"] == {"n": 2, "fidelity": 0.5, "fidelity_ci": half, "detected": {"en": 1, "es": 1}}
    assert result["es"] == {"n": 1, "fidelity": 1.0, "fidelity_ci": pytest.approx([0.2065, 1.0], abs=1e-4),
                            "detected": {"es": 1}}
    # A text with no letters is in no language: it counts against fidelity.
    assert result["de"] == {"n": 2, "fidelity": 0.5, "fidelity_ci": half, "detected": {"de": 1, "none": 1}}


def test_same_opening_marks_the_most_common_first_words():
    texts = ["El resultado es: 12", "El resultado es 7.", "el RESULTADO es... 3", "Aquí tienes tres consejos: uno",
             "Aquí tienes tres ideas", "Tres"]
    rows = [{"response": t} for t in texts]
    assert opening(texts[0]) == "el resultado es" and opening("12 + 5 = 17") == "# # #"
    assert opening("Tres") is None  # under three words: no opening
    assert mark_same_opening(rows) == "el resultado es"
    assert [r["same_opening"] for r in rows] == [True, True, True, False, False, False]
    # No opening said twice: nothing is a repeated form.
    rows = [{"response": t} for t in ("Uno dos tres", "Cuatro cinco seis", "Siete")]
    assert mark_same_opening(rows) is None and not any(r["same_opening"] for r in rows)


@pytest.fixture(scope="module")
def engine(smollm2_dir):
    from lidr.engines.hf import HFEngine

    eng = HFEngine(str(smollm2_dir), batch_size=4)
    yield eng
    eng.close()


def test_fidelity_on_smollm2(engine, tmp_path):
    langs = ["en", "es"]
    files = {lang: resolve_path(f"bundled:demo/iter_1/{lang}.jsonl", None) for lang in langs}
    result = evaluate_fidelity(engine, files, tmp_path, model_name="smollm2", limit=2, max_new_tokens=64)

    assert read_json(tmp_path / "fidelity.json") == result
    assert result["task"] == "fidelity" and result["model"] == "smollm2"
    rows = [json.loads(line) for line in (tmp_path / "fidelity_generations.jsonl").read_text().splitlines()]
    assert [(r["language"], r["id"]) for r in rows] == [
        (lang, pid) for lang in langs for pid in ("demo1-001", "demo1-002")]
    assert all(r["response"].strip() for r in rows)
    for r in rows:
        assert r["in_language"] == (r["detected_language"] == r["language"])
        assert 0.0 <= r["confidence"] <= 1.0
    for lang in langs:
        stats, mine = result["languages"][lang], [r for r in rows if r["language"] == lang]
        assert stats["n"] == 2
        assert stats["fidelity"] == pytest.approx(sum(r["in_language"] for r in mine) / 2)
        assert sum(stats["detected"].values()) == 2
        assert stats["detected"].get(lang, 0) == sum(r["in_language"] for r in mine)
        # The answers' form: loops (the degenerate gate's measures), cut-offs, length.
        assert stats["degenerate"] == pytest.approx(sum(r["degenerate"] for r in mine) / 2)
        assert stats["truncated"] == sum(r["finish_reason"] == "length" for r in mine)
        assert stats["median_answer_chars"] == min(len(r["response"]) for r in mine)  # median_low of two
        top = [opening(r["response"]) for r in mine]
        assert stats["most_common_opening"] == (top[0] if top[0] == top[1] else None)
        assert [r["same_opening"] for r in mine] == [top[0] == top[1]] * 2
        assert stats["same_opening"] == (1.0 if top[0] == top[1] else 0.0) and len(stats["same_opening_ci"]) == 2
    assert all(r["degenerate"] == is_degenerate(r["response"], GatesConfig()) for r in rows)
    # SmolLM2 answers the second Spanish prompt with one sentence said over and over.
    assert [r["degenerate"] for r in rows if r["language"] == "es"] == [False, True]
    # The model is English-dominant: its English answers are English.
    assert result["languages"]["en"]["fidelity"] == 1.0 and result["languages"]["en"]["detected"] == {"en": 2}
    assert [r["in_language"] for r in rows if r["language"] == "en"] == [True, True]
