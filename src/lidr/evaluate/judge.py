"""X-AlpacaEval: win rate of a model against a baseline, judged by an LLM on any lidr engine.

    generate_outputs        the model answers the instructions; alpaca_eval model_outputs.json
                            per language in <out>/x_alpacaeval_outputs/{lang}.json
    judge_pairs             each (instruction, model output, baseline output) judged twice, the
                            model once as "m" and once as "M"; cached, resumable
    evaluate_x_alpacaeval   both, paired by id with the baseline's model_outputs files, and the
                            result <out>/x_alpacaeval.json (+ x_alpacaeval_judgments.jsonl)

The judge prompt is AlpacaEval 2's (`alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt`, the
template behind `weighted_alpaca_eval_gpt4_turbo`) with the LIDR paper's sentence on the
output language added to the task. AlpacaEval reads GPT-4-turbo's log-probabilities of "m"
and "M"; an engine here returns text, so the verdict is the first identifier in the
completion, and position bias is cancelled by judging both orders instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from lidr.data.prompts import DataError, read_records
from lidr.engines.base import ChatRequest, Engine, ProgressFn, Sampling
from lidr.evaluate.base import text_of, write_result
from lidr.store import read_json, write_json_atomic, write_text_atomic

# --- the judge prompt (data) ---------------------------------------------------------------

# AlpacaEval 2, evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt (tatsu-lab/
# alpaca_eval), split into its system and user turns; the one addition is LANGUAGE_CRITERION.
JUDGE_SYSTEM_PROMPT = (
    "You are a highly efficient assistant, who evaluates and selects the best large language model "
    "(LLMs) based on the quality of their responses to a given instruction. This process will be used "
    "to create a leaderboard reflecting the most accurate and human-preferred answers."
)

# The LIDR paper's addition to the AlpacaEval 2 criteria (Yang et al., ICLR 2025).
LANGUAGE_CRITERION = (
    "A good output should be in the same language as the instruction, except when the instruction "
    "explicitly requests the output in a different language."
)

JUDGE_USER_PROMPT = '''I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.

## Instruction

{
    "instruction": """{instruction}""",
}

## Model Outputs

Here are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.

{
    {
        "model_identifier": "m",
        "output": """{output_1}"""
    },
    {
        "model_identifier": "M",
        "output": """{output_2}"""
    }
}

## Task

Evaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. ''' + LANGUAGE_CRITERION + ''' Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.

## Best Model Identifier'''

IDENTIFIERS = ("m", "M")  # output_1 is "m", output_2 is "M"
INVALID = "invalid"

# Part of every cache key: editing the prompt must not reuse verdicts given to the old one.
PROMPT_VERSION = hashlib.sha256((JUDGE_SYSTEM_PROMPT + JUDGE_USER_PROMPT).encode()).hexdigest()[:12]

_PLACEHOLDER_RE = re.compile(r"\{(instruction|output_1|output_2)\}")
# A lone m/M: not part of a word ("Model", "I'm", "m's", "m2"), whatever quotes, backticks,
# asterisks or brackets surround it ("'m'", "`M`", "**m**", "[[M]]", "M.").
_IDENTIFIER_RE = re.compile(r"(?<![\w-])(?<!\w['’])[mM](?![\w-])(?!['’]\w)")


def judge_messages(instruction: str, output_1: str, output_2: str) -> list[dict[str, str]]:
    """The chat turns asking which of output_1 ("m") and output_2 ("M") is better."""
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    # One pass, so an output that itself contains "{output_2}" is never substituted into.
    user = _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], JUDGE_USER_PROMPT)
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(text: str) -> str:
    """The first identifier ("m" or "M") in the judge's completion; "invalid" when there is none."""
    match = _IDENTIFIER_RE.search(text)
    return match.group() if match else INVALID


# --- scoring -------------------------------------------------------------------------------

