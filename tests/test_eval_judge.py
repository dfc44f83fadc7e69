"""X-AlpacaEval with an LLM judge: verdict parsing, scoring, and a real run with a judge whose
verdicts are known (a tiny model taught them)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from helpers import train_answering_model
from lidr.data.prompts import DataError
from lidr.evaluate.judge import (
    INVALID,
    JUDGE_SYSTEM_PROMPT,
    LANGUAGE_CRITERION,
    _append_cache,
    _read_cache,
    evaluate_x_alpacaeval,
    item_score,
    judge_messages,
    parse_verdict,
    summarize,
)

REFERENCE = "gpt-4-turbo-2024-04-09"


# --- the prompt and the verdict ------------------------------------------------------------

def test_judge_prompt_is_alpacaeval2_with_the_language_criterion():
    system, user = judge_messages("¿Qué es {output_2}?", "salida {uno}", "salida dos")
    assert system == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    text = user["content"]
    assert LANGUAGE_CRITERION in text and text.endswith("## Best Model Identifier")
    # The instruction and outputs land in their slots, braces and placeholder-like text kept as is.
    assert '"instruction": """¿Qué es {output_2}?""",' in text
    assert text.index('"model_identifier": "m"') < text.index('"""salida {uno}"""') \
        < text.index('"model_identifier": "M"') < text.index('"""salida dos"""')


@pytest.mark.parametrize("completion, verdict", [
    ("M", "M"), ("m", "m"), ("  m\n", "m"), ("`M`", "M"), ("**m**", "m"), ('"M"', "M"), ("'m'", "m"),
    ("[[M]]", "M"), ("M.", "M"), ("Model M is better", "M"), ("The best model is m.", "m"),
    ("m or M", "m"), ("## Best Model Identifier\nM", "M"),
    ("", INVALID), ("Model", INVALID), ("I'm not sure", INVALID), ("mM", INVALID), ("m2", INVALID), ("m's", INVALID),
    ("Both are good.", INVALID),
])
def test_parse_verdict(completion, verdict):
    assert parse_verdict(completion) == verdict


# --- scoring -------------------------------------------------------------------------------

@pytest.mark.parametrize("first, second, score", [
    ("m", "M", 1.0),        # the model wins in both positions
    ("M", "m", 0.0),        # the baseline wins in both positions
    ("m", "m", 0.5),        # always the first slot: position bias, a tie
    ("M", "M", 0.5),
    ("m", INVALID, 0.5),
    (INVALID, "m", 0.5),
    (INVALID, INVALID, 0.5),
])
def test_item_score_needs_both_orders(first, second, score):
    assert item_score(first, second) == score


def _scored(first: str, second: str) -> dict:
    return {"score": item_score(first, second), "judgments": [{"verdict": first}, {"verdict": second}]}


def test_win_rate_and_standard_error():
    rows = [_scored("m", "M"), _scored("m", "M"), _scored("M", "m"), _scored("m", INVALID)]
    s = summarize(rows)
    assert (s["n"], s["wins"], s["ties"], s["losses"], s["invalid_judgments"]) == (4, 2, 1, 1, 1)
    assert s["win_rate"] == pytest.approx(62.5)
    scores = [1, 1, 0, 0.5]
    sd = math.sqrt(sum((x - 0.625) ** 2 for x in scores) / 3)  # sample sd, as alpaca_eval's sem
    assert s["standard_error"] == pytest.approx(100 * sd / 2, abs=1e-3)
    assert summarize([_scored("M", "m")])["standard_error"] is None  # undefined for one item
    assert summarize([_scored("m", "M")] * 3)["standard_error"] == 0


def test_cache_survives_a_line_cut_short(tmp_path):
    path = tmp_path / "cache.jsonl"
    _append_cache(path, [{"key": "a", "verdict": "m", "completion": "m"}])
    with path.open("a") as f:
        f.write('{"key": "b", "verd')  # a process killed mid-write
    _append_cache(path, [{"key": "c", "verdict": "M", "completion": "M"}])
    assert sorted(_read_cache(path)) == ["a", "c"]


# --- bad input -----------------------------------------------------------------------------

def test_baseline_must_cover_the_evaluated_ids(tmp_path, shared_data):
    base = tmp_path / "base"
    base.mkdir()
    refs = json.loads((shared_data / "x_alpacaeval/reference" / REFERENCE / "es.json").read_text())
    (base / "es.json").write_text(json.dumps(refs[1:3]))  # ids 2-3: lacks id 1
    files = {"es": shared_data / "x_alpacaeval/es.json"}
    with pytest.raises(DataError, match=r"lacks 1 of the 3 evaluated es ids.*\[1\]"):
        # Refused before any generation: no engine is ever touched.
        evaluate_x_alpacaeval(None, files, tmp_path / "out", model_name="x", judge_engine=None, judge_name="j",
                              baseline={"es": base / "es.json"}, limit=3)
    with pytest.raises(DataError, match=r"another instruction"):  # a baseline for another language
        evaluate_x_alpacaeval(None, files, tmp_path / "out", model_name="x", judge_engine=None, judge_name="j",
                              baseline={"es": shared_data / "x_alpacaeval/reference" / REFERENCE / "fr.json"},
                              limit=3)
    assert not (tmp_path / "out").exists()


# --- a judge with known verdicts: a tiny model taught its answers ----------------------------

BASELINE = "baseline-model"
MODEL_ANSWER = "A good answer."  # what the evaluated model answers to every instruction
ITEMS = {  # (lang, id): (instruction, the baseline's output)
    ("en", 1): ("Name a colour.", "Blue."),
    ("en", 2): ("Say hello.", "Hello!"),
    ("es", 1): ("Nombra un animal.", "Un gato."),
    ("es", 2): ("Di adiós.", "¡Adiós!"),
}
# What the judge answers with the model's output first (it is "m") and second (it is "M").
VERDICTS = {
    ("en", 1): ("m", "M"),  # the model in both orders: a win
    ("en", 2): ("m", "m"),  # always the first slot (position bias): a tie
    ("es", 1): ("M", "m"),  # the baseline in both orders: a loss
    ("es", 2): ("M", "Both are good."),  # the baseline, then no identifier: a tie, one invalid judgment
}


def _taught_chats() -> list[tuple[list[dict[str, str]], str]]:
    """(messages, answer): the evaluated model's answers, then the judge's in both orders."""
    chats = [([{"role": "user", "content": instruction}], MODEL_ANSWER) for instruction, _ in ITEMS.values()]
    for key, (instruction, base) in ITEMS.items():
        for (out_1, out_2), answer in zip([(MODEL_ANSWER, base), (base, MODEL_ANSWER)], VERDICTS[key]):
            chats.append((judge_messages(instruction, out_1, out_2), answer))
    return chats


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """ITEMS as X-AlpacaEval instruction files and the baseline's alpaca_eval model outputs."""
    folder = tmp_path_factory.mktemp("x_alpacaeval_data")
    (folder / "reference" / BASELINE).mkdir(parents=True)
    for lang in ("en", "es"):
        items = [(i, instruction, base) for (lg, i), (instruction, base) in ITEMS.items() if lg == lang]
        (folder / f"{lang}.json").write_text(json.dumps(
            [{"id": i, "dataset": "tiny", "instruction": instruction} for i, instruction, _ in items]))
        (folder / "reference" / BASELINE / f"{lang}.json").write_text(json.dumps(
            [{"id": i, "instruction": instruction, "output": base, "generator": BASELINE}
             for i, instruction, base in items]))
    return folder


