"""lm-evaluation-harness as a task: the families (`families:`) in each language, run by
lm-eval on the model's own directory (lidr/evaluate/harness.py builds the call and files
the results). lm-eval loads the model itself, so no lidr engine is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lidr.config import GenerationConfig, LmEvalTask
from lidr.evaluate.harness import run_lm_eval


def lm_eval_device(device: str) -> str:
    """The device lm-eval runs on: `auto` is the GPU when there is one."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check(task: LmEvalTask, languages: list[str], base_dir: Path | None, gen: GenerationConfig) -> None:
    """Nothing to check before a model loads: the task names are checked by lm-eval's registry
    when it runs (lm-eval is an optional extra)."""


def run(task: LmEvalTask, model_path: str, model_name: str, out_dir: Path, languages: list[str],
        base_dir: Path | None, baseline_dir: Path | None, gen: GenerationConfig) -> dict[str, Any]:
    return run_lm_eval(model_path, task.families, languages, out_dir, limit=task.limit,
                       batch_size=task.batch_size, device=lm_eval_device(gen.device))