def item_score(model_first_verdict: str, model_second_verdict: str) -> float:
    """1 if both orders prefer the model, 0 if both prefer the baseline, else 0.5 (a tie).

    In the first order the model is "m", in the second it is "M". An invalid verdict agrees
    with nothing, so an item with one is a tie.
    """
    prefers_model = (model_first_verdict == "m", model_second_verdict == "M")
    prefers_baseline = (model_first_verdict == "M", model_second_verdict == "m")
    if all(prefers_model):
        return 1.0
    if all(prefers_baseline):
        return 0.0
    return 0.5


def summarize(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Win rate (ties count half) and its standard error, in percent, of scored items."""
    scores = [r["score"] for r in scored]
    n = len(scores)
    mean = sum(scores) / n if n else 0.0
    # Sample standard error of the mean (ddof=1), as alpaca_eval reports; undefined for n < 2.
    se = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1) / n) if n > 1 else None
    return {
        "n": n,
        "win_rate": round(100 * mean, 4),
        "standard_error": None if se is None else round(100 * se, 4),
        "wins": sum(1 for s in scores if s == 1.0),
        "ties": sum(1 for s in scores if s == 0.5),
        "losses": sum(1 for s in scores if s == 0.0),
        "invalid_judgments": sum(1 for r in scored for j in r["judgments"] if j["verdict"] == INVALID),
    }


# --- model outputs (alpaca_eval model_outputs.json) ------------------------------------------

def _instructions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """[{"id", "dataset", "instruction"}] of an instruction file, the first `limit` of them."""
    rows, seen = [], set()
    for where, rec in read_records(path):
        if limit is not None and len(rows) >= limit:
            break
        if rec.get("id") is None:
            raise DataError(f"{where}: no 'id' (X-AlpacaEval items are paired with the baseline by id)")
        if str(rec["id"]) in seen:
            raise DataError(f"{where}: duplicate id {rec['id']!r}")
        seen.add(str(rec["id"]))
        rows.append({"id": rec["id"], "dataset": rec.get("dataset", "x_alpacaeval"),
                     "instruction": text_of(rec, where)})
    return rows


def load_model_outputs(path: Path) -> list[dict[str, Any]]:
    """The records of an alpaca_eval model_outputs.json file, checked to have an output."""
    rows = []
    for where, rec in read_records(Path(path)):
        if not isinstance(rec.get("output"), str):
            raise DataError(f"{where}: no 'output' string (expected alpaca_eval model_outputs format)")
        rows.append({**rec, "instruction": text_of(rec, where)})
    return rows


def _reusable(path: Path, rows: list[dict[str, Any]], model_name: str) -> list[dict[str, Any]] | None:
    """The outputs already in `path`, if they answer exactly `rows` and come from `model_name`."""
    if not path.is_file():
        return None
    try:
        old = read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(old, list) or [str(r.get("id")) for r in old] != [str(r["id"]) for r in rows]:
        return None
    if any(r.get("generator") != model_name for r in old):
        return None
    return old


def generate_outputs(
    engine: Engine, files: dict[str, Path], out_dir: Path, *, model_name: str, limit: int | None = None,
    max_new_tokens: int = 512, sampling: Sampling | None = None, progress: ProgressFn | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Answer every language's instructions; write them as alpaca_eval model_outputs.json.

    A language whose file already holds this model's answers to the same ids is reused, not
    regenerated: a re-run (or a second judge on the same outputs) costs no generation.
    """
    sampling = sampling or Sampling()  # greedy
    out: dict[str, list[dict[str, Any]]] = {}
    todo: dict[str, list[dict[str, Any]]] = {}
    for lang, path in files.items():
        rows = _instructions(Path(path), limit)
        reused = _reusable(outputs_path(out_dir, lang), rows, model_name)
        if reused is not None:
            out[lang] = reused
        else:
            todo[lang] = rows
    # One engine call for every language left: batches fill up across languages.
    requests = [ChatRequest(id=f"{lang}:{r['id']}", messages=[{"role": "user", "content": r["instruction"]}],
                            max_new_tokens=max_new_tokens) for lang, rows in todo.items() for r in rows]
    completions = iter(engine.generate(requests, sampling, progress) if requests else [])
    for lang, rows in todo.items():
        out[lang] = [{"generator": model_name, "dataset": r["dataset"], "id": r["id"],
                      "instruction": r["instruction"], "output": next(completions).text.strip()} for r in rows]
        write_json_atomic(outputs_path(out_dir, lang), out[lang])
    return {lang: out[lang] for lang in files}


def outputs_path(out_dir: Path, lang: str) -> Path:
    return Path(out_dir) / "x_alpacaeval_outputs" / f"{lang}.json"


# --- judging -------------------------------------------------------------------------------

def cache_key(judge_name: str, instruction: str, output_1: str, output_2: str) -> str:
    payload = json.dumps([judge_name, PROMPT_VERSION, instruction, output_1, output_2], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """key -> cached judgment. A line cut short by a killed process is skipped (re-judged)."""
    cache: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return cache
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "key" in rec and "verdict" in rec:
            cache[rec["key"]] = rec
    return cache


def _append_cache(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # After a kill mid-line the file may not end in a newline; start ours on a fresh line.
    needs_newline = path.is_file() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    with path.open("a", encoding="utf-8") as f:
        if needs_newline:
            f.write("\n")
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _orders(item: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(order, output_1, output_2): the model first (it is "m"), then second (it is "M")."""
    return [("model_first", item["output"], item["baseline_output"]),
            ("model_second", item["baseline_output"], item["output"])]


def judge_pairs(
    judge_engine: Engine, items: list[dict[str, Any]], cache_path: Path, *, judge_name: str,
    max_new_tokens: int = 8, chunk_size: int = 64, progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Judge each item {"instruction", "output", "baseline_output", ...} in both orders.

    Returns the items with "judgments" (one per order) and "score" added. Judgments come
    from `cache_path` when it has them; new ones are appended after every `chunk_size`
    requests, so an interrupted run loses at most one chunk.
    """
    cache_path = Path(cache_path)
    cache = _read_cache(cache_path)
    todo: dict[str, ChatRequest] = {}  # key -> request; identical comparisons are judged once
    for item in items:
        for _, out_1, out_2 in _orders(item):
            key = cache_key(judge_name, item["instruction"], out_1, out_2)
            if key not in cache and key not in todo:
                todo[key] = ChatRequest(id=key, messages=judge_messages(item["instruction"], out_1, out_2),
                                        max_new_tokens=max_new_tokens)
    requests = list(todo.values())
    for start in range(0, len(requests), chunk_size):
        chunk = requests[start : start + chunk_size]
        completions = judge_engine.generate(chunk, Sampling(), progress)  # greedy: a judge is deterministic
        records = [{"key": r.id, "judge": judge_name, "verdict": parse_verdict(c.text), "completion": c.text}
                   for r, c in zip(chunk, completions)]
        _append_cache(cache_path, records)
        cache.update((rec["key"], rec) for rec in records)
    return [_scored(item, cache, judge_name) for item in items]


def _scored(item: dict[str, Any], cache: dict[str, dict[str, Any]], judge_name: str) -> dict[str, Any]:
    judgments = []
    for order, out_1, out_2 in _orders(item):
        hit = cache[cache_key(judge_name, item["instruction"], out_1, out_2)]
        model_id = "m" if order == "model_first" else "M"
        preferred = None if hit["verdict"] == INVALID else ("model" if hit["verdict"] == model_id else "baseline")
        judgments.append({"order": order, "model_identifier": model_id, "verdict": hit["verdict"],
                          "preferred": preferred, "completion": hit["completion"]})
    score = item_score(judgments[0]["verdict"], judgments[1]["verdict"])
    return {**item, "judgments": judgments, "score": score}


# --- the task ------------------------------------------------------------------------------

def _pair_with_baseline(lang: str, outputs: list[dict[str, Any]], baseline_path: Path) -> list[dict[str, Any]]:
    """Judge items for one language: each model output with the baseline output of its id.

    Baseline records are matched by id; a file without ids (alpaca_eval's own format allows
    that, e.g. the English GPT-4-turbo references) is matched by instruction, as alpaca_eval does.
    """
    baseline = load_model_outputs(baseline_path)
    by_id = all(r.get("id") is not None for r in baseline)
    index = {(str(r["id"]) if by_id else r["instruction"].strip()): r for r in baseline}
    keys = [str(o["id"]) if by_id else o["instruction"].strip() for o in outputs]
    missing = [o["id"] for o, k in zip(outputs, keys) if k not in index]
    if missing:
        how = "ids" if by_id else "instructions (the file has no ids)"
        raise DataError(f"baseline {baseline_path} lacks {len(missing)} of the {len(outputs)} evaluated {lang} "
                        f"{how}; first missing ids: {missing[:5]}")
    items = []
    for o, k in zip(outputs, keys):
        ref = index[k]
        if ref["instruction"].strip() != o["instruction"].strip():
            # Same id, another instruction: the baseline is for another language or data set.
            raise DataError(f"baseline {baseline_path}: id {o['id']!r} has another instruction than the "
                            f"evaluated {lang} item ({ref['instruction'][:60]!r} vs {o['instruction'][:60]!r})")
        items.append({"lang": lang, "id": o["id"], "instruction": o["instruction"], "output": o["output"],
                      "baseline_output": ref["output"], "baseline_generator": ref.get("generator")})
    return items


def _generator_name(items: list[dict[str, Any]], baseline: dict[str, Path]) -> str:
    names = sorted({str(i["baseline_generator"]) for i in items if i.get("baseline_generator")})
    # Files without a generator field: name the baseline by its folder (reference/<generator>/).
    return ", ".join(names) if names else ", ".join(sorted({Path(p).parent.name for p in baseline.values()}))


def evaluate_x_alpacaeval(
    engine: Engine, files: dict[str, Path], out_dir: Path, *, model_name: str, judge_engine: Engine,
    judge_name: str, baseline: dict[str, Path], limit: int | None = None, max_new_tokens: int = 512,
    judge_max_new_tokens: int = 8, progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Win rate of `engine`'s answers over `baseline`'s, per language, judged by `judge_engine`.

    `baseline` maps each language to an alpaca_eval model_outputs file: the GPT-4-turbo
    references (the paper's setup), or an earlier model's x_alpacaeval_outputs/{lang}.json for
    a head-to-head Mt vs M0.
    """
    out_dir = Path(out_dir)
    missing_langs = [lang for lang in files if lang not in baseline]
    if missing_langs:
        raise DataError(f"no baseline outputs for {missing_langs} (have {sorted(baseline)})")
    # Check the baselines cover the instructions before spending time on generation.
    for lang, path in files.items():
        rows = _instructions(Path(path), limit)
        _pair_with_baseline(lang, [{**r, "output": ""} for r in rows], Path(baseline[lang]))

    outputs = generate_outputs(engine, files, out_dir, model_name=model_name, limit=limit,
                               max_new_tokens=max_new_tokens, progress=progress)
    items = [item for lang in files for item in _pair_with_baseline(lang, outputs[lang], Path(baseline[lang]))]
    scored = judge_pairs(judge_engine, items, out_dir / "x_alpacaeval_judge_cache.jsonl",
                         judge_name=judge_name, max_new_tokens=judge_max_new_tokens, progress=progress)

    write_text_atomic(out_dir / "x_alpacaeval_judgments.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored))
    languages = {lang: summarize([r for r in scored if r["lang"] == lang]) for lang in files}
    rates = [v["win_rate"] for v in languages.values() if v["n"]]
    return write_result(out_dir, "x_alpacaeval", model_name, languages,
                        baseline=_generator_name(items, baseline), judge=judge_name,
                        average_win_rate=round(sum(rates) / len(rates), 4) if rates else None,
                        judge_prompt="alpaca_eval_clf_gpt4_turbo + LIDR language criterion")