@pytest.fixture(scope="module")
def engine(smollm2_dir, tmp_path_factory):
    """One tiny model, both the evaluated model and its judge (as the paper's self-judging)."""
    from lidr.engines.hf import HFEngine

    model = train_answering_model(tmp_path_factory.mktemp("judge-llama"), smollm2_dir, _taught_chats())
    eng = HFEngine(str(model), batch_size=8)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def run(engine, data, tmp_path_factory):
    kwargs = dict(
        files={lang: data / f"{lang}.json" for lang in ("en", "es")},
        model_name="tiny-llama", judge_engine=engine, judge_name="tiny-llama-judge",
        baseline={lang: data / "reference" / BASELINE / f"{lang}.json" for lang in ("en", "es")},
        limit=2, max_new_tokens=16, judge_max_new_tokens=8,
    )
    out = tmp_path_factory.mktemp("x_alpacaeval")
    result = evaluate_x_alpacaeval(engine, out_dir=out, **kwargs)
    return out, result, kwargs


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_outputs_are_alpaca_eval_model_outputs(run):
    out, _, _ = run
    for lang in ("en", "es"):
        rows = json.loads((out / "x_alpacaeval_outputs" / f"{lang}.json").read_text())
        assert [r["id"] for r in rows] == [1, 2]
        assert all(set(r) == {"generator", "dataset", "id", "instruction", "output"} for r in rows)
        assert all(r["generator"] == "tiny-llama" and r["output"] == MODEL_ANSWER for r in rows)


