"""Language fidelity: does the model answer in the language it was asked in?

`evaluate_fidelity` sends each prompt as it is (no wrapper asking for a language: the
prompt's own language is the request) and writes `fidelity.json` (see `evaluate.base`;
per language the rate and its 95 % Wilson interval `fidelity_ci`) and
`fidelity_generations.jsonl` (one row per prompt: id and 0/1 `in_language`, for paired
comparisons; the result's `items` key names it). `fidelity_of_records` scores text that
another stage already generated.

Beside the language, what else says a model is still a chat model on everyday prompts: the
share of answers that are repetition loops (`degenerate`, the degenerate gate's measures at
their default thresholds), how many hit the token cap, the median answer length (a model
trained on word problems may answer "Dé tres consejos..." with one short line), and
`same_opening`, the share of answers that open with the language's most common first words
(a model that has learned one answer form, "El resultado es: ...", gives it to every request;
label-free, so a stopping guard can watch it).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from lidr.config import ConfigError, FidelityTask, GatesConfig, GenerationConfig
from lidr.data.prompts import DataError
from lidr.engines.base import ChatRequest, Engine, ProgressFn, Sampling
from lidr.engines import engine_from_config
from lidr.evaluate.base import as_paths, check_data, data_files, pooled_records, text_of, write_result
from lidr.evaluate.stats import wilson_interval
from lidr.stages.gates import is_degenerate
from lidr.store import write_text_atomic
from lidr.text.langid import detect_language
from lidr.text.quality import opening

TOP_DETECTED = 5  # languages kept in each histogram; the long tail is noise from short texts
NO_LANGUAGE = "none"  # histogram key for texts with no letters (detect_language gives None)
ITEMS_FILE = "fidelity_generations.jsonl"


def summarize_detections(pairs: list[tuple[str, str | None]]) -> dict[str, dict[str, Any]]:
    """(requested, detected) language pairs -> per requested language: n, fidelity, detected."""
    by_lang: dict[str, list[str | None]] = {}
    for requested, detected in pairs:
        by_lang.setdefault(requested, []).append(detected)
    return {lang: _rate(lang, found) for lang, found in by_lang.items()}


def _rate(lang: str, found: list[str | None]) -> dict[str, Any]:
    hits = sum(d == lang for d in found)
    return {
        "n": len(found),
        "fidelity": hits / len(found),
        "fidelity_ci": list(wilson_interval(hits, len(found))),
        "detected": dict(Counter(d or NO_LANGUAGE for d in found).most_common(TOP_DETECTED)),
    }


def fidelity_of_records(
    records: list[dict[str, Any]], text_key: str = "response", language_key: str = "language"
) -> dict[str, dict[str, Any]]:
    """Fidelity per language of already generated texts (e.g. a responses stage's rows)."""
    return summarize_detections([(r[language_key], detect_language(r[text_key])[0]) for r in records])


def mark_same_opening(rows: list[dict[str, Any]]) -> str | None:
    """Sets each row's 0/1 `same_opening`: it opens with the most common opening of these rows,
    when at least two share it (the first seen on a tie). Returns that opening."""
    counts = Counter(o for r in rows if (o := opening(r["response"])) is not None)
    top = counts.most_common(1)[0][0] if counts and counts.most_common(1)[0][1] >= 2 else None
    for r in rows:
        r["same_opening"] = top is not None and opening(r["response"]) == top
    return top


def _answer_form(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Loops, cut-offs, length and repeated openings of one language's answers (rows of
    fidelity_generations, with same_opening marked)."""
    loops, same = sum(r["degenerate"] for r in rows), sum(r["same_opening"] for r in rows)
    return {
        "degenerate": loops / len(rows), "degenerate_ci": list(wilson_interval(loops, len(rows))),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "median_answer_chars": statistics.median_low([len(r["response"]) for r in rows]),
        "same_opening": same / len(rows), "same_opening_ci": list(wilson_interval(same, len(rows))),
    }


def _load_prompts(paths: Path | list[Path]) -> list[dict[str, str]]:
    paths = as_paths(paths)
    prompts = [{"id": item_id, "prompt": text_of(rec, where)} for where, item_id, rec in pooled_records(paths)]
    if not prompts:
        raise DataError(f"{', '.join(map(str, paths))}: no prompts")
    return prompts


def evaluate_fidelity(
    engine: Engine, files: dict[str, Path | list[Path]], out_dir: Path, *, model_name: str, limit: int | None = None,
    max_new_tokens: int = 256, sampling: Sampling | None = None, progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Share of responses in each prompt's language; writes fidelity.json and fidelity_generations.jsonl."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    prompts = [(lang, p) for lang, path in files.items() for p in _load_prompts(path)[:limit]]
    requests = [
        ChatRequest(id=f"{lang}:{p['id']}", messages=[{"role": "user", "content": p["prompt"]}],
                    max_new_tokens=max_new_tokens)
        for lang, p in prompts
    ]
    completions = engine.generate(requests, sampling or Sampling(), progress)
    rows, loop_thresholds = [], GatesConfig()
    for (lang, p), c in zip(prompts, completions):
        detected, confidence = detect_language(c.text)
        rows.append({
            "id": p["id"], "language": lang, "prompt": p["prompt"], "response": c.text,
            "detected_language": detected, "confidence": round(confidence, 4),
            "in_language": detected == lang, "degenerate": is_degenerate(c.text, loop_thresholds),
            "finish_reason": c.finish_reason,
        })

    languages = summarize_detections([(r["language"], r["detected_language"]) for r in rows])
    for lang, stats in languages.items():
        mine = [r for r in rows if r["language"] == lang]
        stats["most_common_opening"] = mark_same_opening(mine)
        stats.update(_answer_form(mine))
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / ITEMS_FILE,
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return write_result(out_dir, "fidelity", model_name, languages, max_new_tokens=max_new_tokens,
                        items=ITEMS_FILE)


# ---- the task (lidr.evaluate.tasks) ----------------------------------------------------------

check = check_data  # its data files are all it reads before the model loads


def run(task: FidelityTask, model_path: str, model_name: str, out_dir: Path, languages: list[str],
        base_dir: Path | None, baseline_dir: Path | None, gen: GenerationConfig) -> dict[str, Any]:
    files = data_files(task.data, languages, base_dir)
    with closing(engine_from_config(gen, model_path, batch_size=task.batch_size)) as engine:
        return evaluate_fidelity(engine, files, out_dir, model_name=model_name, limit=task.limit,
                                 max_new_tokens=task.max_new_tokens)
