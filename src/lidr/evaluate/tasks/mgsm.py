"""MGSM-style math evaluation: accuracy of the final number, and the off-target rate
(share of answers not written in the question's language).

The template is a preset name or any text with `{prompt}` (or `{question}`) and optionally
`{language}` (lidr/text/templates.py). Items come from MGSM files (`query`/`response`),
GSM8K files (`instruction` or `question` + `final_answer`, or an `answer` ending in
`#### N`) or plain `{question, answer}` files.

Outputs, in `out_dir`: `mgsm.json` (see `evaluate.base`; per language the counts, the
rates and their 95 % Wilson intervals `accuracy_ci` / `off_target_ci`) and
`mgsm_generations.jsonl`, one row per question with its item id (and template, when the data
names one) and 0/1 outcomes
(`correct`, `off_target`, `correct_in_language`: right and not off-target, `correct_no_echo`:
right in language on an item whose answer is not a number of the question, `degenerate`: a
repetition loop by the degenerate gate's measures, `unidentified`: too few letters to identify
its language, `off_target_identified`: off-target and not `unidentified`, `correct_no_loop`:
`correct_no_echo` and not `degenerate`), so a score can be checked, and two models
compared item by item (`lidr.evaluate.stats.mcnemar_exact`), without rerunning the model. The result's
`items` key names that file.
"""

from __future__ import annotations

import json
import statistics
from contextlib import closing
from pathlib import Path
from typing import Any

from lidr.config import ConfigError, GatesConfig, GenerationConfig, MgsmTask
from lidr.data.prompts import DataError
from lidr.engines.base import ChatRequest, Engine, ProgressFn, Sampling
from lidr.engines import engine_from_config
from lidr.evaluate.base import as_paths, check_data, data_files, pooled_records, text_of, write_result
from lidr.evaluate.stats import wilson_interval
from lidr.stages.gates import is_degenerate
from lidr.store import write_text_atomic
from lidr.text.answers import answers_match, extract_answer, gold_in_question
from lidr.text.langid import detect_language
from lidr.text.quality import letters
from lidr.text.templates import render, resolve_template

ITEMS_FILE = "mgsm_generations.jsonl"
_LOOP_THRESHOLDS = GatesConfig()  # the degenerate gate's defaults, as the fidelity task uses
# Under this many letters the language identifier is unreliable (top-1 0.49-1.00 at 10 letters,
# 0.95-1.00 at 30; stages/gates.py), as the language gate already assumes.
_MIN_LANGID_LETTERS = _LOOP_THRESHOLDS.min_langid_chars


def _gold_of(rec: dict[str, Any], where: str) -> str:
    """The gold final answer, as a string, from whichever answer key the format uses."""
    for key in ("final_answer", "response", "answer"):
        value = rec.get(key)
        if isinstance(value, bool) or value is None or value == "":
            continue  # GSM8K translations carry an empty "answer" next to "final_answer"
        gold = str(value)
        if "####" in gold:  # openai GSM8K: a worked solution ending in "#### 72"
            gold = gold.rsplit("####", 1)[1]
        gold = gold.strip()
        if extract_answer(gold) is None:
            raise DataError(f"{where}: gold answer under {key!r} has no number: {value!r}")
        return gold
    raise DataError(f"{where}: no gold answer under any of final_answer, response, answer")


def load_math_items(paths: Path | list[Path]) -> list[dict[str, str]]:
    """Math problems as {id, question, gold} from one file or several pooled (ids unique
    across them); the id is the record's own or its row number."""
    paths = as_paths(paths)
    items = []
    for where, item_id, rec in pooled_records(paths):
        item = {"id": item_id, "question": text_of(rec, where), "gold": _gold_of(rec, where)}
        if isinstance(rec.get("template"), str):
            # Items written from one template are not independent: the report resamples
            # templates as well as items when its rows carry them (report_stats.GROUP_KEY).
            item["template"] = rec["template"]
        items.append(item)
    if not items:
        raise DataError(f"{', '.join(map(str, paths))}: no math problems")
    return items


def _score(item: dict[str, str], lang: str, text: str, finish_reason: str) -> dict[str, Any]:
    """One generations row: the extracted answer, whether it is right, and its language."""
    extracted = extract_answer(text)
    if extracted is not None and extracted.is_integer():
        extracted = int(extracted)  # "18", not "18.0", in the generations file
    detected, _ = detect_language(text)
    correct = answers_match(extracted, item["gold"])
    # A response with no letters (detected None) is off-target too: it is not in the language.
    off_target = detected != lang
    short = too_short_to_identify(text)
    echo = gold_in_question(item["question"], item["gold"])
    loop = is_degenerate(text, _LOOP_THRESHOLDS)
    return {
        "id": item["id"], "language": lang, **({"template": item["template"]} if "template" in item else {}),
        "question": item["question"], "gold": item["gold"],
        "response": text, "extracted": extracted, "correct": correct,
        "detected_language": detected, "off_target": off_target,
        # Too short to identify ("La question est: 6 + 4 = 12." is read as English): counted
        # apart, and `off_target_identified` counts off-target answers long enough to trust.
        "unidentified": short, "off_target_identified": off_target and not short,
        # Right and in the question's language: an English answer to a French question is
        # right on `correct`, but answering in French is what the method is for.
        "correct_in_language": correct and not off_target, "finish_reason": finish_reason,
        # Where the answer is a number of the question, repeating the question scores: on the
        # bundled test split 25 of SmolLM2's 42 right es/fr/de answers were such repeats, on 42
        # of 900 items (docs/EVIDENCE.md). `correct_no_echo` counts those items as not solved.
        "gold_in_question": echo, "correct_no_echo": correct and not off_target and not echo,
        # A loop of one line can be read as another language ("La foi est 2." repeated is
        # identified as Portuguese): off-target answers that loop are counted apart.
        "degenerate": loop,
        # A loop cut at the token cap is scored on its last number, which is sometimes the gold
        # one: 26 of one M2's 76 right es/fr/de test answers (docs/EVIDENCE.md).
        # `correct_no_loop` counts those as not solved.
        "correct_no_loop": correct and not off_target and not echo and not loop,
    }


