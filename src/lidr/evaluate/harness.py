"""Multilingual benchmarks through lm-evaluation-harness (`lm-eval`), an optional extra.

lm-eval is not a dependency of lidr: it is imported only when a run asks for it, and a
clear error says how to install it. This module only names tasks, builds the
`lm_eval.simple_evaluate` call, and files lm-eval's results in lidr's format:

    out_dir/lm_eval.json             {"task": "lm_eval", "languages": {"es": {"n": ...,
                                      "arc_acc": ..., "arc_acc_norm": ..., "stderr": {...}}}}
    out_dir/lm_eval_raw.json         lm-eval's own results dict (configs, versions, n-shot...)
    out_dir/lm_eval_samples/<t>.jsonl  lm-eval's per-document samples, to check a score

Task names were checked against the task registry of lm-eval 0.4.13
(`lm_eval.tasks.TaskManager().all_tasks`) for en, es, fr, de, ru:

- m_mmlu, mgsm_native_cot, global_mmlu (the full Global-MMLU): all five languages.
- arc, hellaswag, truthfulqa_mc1/mc2 (Okapi translations): es, fr, de, ru only; there is no
  `arc_en` etc. English uses the English source benchmark the Okapi sets were translated
  from (ENGLISH_SOURCE_TASKS), the reference point, with its own prompt format.
- global_mmlu_lite (`global_mmlu_{lang}`, Global-MMLU-Lite): no ru.

The benchmark data come from the Hugging Face hub; a machine without it can still run
lm-eval on local task definitions (`include_path`, YAML with `dataset_path: json`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lidr.evaluate.base import write_result
from lidr.store import write_json_atomic, write_text_atomic

# Family -> lm-eval task name, per language. Data, not code: a family is a line here.
TASK_FAMILIES: dict[str, str] = {
    "m_mmlu": "m_mmlu_{lang}",                      # Okapi multilingual MMLU
    "arc": "arc_{lang}",                            # Okapi ARC-Challenge translations
    "hellaswag": "hellaswag_{lang}",                # Okapi HellaSwag translations
    "truthfulqa_mc1": "truthfulqa_{lang}_mc1",      # Okapi TruthfulQA
    "truthfulqa_mc2": "truthfulqa_{lang}_mc2",
    "global_mmlu": "global_mmlu_full_{lang}",       # Global-MMLU, all 57 subjects (a group)
    "global_mmlu_lite": "global_mmlu_{lang}",       # Global-MMLU-Lite (no ru)
    "mgsm_native_cot": "mgsm_native_cot_{lang}",    # MGSM, chain of thought in the language
}

# The Okapi families have no English task: English is the original benchmark they were
# translated from.
ENGLISH_SOURCE_TASKS: dict[str, str] = {
    "arc": "arc_challenge",
    "hellaswag": "hellaswag",
    "truthfulqa_mc1": "truthfulqa_mc1",
    "truthfulqa_mc2": "truthfulqa_mc2",
}

INSTALL_HINT = "lm-evaluation-harness is not installed: pip install lm-eval"


class HarnessError(RuntimeError):
    pass


def import_lm_eval():
    """lm_eval, or a clear error naming the package to install."""
    try:
        import lm_eval
    except ImportError as e:
        raise HarnessError(INSTALL_HINT) from e
    return lm_eval


# ---- task names ---------------------------------------------------------------------------

def task_name(family: str, lang: str) -> str:
    if family not in TASK_FAMILIES:
        raise HarnessError(f"unknown lm-eval task family {family!r}; known: {', '.join(TASK_FAMILIES)}")
    if lang == "en" and family in ENGLISH_SOURCE_TASKS:
        return ENGLISH_SOURCE_TASKS[family]
    return TASK_FAMILIES[family].format(lang=lang)


def task_names(families: list[str], languages: list[str]) -> list[str]:
    """lm-eval task names, family by family, each in the order of `languages`."""
    return [task_name(f, lang) for f in families for lang in languages]


def unknown_tasks(tasks: list[str], task_manager: Any) -> list[str]:
    """Names the installed lm-eval does not know; checked before a model is loaded."""
    known = set(task_manager.all_tasks)
    return [t for t in tasks if t not in known]


# ---- the call -----------------------------------------------------------------------------

def lm_eval_call(model_dir: str | Path, tasks: list[str], *, batch_size: int, limit: int | float | None,
                 device: str, dtype: str) -> dict[str, Any]:
    """Keyword arguments of `lm_eval.simple_evaluate` for a local model directory.

    model_args is lm-eval's `key=value,key=value` string (it is what lm-eval records in its
    results), so a path with a comma cannot be expressed in it.
    """
    model_dir = str(model_dir)
    if "," in model_dir:
        raise HarnessError(f"lm-eval's model_args cannot hold a path with a comma: {model_dir}")
    return {
        "model": "hf",
        # trust_remote_code stays lm-eval's default (False): local checkpoints need no code.
        "model_args": f"pretrained={model_dir},dtype={dtype}",
        "tasks": list(tasks),
        "batch_size": batch_size,
        "limit": limit,
        "device": device,
        # Per-document samples are kept so a score can be checked, as for lidr's own tasks.
        "log_samples": True,
    }


# ---- reading lm-eval's results ---------------------------------------------------------------

def _metric_name(key: str) -> tuple[str, bool] | None:
    """'acc,none' -> ('acc', False); 'exact_match_stderr,strict-match' ->
    ('exact_match_strict_match', True); keys without a filter (alias, name) -> None."""
    if "," not in key:
        return None
    metric, filt = key.split(",", 1)
    is_stderr = metric.endswith("_stderr")
    metric = metric.removesuffix("_stderr")
    if filt != "none":
        metric = f"{metric}_{re.sub(r'[^A-Za-z0-9]+', '_', filt).strip('_')}"
    return metric, is_stderr


def _n_docs(results: dict[str, Any], task: str, entry: dict[str, Any]) -> int | None:
    # n-samples has leaf tasks only; a group (global_mmlu_full_xx) has sample_len summed
    # over its subtasks.
    counts = results.get("n-samples", {}).get(task)
    if isinstance(counts, dict) and "effective" in counts:
        return int(counts["effective"])
    n = entry.get("sample_len")
    return int(n) if isinstance(n, (int, float)) else None


def _is_number(v: Any) -> bool:
    # stderr is the string "N/A" when it cannot be computed (one document).
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_lm_eval_results(results: dict[str, Any], families: list[str], languages: list[str]) -> dict[str, dict]:
    """lm-eval's results dict -> {lang: {"n", "<family>_<metric>": value, "stderr": {...},
    "n_by_family": {...}}}. Languages with no task in `results` are left out."""
    per_task = results.get("results", {})
    out: dict[str, dict[str, Any]] = {}
    for lang in languages:
        row: dict[str, Any] = {"n": 0}
        stderr: dict[str, float] = {}
        n_by_family: dict[str, int] = {}
        for family in families:
            task = task_name(family, lang)
            entry = per_task.get(task)
            if not isinstance(entry, dict):
                continue
            for key, value in entry.items():
                parsed = _metric_name(key)
                if parsed is None or not _is_number(value):
                    continue
                metric, is_stderr = parsed
                (stderr if is_stderr else row)[f"{family}_{metric}"] = float(value)
            n = _n_docs(results, task, entry)
            if n is not None:
                n_by_family[family] = n
                row["n"] += n
        if n_by_family:
            out[lang] = {**row, "stderr": stderr, "n_by_family": n_by_family}
    return out


# ---- running ---------------------------------------------------------------------------------

def _save_raw(results: dict[str, Any], out_dir: Path) -> None:
    """lm-eval's results as it would write them: samples one jsonl per task, the rest in one
    json; values json cannot hold (torch dtypes, numpy numbers) as lm-eval serialises them."""
    from lm_eval.utils import handle_non_serializable

    samples = results.pop("samples", None) or {}
    for task, rows in samples.items():
        text = "".join(json.dumps(r, default=handle_non_serializable, ensure_ascii=False) + "\n" for r in rows)
        write_text_atomic(out_dir / "lm_eval_samples" / f"{task}.jsonl", text)
    raw = json.loads(json.dumps(results, default=handle_non_serializable))
    write_json_atomic(out_dir / "lm_eval_raw.json", raw)


def run_lm_eval(model_dir: str | Path, families: list[str], languages: list[str], out_dir: Path, *,
                limit: int | float | None = None, batch_size: int = 8, device: str = "cpu",
                dtype: str = "auto", include_path: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a local model on `families` x `languages` with lm-eval; writes
    `out_dir/lm_eval.json` (lidr's format) and lm-eval's raw results next to it.

    include_path: a folder of extra lm-eval task YAMLs (e.g. local copies of the data).
    """
    lm_eval = import_lm_eval()
    from lm_eval.tasks import TaskManager

    tasks = task_names(families, languages)
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    missing = unknown_tasks(tasks, manager)
    if missing:
        raise HarnessError(
            f"lm-eval {getattr(lm_eval, '__version__', '')} has no task {', '.join(missing)}; "
            "drop that family or language (see lidr.evaluate.harness for which exist)")
    call = lm_eval_call(model_dir, tasks, batch_size=batch_size, limit=limit, device=device, dtype=dtype)
    results = lm_eval.simple_evaluate(**call, task_manager=manager)
    if results is None:  # lm-eval returns None on every rank but 0 in a distributed run
        return {}
    out_dir = Path(out_dir)
    _save_raw(results, out_dir)
    return write_result(
        out_dir, "lm_eval", str(model_dir), parse_lm_eval_results(results, families, languages),
        families=list(families), tasks=tasks, limit=limit,
        lm_eval_version=results.get("lm_eval_version"),
    )
