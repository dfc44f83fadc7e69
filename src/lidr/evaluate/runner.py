"""Run one evaluation task on one model: the code behind `lidr eval` and the pipeline's
evaluation of M0 and every new model. The task's kind (`task:`) names its module,
`lidr.evaluate.tasks.<task>`, which does the work (lidr/evaluate/tasks/__init__.py)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from lidr.config import EvalTaskConfig, GenerationConfig
from lidr.store import write_json_atomic


def task_module(task: EvalTaskConfig) -> ModuleType:
    """The module that checks and runs tasks of `task`'s kind."""
    return importlib.import_module(f"lidr.evaluate.tasks.{task.task}")


def check_task(task: EvalTaskConfig, languages: list[str], base_dir: Path | None,
               gen: GenerationConfig | None = None) -> None:
    """Fail early (before any model loads) on missing data files or judge model."""
    task_module(task).check(task, task.languages or languages, base_dir, gen or GenerationConfig())


def run_task(
    task: EvalTaskConfig,
    model_path: str,
    model_name: str,
    out_dir: Path,
    languages: list[str],
    base_dir: Path | None = None,
    baseline_dir: Path | None = None,
    gen: GenerationConfig | None = None,
) -> dict[str, Any]:
    """Evaluate `model_path` on `task`; writes `out_dir/<task>.json` and returns it.

    `baseline_dir` is where M0's evaluation lives, for x_alpacaeval's `baseline: M0`. `gen`
    (the run's generation section) says which engine runs the model and the judge.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    return task_module(task).run(task, model_path, model_name, out_dir, task.languages or languages, base_dir,
                                 baseline_dir, gen or GenerationConfig())


def task_dir(eval_dir: Path, task: EvalTaskConfig) -> Path:
    """Where a task writes its files: `iter_<t>/eval` under the task's own name, else a folder
    named by its label, so two tasks of one kind never share outputs, caches or results."""
    return eval_dir if task.name == task.task else eval_dir / task.name


def evaluate_in_run(task: EvalTaskConfig, t: int, model_path: str, eval_dir: Path, m0_eval_dir: Path,
                    languages: list[str], base_dir: Path | None, gen: GenerationConfig) -> dict[str, Any] | None:
    """Evaluate M(t) on `task` inside a run; the result is `eval_dir/<label>.json`.

    For a head-to-head against M0 (`baseline: M0`), M0 only writes the outputs that later
    models are judged against (M0 against itself is no measurement) and None is returned.
    """
    out = task_dir(eval_dir, task)
    if task.m0_is_baseline and t == 0:
        task_module(task).write_baseline(task, model_path, out, task.languages or languages, base_dir, gen)
        return None
    result = run_task(task, model_path, f"M{t}", out, languages, base_dir,
                      baseline_dir=task_dir(m0_eval_dir, task), gen=gen)
    if out != eval_dir:
        # Filed under its label beside the others; its per-item file stays in its folder.
        items = result.get("items") or f"{task.task}_generations.jsonl"
        result = {**result, "task": task.name, "kind": task.task, "items": f"{task.name}/{items}"}
        write_json_atomic(eval_dir / f"{task.name}.json", result)
    return result