def too_short_to_identify(text: str) -> bool:
    """Too few letters for the language identifier to be trusted (`unidentified`)."""
    return letters(text) < _MIN_LANGID_LETTERS


def _rate(rows: list[dict[str, Any]], key: str, name: str | None = None) -> dict[str, Any]:
    """The share of rows whose 0/1 `key` is set, and its Wilson interval, as `name` (default: key)."""
    k, name = sum(bool(r[key]) for r in rows), name or key
    return {name: k / len(rows), f"{name}_ci": list(wilson_interval(k, len(rows)))}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    in_language = sum(bool(r["correct"] and not r["off_target"]) for r in rows)
    off = sum(r["off_target"] for r in rows)
    loops = sum(r["degenerate"] for r in rows)
    summary = {
        "n": n, "correct": correct, "accuracy": correct / n, "accuracy_in_language": in_language / n,
        "off_target": off / n, "accuracy_ci": list(wilson_interval(correct, n)),
        "accuracy_in_language_ci": list(wilson_interval(in_language, n)), "off_target_ci": list(wilson_interval(off, n)),
        "no_answer": sum(r["extracted"] is None for r in rows),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "degenerate": loops / n, "degenerate_ci": list(wilson_interval(loops, n)),
        "off_target_degenerate": sum(bool(r["off_target"] and r["degenerate"]) for r in rows),
        # How long the answers are: a model that learned to answer with a bare final line
        # ("El resultado es: 5") instead of working the problem shows it here, whether or
        # not its accuracy moved (docs/EVIDENCE.md).
        "median_answer_chars": statistics.median_low([len(r["response"]) for r in rows]),
    }
    if all("unidentified" in r for r in rows):  # rows scored by `_score`
        summary.update(**_rate(rows, "unidentified"), **_rate(rows, "off_target_identified"))
    if all("gold_in_question" in r for r in rows):  # rows scored by `_score`
        # Over all n items; those whose answer is a number of the question count as not solved.
        no_echo = sum(bool(r["correct_no_echo"]) for r in rows)
        summary.update(accuracy_no_echo=no_echo / n, accuracy_no_echo_ci=list(wilson_interval(no_echo, n)),
                       gold_in_question=sum(r["gold_in_question"] for r in rows))
    if all("correct_no_loop" in r for r in rows):  # rows scored since loops were counted as unsolved
        summary.update(**_rate(rows, "correct_no_loop", "accuracy_no_loop"))
    return summary


def evaluate_mgsm(
    engine: Engine, files: dict[str, Path | list[Path]], out_dir: Path, *, model_name: str, template: str = "mgsm",
    limit: int | None = None, max_new_tokens: int = 512, sampling: Sampling | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Accuracy, accuracy in language and off-target rate per language; writes mgsm.json and mgsm_generations.jsonl."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    text = resolve_template(template)
    items = {lang: load_math_items(path)[:limit] for lang, path in files.items()}
    requests = [
        ChatRequest(id=f"{lang}:{item['id']}", max_new_tokens=max_new_tokens,
                    messages=[{"role": "user", "content": render(text, item["question"], lang)}])
        for lang, lang_items in items.items() for item in lang_items
    ]
    # One call for every language: the engine batches across them, so no batch runs half empty.
    completions = iter(engine.generate(requests, sampling or Sampling(), progress))
    rows = {lang: [] for lang in items}
    for lang, lang_items in items.items():
        for item in lang_items:
            c = next(completions)
            rows[lang].append(_score(item, lang, c.text, c.finish_reason))

    return write_outputs(Path(out_dir), rows, model_name, template=template, max_new_tokens=max_new_tokens)


def write_outputs(out_dir: Path, rows: dict[str, list[dict[str, Any]]], model_name: str,
                  **extra: Any) -> dict[str, Any]:
    """Write the per-item file and `mgsm.json` from scored rows (lang -> rows as `_score`
    makes them: at least id, correct, off_target, extracted, finish_reason, degenerate)."""
    write_text_atomic(
        out_dir / ITEMS_FILE,
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for lang_rows in rows.values() for r in lang_rows),
    )
    return write_result(out_dir, "mgsm", model_name, {lang: _summary(r) for lang, r in rows.items()},
                        **extra, items=ITEMS_FILE)


# ---- the task (lidr.evaluate.tasks) ----------------------------------------------------------

check = check_data  # its data files are all it reads before the model loads


def run(task: MgsmTask, model_path: str, model_name: str, out_dir: Path, languages: list[str],
        base_dir: Path | None, baseline_dir: Path | None, gen: GenerationConfig) -> dict[str, Any]:
    files = data_files(task.data, languages, base_dir)
    with closing(engine_from_config(gen, model_path, batch_size=task.batch_size)) as engine:
        return evaluate_mgsm(engine, files, out_dir, model_name=model_name, template=task.template,
                             limit=task.limit, max_new_tokens=task.max_new_tokens)