def test_known_verdicts_give_the_known_win_rates(run):
    """Each item judged in both orders, the model first as "m" then second as "M"; the
    judge's taught answers, and so every verdict, preference, score and win rate, are known."""
    out, result, _ = run
    items = [json.loads(line) for line in _lines(out / "x_alpacaeval_judgments.jsonl")]
    assert [(i["lang"], i["id"]) for i in items] == list(ITEMS)
    judged = {(i["lang"], i["id"]): [(j["order"], j["model_identifier"], j["completion"], j["verdict"], j["preferred"])
                                     for j in i["judgments"]] for i in items}
    assert judged == {
        ("en", 1): [("model_first", "m", "m", "m", "model"), ("model_second", "M", "M", "M", "model")],
        ("en", 2): [("model_first", "m", "m", "m", "model"), ("model_second", "M", "m", "m", "baseline")],
        ("es", 1): [("model_first", "m", "M", "M", "baseline"), ("model_second", "M", "m", "m", "baseline")],
        ("es", 2): [("model_first", "m", "M", "M", "baseline"),
                    ("model_second", "M", "Both are good.", INVALID, None)],
    }
    assert {(i["lang"], i["id"]): i["score"] for i in items} == {
        ("en", 1): 1.0, ("en", 2): 0.5, ("es", 1): 0.0, ("es", 2): 0.5}
    # en: scores 1 and 0.5; es: 0 and 0.5. Standard error: sample sd 0.354 / sqrt(2) = 0.25.
    assert result["languages"] == {
        "en": {"n": 2, "win_rate": 75.0, "standard_error": 25.0, "wins": 1, "ties": 1, "losses": 0,
               "invalid_judgments": 0},
        "es": {"n": 2, "win_rate": 25.0, "standard_error": 25.0, "wins": 0, "ties": 1, "losses": 1,
               "invalid_judgments": 1},
    }
    assert result["average_win_rate"] == 50.0
    assert result["task"] == "x_alpacaeval"
    assert result["baseline"] == BASELINE and result["judge"] == "tiny-llama-judge"
    assert json.loads((out / "x_alpacaeval.json").read_text()) == result


def test_second_call_judges_nothing(run, engine):
    out, result, kwargs = run
    cache = out / "x_alpacaeval_judge_cache.jsonl"
    before = _lines(cache)
    assert len(before) == 8  # 4 items x 2 orders, each judged once
    outputs_mtime = (out / "x_alpacaeval_outputs" / "es.json").stat().st_mtime_ns
    again = evaluate_x_alpacaeval(engine, out_dir=out, **kwargs)
    assert _lines(cache) == before
    assert again == result
    assert (out / "x_alpacaeval_outputs" / "es.json").stat().st_mtime_ns == outputs_mtime  # outputs reused


def test_interrupted_judging_resumes(run, engine, tmp_path):
    out, result, kwargs = run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    cache = resumed / "x_alpacaeval_judge_cache.jsonl"
    kept = _lines(cache)[:7]
    cache.write_text("\n".join(kept) + '\n{"key": "3f2', encoding="utf-8")  # killed mid-line
    again = evaluate_x_alpacaeval(engine, out_dir=resumed, **kwargs)
    lines = _lines(cache)
    assert lines[:7] == kept  # earlier judgments kept, not redone
    assert len(lines) == 7 + 1 + 1  # the cut line, then only the missing judgment
    assert len(_read_cache(cache)) == 8
    assert again["languages"] == result["languages"]
