"""MGSM evaluation: the item loader on every accepted format, and a real run of SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lidr.config import ConfigError, GatesConfig
from lidr.data.prompts import DataError, resolve_path
from lidr.evaluate.tasks.mgsm import _score, evaluate_mgsm, load_math_items, write_outputs
from lidr.report_stats import load_items
from lidr.stages.gates import is_degenerate
from lidr.text.quality import letters
from lidr.store import read_json
from lidr.text.templates import TEMPLATE_PRESETS as MATH_TEMPLATES
from lidr.text.templates import render, resolve_template


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_load_mgsm_format(tmp_path):
    path = _write_jsonl(tmp_path / "mgsm_es.jsonl", [{"query": "¿2 + 2?", "response": "4"},
                                                      {"query": "¿10 * 100?", "response": "1,000"}])
    assert load_math_items(path) == [{"id": "0", "question": "¿2 + 2?", "gold": "4"},
                                     {"id": "1", "question": "¿10 * 100?", "gold": "1,000"}]


def test_load_gsm8k_formats(tmp_path):
    translated = _write_jsonl(tmp_path / "de.jsonl", [
        {"id": "degsm8k_0", "instruction": "Wie viel ist 70 + 2?", "answer": "", "final_answer": "72"}])
    assert load_math_items(translated) == [{"id": "degsm8k_0", "question": "Wie viel ist 70 + 2?", "gold": "72"}]
    openai = _write_jsonl(tmp_path / "en_openai_format.jsonl", [
        {"question": "What is 70 + 2?", "answer": "70 + 2 = <<70+2=72>>72\n#### 72"}])
    assert load_math_items(openai) == [{"id": "0", "question": "What is 70 + 2?", "gold": "72"}]


def test_load_question_answer_format(tmp_path):
    path = _write_jsonl(tmp_path / "fr.jsonl", [{"id": "h-1", "question": "36 × 7 ?", "answer": 252},
                                                {"id": "h-2", "question": "5 / 2 ?", "answer": 2.5}])
    assert [(i["id"], i["gold"]) for i in load_math_items(path)] == [("h-1", "252"), ("h-2", "2.5")]


def test_bundled_heldout_math_loads():
    items = load_math_items(resolve_path("bundled:demo/heldout_math/de.jsonl", None))
    assert items and all(i["question"] and i["gold"] for i in items)


@pytest.mark.parametrize("line, message", [
    ('{"query": "2 + 2?"', "malformed JSON"),
    ('{"query": "2 + 2?"}', "no gold answer"),
    ('{"response": "4"}', "no text under"),
    ('{"question": "2 + 2?", "answer": "four"}', "has no number"),
    ('["2 + 2?", "4"]', "expected a JSON object"),
])
def test_load_bad_line_names_file_and_line(tmp_path, line, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"query": "1 + 1?", "response": "2"}, line])
    with pytest.raises(DataError, match=message) as err:
        load_math_items(path)
    assert f"{path}:2" in str(err.value)


def test_duplicate_ids_and_empty_file(tmp_path):
    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "question": "1?", "answer": 1}] * 2)
    with pytest.raises(DataError, match=f"{dup}:2: duplicate id '1'"):
        load_math_items(dup)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no math problems"):
        load_math_items(empty)


def test_templates():
    assert set(MATH_TEMPLATES) >= {"mgsm", "paper_math"}
    paper = render(resolve_template("paper_math"), "Q?", "es")
    assert "Please answer in Spanish." in paper and "### Instruction:\nQ?\n\n### Response:" in paper
    custom = "Réponds en {language}, avec \\boxed{}: {question}"  # other braces are kept as they are
    assert render(resolve_template(custom), "2+2?", "fr") == "Réponds en French, avec \\boxed{}: 2+2?"
    with pytest.raises(ConfigError, match="neither a known name"):
        resolve_template("no_such_template")


@pytest.fixture(scope="module")
def engine(smollm2_dir):
    from lidr.engines.hf import HFEngine

    eng = HFEngine(str(smollm2_dir), batch_size=9)
    yield eng
    eng.close()


def test_mgsm_on_smollm2(engine, shared_data, tmp_path):
    langs = ["en", "es", "zh"]
    files = {lang: shared_data / "mgsm" / f"mgsm_{lang}.jsonl" for lang in langs}
    result = evaluate_mgsm(engine, files, tmp_path, model_name="smollm2", limit=3, max_new_tokens=128)

    on_disk = read_json(tmp_path / "mgsm.json")
    assert on_disk == result
    assert result["task"] == "mgsm" and result["model"] == "smollm2" and result["template"] == "mgsm"
    assert list(result["languages"]) == langs

    rows = [json.loads(line) for line in (tmp_path / "mgsm_generations.jsonl").read_text().splitlines()]
    assert len(rows) == 9
    for row in rows:
        assert set(row) == {"id", "language", "question", "gold", "response", "extracted", "correct",
                            "detected_language", "off_target", "correct_in_language", "finish_reason",
                            "degenerate", "gold_in_question", "correct_no_echo", "unidentified",
                            "off_target_identified", "correct_no_loop"}
        assert row["off_target"] == (row["detected_language"] != row["language"])
        assert row["degenerate"] == is_degenerate(row["response"], GatesConfig())
        assert row["correct_in_language"] == (row["correct"] and not row["off_target"])
        assert row["correct_no_echo"] == (row["correct_in_language"] and not row["gold_in_question"])
        assert row["unidentified"] == (letters(row["response"]) < 30)
        assert row["correct_no_loop"] == (row["correct_no_echo"] and not row["degenerate"])
        assert row["off_target_identified"] == (row["off_target"] and not row["unidentified"])
        assert row["finish_reason"] in ("stop", "length")
    # The gold answers of MGSM's first three problems, read off the data set by hand.
    assert [r["gold"] for r in rows] == ["18", "3", "70000"] * 3
    assert sum(len(r["response"]) > 20 for r in rows) >= 7  # a real model writes worked answers

    for lang in langs:
        stats, mine = result["languages"][lang], [r for r in rows if r["language"] == lang]
        assert stats["n"] == len(mine) == 3
        assert [r["id"] for r in mine] == ["0", "1", "2"]
        assert 0 <= stats["accuracy"] <= 1
        assert stats["correct"] == sum(r["correct"] for r in mine)
        assert stats["accuracy"] == pytest.approx(stats["correct"] / 3)
        assert stats["off_target"] == pytest.approx(sum(r["detected_language"] != lang for r in mine) / 3)
        assert stats["accuracy_in_language"] == pytest.approx(sum(r["correct_in_language"] for r in mine) / 3)
        assert stats["median_answer_chars"] == sorted(len(r["response"]) for r in mine)[1]
        assert stats["degenerate"] == pytest.approx(sum(r["degenerate"] for r in mine) / 3)
        assert stats["off_target_degenerate"] == sum(r["off_target"] and r["degenerate"] for r in mine)
        assert stats["accuracy_no_echo"] == pytest.approx(sum(r["correct_no_echo"] for r in mine) / 3)
        assert stats["gold_in_question"] == sum(r["gold_in_question"] for r in mine)
        assert stats["unidentified"] == pytest.approx(sum(r["unidentified"] for r in mine) / 3)


def test_mgsm_scores_known_outcomes(engine, tmp_path):
    """Items whose outcome is known without lidr's scoring: SmolLM2 answers "2 + 2" with 4,
    so the item whose gold is 4 is correct and the one whose gold is 5 is not; the answers
    to English questions are English (not off-target)."""
    path = _write_jsonl(tmp_path / "en.jsonl", [{"id": "right", "question": "What is 2 + 2?", "answer": 4},
                                                {"id": "wrong", "question": "What is 2 + 2?", "answer": 5}])
    result = evaluate_mgsm(engine, {"en": path}, tmp_path, model_name="smollm2", max_new_tokens=64)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "mgsm_generations.jsonl").read_text().splitlines())}
    assert "4" in rows["right"]["response"]
    assert rows["right"]["correct"] is True and rows["wrong"]["correct"] is False
    stats = result["languages"]["en"]
    assert (stats["n"], stats["correct"], stats["accuracy"], stats["off_target"]) == (2, 1, 0.5, 0.0)
    assert stats["accuracy_in_language"] == 0.5 and rows["right"]["correct_in_language"] is True


def test_loops_are_counted_apart_from_off_target(tmp_path):
    """A loop of one French line is read as Portuguese by the language identifier (an M2 of the
    evidence runs did this on 52 of its 57 off-target French answers): the loop is marked, so
    off-target answers that are loops can be told from answers in another language."""
    item = {"id": "1", "question": "Marie a 1 pomme et en achète 1. Combien en a-t-elle ?", "gold": "2"}
    loop = _score(item, "fr", "La foi est 2.\n\n" * 20, "length")
    french = _score({**item, "id": "2"}, "fr", "Marie a 1 pomme. Elle en achète 1 de plus, donc elle a 1 + 1 = 2 "
                    "pommes maintenant.", "stop")
    english = _score({**item, "id": "3"}, "fr", "Marie has 1 apple and buys 1 more, so she has 2 apples now.", "stop")
    assert (loop["degenerate"], french["degenerate"], english["degenerate"]) == (True, False, False)
    assert loop["off_target"] and english["off_target"] and not french["off_target"]

    stats = write_outputs(tmp_path, {"fr": [loop, french, english]}, "m")["languages"]["fr"]
    assert stats["degenerate"] == pytest.approx(1 / 3) and stats["off_target_degenerate"] == 1
    assert stats["degenerate_ci"][0] < 1 / 3 < stats["degenerate_ci"][1]

    # A file saved before loops were marked: the report derives them from the responses.
    rows = [json.loads(line) for line in (tmp_path / "mgsm_generations.jsonl").read_text().splitlines()]
    old = _write_jsonl(tmp_path / "old.jsonl", [{k: v for k, v in r.items() if k != "degenerate"} for r in rows])
    outcomes, problems = load_items(old)
    assert not problems and outcomes["fr"]["degenerate"] == {"1": 1, "2": 0, "3": 0}


def test_answers_too_short_to_identify_are_counted_apart(tmp_path):
    """The identifier reads the ten-word French answer frame "La question est: 6 + 4 = 12." as
    English (41 of one M1's 63 French off-target test answers were such frames): answers under
    30 letters, where it is unreliable, are `unidentified`, and `off_target_identified` counts
    only the off-target answers long enough to trust."""
    item = {"id": "1", "question": "Marie a 6 pommes et en achète 4. Combien en a-t-elle ?", "gold": "10"}
    frame = _score(item, "fr", "La question est: 6 + 4 = 10.", "stop")
    number = _score({**item, "id": "2"}, "fr", "10", "stop")
    english = _score({**item, "id": "3"}, "fr", "Marie has 6 apples and buys 4 more, so she has 10 apples now.", "stop")
    french = _score({**item, "id": "4"}, "fr", "Marie a 6 pommes et en achète 4, donc elle a 10 pommes maintenant.",
                    "stop")
    rows = [frame, number, english, french]
    assert [r["off_target"] for r in rows] == [True, True, True, False]
    assert [r["unidentified"] for r in rows] == [True, True, False, False]
    assert [r["off_target_identified"] for r in rows] == [False, False, True, False]

    stats = write_outputs(tmp_path, {"fr": rows}, "m")["languages"]["fr"]
    assert (stats["off_target"], stats["unidentified"], stats["off_target_identified"]) == (0.75, 0.5, 0.25)
    assert stats["off_target_identified_ci"][0] < 0.25 < stats["off_target_identified_ci"][1]
    # A file saved before the keys existed: the report derives them from the responses.
    saved = [json.loads(line) for line in (tmp_path / "mgsm_generations.jsonl").read_text().splitlines()]
    old = _write_jsonl(tmp_path / "old.jsonl", [{k: v for k, v in r.items()
                                                 if k not in ("unidentified", "off_target_identified")} for r in saved])
    outcomes, problems = load_items(old)
    assert not problems and outcomes["fr"]["unidentified"] == {"1": 1, "2": 1, "3": 0, "4": 0}
    assert outcomes["fr"]["off_target_identified"] == {"1": 0, "2": 0, "3": 1, "4": 0}


def test_an_answer_that_repeats_the_question_is_not_counted_as_solved(tmp_path):
    """On the bundled test split most of SmolLM2's right es/fr/de answers were items whose answer
    is a number of the question, "solved" by repeating it ("1.00 euros por 3 entradas" for 9
    euros / 3 tickets = 3). `correct_no_echo` leaves those items out of the count; the same
    answer on an item whose answer is not in the question still counts."""
    echo = {"id": "echo", "question": "Julia pagó 9 euros por 3 entradas. ¿Cuál es el precio de una entrada?",
            "gold": "3"}
    fresh = {"id": "fresh", "question": "Julia pagó 12 euros por 4 entradas. ¿Cuál es el precio de una entrada?",
             "gold": "3"}
    answer = "El precio de una entrada es de 3 euros, porque Julia pagó por todas las entradas."
    rows = [_score(echo, "es", answer, "stop"), _score(fresh, "es", answer, "stop")]
    assert [r["correct_in_language"] for r in rows] == [True, True]
    assert [r["gold_in_question"] for r in rows] == [True, False]
    assert [r["correct_no_echo"] for r in rows] == [False, True]

    stats = write_outputs(tmp_path, {"es": rows}, "m")["languages"]["es"]
    assert (stats["accuracy_in_language"], stats["accuracy_no_echo"], stats["gold_in_question"]) == (1.0, 0.5, 1)

    # A file saved before the key existed: the report derives it from the question and gold.
    saved = [json.loads(line) for line in (tmp_path / "mgsm_generations.jsonl").read_text().splitlines()]
    old = _write_jsonl(tmp_path / "old.jsonl", [{k: v for k, v in r.items()
                                                 if k not in ("correct_no_echo", "gold_in_question")} for r in saved])
    outcomes, problems = load_items(old)
    assert not problems and outcomes["es"]["accuracy_no_echo"] == {"echo": 0, "fresh": 1}


def test_a_loop_that_ends_on_the_gold_number_is_not_counted_as_solved(tmp_path):
    """A loop cut at the token cap is scored on its last number: 17 of one M2's 20 right German
    test answers were loops whose last number happened to be the gold one. `correct_no_loop`
    counts them as not solved; a right answer that does not loop still counts."""
    item = {"id": "loop", "question": "Anna hat 6 Äpfel und kauft 4 dazu. Wie viele Äpfel hat sie?", "gold": "10"}
    loop = _score(item, "de", "Anna hat 6 Äpfel und 4 Äpfel, also 10 Äpfel.\n" * 12, "length")
    right = _score({**item, "id": "right"}, "de", "Anna hat 6 Äpfel und kauft 4 dazu, also hat sie 10 Äpfel.", "stop")
    rows = [loop, right]
    assert [r["correct_no_echo"] for r in rows] == [True, True]
    assert [r["degenerate"] for r in rows] == [True, False]
    assert [r["correct_no_loop"] for r in rows] == [False, True]

    stats = write_outputs(tmp_path, {"de": rows}, "m")["languages"]["de"]
    assert (stats["accuracy_no_echo"], stats["accuracy_no_loop"]) == (1.0, 0.5)
    assert stats["accuracy_no_loop_ci"][0] < 0.5 < stats["accuracy_no_loop_ci"][1]
    # A file saved before the key existed: the report derives it from the response.
    saved = [json.loads(line) for line in (tmp_path / "mgsm_generations.jsonl").read_text().splitlines()]
    old = _write_jsonl(tmp_path / "old.jsonl", [{k: v for k, v in r.items()
                                                 if k not in ("correct_no_loop", "degenerate")} for r in saved])
    outcomes, problems = load_items(old)
    assert not problems and outcomes["de"]["accuracy_no_loop"] == {"loop": 0, "right": 1}
