"""Few-shot self-translation (`translation.examples`): worked examples go before the request
as answered turns, the bundled arithmetic examples are faithful translations of each other,
and the examples reach the engine through the translation stage."""

from __future__ import annotations

import json

import pytest

from lidr.data.prompts import DataError
from lidr.engines import Sampling
from lidr.engines.hf import HFEngine
from lidr.stages.translate import CLOSE, PREFILL, load_examples, translation_message, translation_record, \
    translation_requests
from lidr.text.answers import extract_answer
from lidr.text.langid import detect_language

BUNDLED = "bundled:translation_examples/arith.jsonl"
EXAMPLES = [{"en": "Two apples.", "es": "Dos manzanas.", "fr": "Deux pommes."},
            {"en": "Three pears.", "es": "Tres peras."}]  # no French: skipped for en<>fr


def test_each_example_is_an_answered_request_before_the_real_one():
    msgs = translation_message("Four cats.", "es", "en", EXAMPLES)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert "<sentence>\nTwo apples.\n</sentence>" in msgs[0]["content"] and "into Spanish" in msgs[0]["content"]
    assert msgs[1]["content"] == f"{PREFILL}Dos manzanas.\n{CLOSE}"
    assert msgs[3]["content"] == f"{PREFILL}Tres peras.\n{CLOSE}"
    assert msgs[-1] == translation_message("Four cats.", "es")[0]


def test_examples_follow_the_direction_and_skip_those_without_its_languages():
    back = translation_message("Cuatro gatos.", "en", "es", EXAMPLES)
    assert "<sentence>\nDos manzanas.\n</sentence>" in back[0]["content"] and "into English" in back[0]["content"]
    assert back[1]["content"] == f"{PREFILL}Two apples.\n{CLOSE}"
    assert len(translation_message("Four cats.", "fr", "en", EXAMPLES)) == 3  # only the first has fr


def test_requests_carry_the_examples_in_both_directions():
    responses = [{"prompt_id": "p0", "language": "en", "response": "Four cats.", "n_tokens": 4},
                 {"prompt_id": "p0", "language": "es", "response": "Cuatro gatos.", "n_tokens": 5}]
    reqs = {r.id: r for r in translation_requests(responses, "en", ["es"], set(), 2.0, 64, examples=EXAMPLES)}
    assert len(reqs["en>es:p0"].messages) == 5 and len(reqs["es>en:p0"].messages) == 5
    assert reqs["es>en:p0"].messages[1]["content"] == f"{PREFILL}Two apples.\n{CLOSE}"
    plain = translation_requests(responses, "en", ["es"], set(), 2.0, 64)
    assert all(len(r.messages) == 1 for r in plain)


def test_bundled_arith_examples_are_faithful_translations():
    examples = load_examples(BUNDLED, ["en", "es", "fr", "de", "ru"])
    assert len(examples) >= 2
    for ex in examples:
        answers = {lang: extract_answer(text) for lang, text in ex.items()}
        assert set(answers.values()) == {answers["en"]} and answers["en"], answers
        for lang, text in ex.items():
            assert detect_language(text)[0] == lang, (lang, text)
            assert text.count("\n") == ex["en"].count("\n"), (lang, text)  # line by line, not a summary


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("lines, message", [
    (['{"en": "Two.", "es": "Dos."}'], "examples.jsonl:1: translation example has no text for fr"),
    (['{"en": "Two.", "es": "Dos.", "fr": "Deux."}', '{"en": "Two."'], "examples.jsonl:2: malformed JSON line"),
    (['{"en": "Two.", "es": " ", "fr": "Deux."}'], "examples.jsonl:1: translation example has no text for es"),
    ([], "no translation examples in the file"),
])
def test_bad_example_files_are_named(tmp_path, lines, message):
    with pytest.raises(DataError, match=message):
        load_examples(_write(tmp_path / "examples.jsonl", lines), ["en", "es", "fr"])


def test_missing_example_file_is_named(tmp_path):
    with pytest.raises(DataError, match="translation.examples: file not found: .*nowhere.jsonl"):
        load_examples(str(tmp_path / "nowhere.jsonl"), ["en", "es"])


def test_the_engine_sees_the_examples(tmp_path, smollm2_dir):
    """A tiny Llama taught one answer to the few-shot request (and nothing to the plain one)
    gives that answer only when the stage passes the examples on."""
    from helpers import train_answering_model

    responses = [{"prompt_id": "p0", "language": "en", "response": "Four cats.", "n_tokens": 4}]
    few_shot = translation_requests(responses, "en", ["es"], set(), 2.0, 24, examples=EXAMPLES)[0]
    taught = "<translated>\nCuatro gatos.\n</translated>"
    model = train_answering_model(tmp_path / "m", smollm2_dir, [(few_shot.messages, taught)],
                                  steps=40)
    engine = HFEngine(str(model), batch_size=2)
    try:
        for examples, expect in ((EXAMPLES, "Cuatro gatos."), ((), None)):
            req = translation_requests(responses, "en", ["es"], set(), 2.0, 24, examples=examples)[0]
            [c] = engine.generate([req], Sampling(0.0, 1.0, 1.0, 0))
            record = translation_record(req, c, accept_unclosed=True)
            assert (record["translation"] == expect) if expect else record["translation"] != "Cuatro gatos.", \
                json.dumps(record)
    finally:
        engine.close()
