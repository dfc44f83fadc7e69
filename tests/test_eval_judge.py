"""X-AlpacaEval with an LLM judge: verdict parsing, scoring, and a real judge run on SmolLM2."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

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


# --- a real judge: SmolLM2 judging itself against GPT-4-turbo ---------------------------------

@pytest.fixture(scope="module")
def engine(smollm2_dir):
    from lidr.engines import make_engine

    eng = make_engine("hf", str(smollm2_dir), batch_size=8)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def run(engine, shared_data, tmp_path_factory):
    data = shared_data / "x_alpacaeval"
    kwargs = dict(
        files={lang: data / f"{lang}.json" for lang in ("en", "es")},
        model_name="smollm2-135m", judge_engine=engine, judge_name="smollm2-135m-judge",
        baseline={lang: data / "reference" / REFERENCE / f"{lang}.json" for lang in ("en", "es")},
        limit=2, max_new_tokens=48,
        # SmolLM2 says "The best model identifier is:\n\nm": give it room to reach the identifier.
        judge_max_new_tokens=16,
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
        assert all(r["generator"] == "smollm2-135m" and r["output"] for r in rows)


def test_each_item_judged_in_both_orders_and_scored_by_the_rule(run):
    out, result, _ = run
    items = [json.loads(line) for line in _lines(out / "x_alpacaeval_judgments.jsonl")]
    assert [(i["lang"], i["id"]) for i in items] == [("en", 1), ("en", 2), ("es", 1), ("es", 2)]
    for item in items:
        first, second = item["judgments"]
        assert (first["order"], first["model_identifier"]) == ("model_first", "m")
        assert (second["order"], second["model_identifier"]) == ("model_second", "M")
        for j in item["judgments"]:
            assert j["verdict"] == parse_verdict(j["completion"])
            expected = None if j["verdict"] == INVALID else (
                "model" if j["verdict"] == j["model_identifier"] else "baseline")
            assert j["preferred"] == expected
        both_model = first["preferred"] == second["preferred"] == "model"
        both_baseline = first["preferred"] == second["preferred"] == "baseline"
        assert item["score"] == (1.0 if both_model else 0.0 if both_baseline else 0.5)

    assert result["task"] == "x_alpacaeval"
    assert result["baseline"] == REFERENCE and result["judge"] == "smollm2-135m-judge"
    for lang in ("en", "es"):
        stats = result["languages"][lang]
        scores = [i["score"] for i in items if i["lang"] == lang]
        assert stats["n"] == 2 and stats["wins"] + stats["ties"] + stats["losses"] == 2
        assert stats["win_rate"] == pytest.approx(100 * sum(scores) / 2)
        assert stats["invalid_judgments"] == sum(
            j["verdict"] == INVALID for i in items if i["lang"] == lang for j in i["judgments"])
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
    evaluate_x_alpacaeval(engine, out_dir=resumed, **kwargs)
    lines = _lines(cache)
    assert lines[:7] == kept  # earlier judgments kept, not redone
    assert len(lines) == 7 + 1 + 1  # the cut line, then only the missing judgment
    assert len(_read_cache(cache)) == 8
