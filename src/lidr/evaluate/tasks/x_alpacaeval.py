"""X-AlpacaEval as a task: the model's win rate against a baseline, judged by an LLM
(the judging itself is lidr/evaluate/judge.py).

The baseline is alpaca_eval model_outputs.json files per language (`baseline:` with
{lang}, e.g. the paper's GPT-4-turbo references), or `baseline: M0` for head-to-head
against the run's starting model: M0 then only answers (`write_baseline`), and each later
model is judged against those answers. The judge runs on the run's generation settings,
with the task's `judge_engine` and `judge_openai` in place of the engine and the server.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

from lidr.config import GenerationConfig, XAlpacaEvalTask
from lidr.engines.base import Engine
from lidr.engines import engine_from_config
from lidr.evaluate.base import data_files, one_file_each
from lidr.evaluate.judge import evaluate_x_alpacaeval, generate_outputs, outputs_path
from lidr.models import resolve_model


def _judge_config(task: XAlpacaEvalTask, gen: GenerationConfig) -> GenerationConfig:
    """The generation settings the judge runs with: the run's, with the task's overrides."""
    update = {}
    if task.judge_engine:
        update["engine"] = task.judge_engine
    # The judge is its own model: a model_name meant for the evaluated model must not replace it.
    update["openai"] = task.judge_openai or gen.openai.model_copy(update={"model_name": None})
    return gen.model_copy(update=update)


def _judge_is_remote(task: XAlpacaEvalTask, gen: GenerationConfig) -> bool:
    """A judge named on a server that lidr does not start (a hosted API): no local files."""
    judge_gen = _judge_config(task, gen)
    return judge_gen.engine == "openai" and judge_gen.openai.serve_command is None


def check(task: XAlpacaEvalTask, languages: list[str], base_dir: Path | None, gen: GenerationConfig) -> None:
    one_file_each(data_files(task.data, languages, base_dir), "x_alpacaeval")
    if task.judge and not _judge_is_remote(task, gen):
        resolve_model(task.judge, base_dir, build_bundled=False)


def write_baseline(task: XAlpacaEvalTask, model_path: str, out_dir: Path, languages: list[str],
                   base_dir: Path | None, gen: GenerationConfig) -> None:
    """M0's answers (alpaca_eval model_outputs.json per language), unless already written."""
    files = one_file_each(data_files(task.data, languages, base_dir), "x_alpacaeval")
    if all(outputs_path(out_dir, lang).is_file() for lang in files):
        return
    with closing(engine_from_config(gen, model_path, batch_size=task.batch_size)) as engine:
        generate_outputs(engine, files, out_dir, model_name="M0", limit=task.limit,
                         max_new_tokens=task.max_new_tokens)


def _baseline_files(task: XAlpacaEvalTask, languages: list[str], base_dir: Path | None,
                    baseline_dir: Path | None) -> dict[str, Path]:
    if task.baseline != "M0":
        return one_file_each(data_files([task.baseline], languages, base_dir), "x_alpacaeval's baseline")
    if baseline_dir is None:
        raise ValueError("baseline M0 is only known inside a run")
    baseline = {lang: outputs_path(baseline_dir, lang) for lang in languages}
    missing = [str(p) for p in baseline.values() if not p.is_file()]
    if missing:
        raise ValueError(f"baseline M0: M0's outputs are not written yet ({missing[0]})")
    return baseline


def run(task: XAlpacaEvalTask, model_path: str, model_name: str, out_dir: Path, languages: list[str],
        base_dir: Path | None, baseline_dir: Path | None, gen: GenerationConfig) -> dict[str, Any]:
    files = one_file_each(data_files(task.data, languages, base_dir), "x_alpacaeval")
    with closing(engine_from_config(gen, model_path, batch_size=task.batch_size)) as engine:
        baseline = _baseline_files(task, languages, base_dir, baseline_dir)
        return _judged(task, engine, model_path, model_name, files, out_dir, baseline, base_dir, gen)


def _judged(task: XAlpacaEvalTask, engine: Engine, model_path: str, model_name: str, files: dict[str, Path],
            out_dir: Path, baseline: dict[str, Path], base_dir: Path | None, gen: GenerationConfig) -> dict[str, Any]:
    judge_gen = _judge_config(task, gen)
    judge_path = task.judge if _judge_is_remote(task, gen) else resolve_model(task.judge, base_dir)
    # Judging with the evaluated model itself on the same engine needs no second copy of it.
    same = judge_path == model_path and judge_gen == gen
    judge_engine = engine if same else engine_from_config(judge_gen, judge_path, batch_size=task.batch_size)
    try:
        return evaluate_x_alpacaeval(engine, files, out_dir, model_name=model_name, judge_engine=judge_engine,
                                     judge_name=task.judge, baseline=baseline, limit=task.limit,
                                     max_new_tokens=task.max_new_tokens, judge_max_new_tokens=16)
    finally:
        if judge_engine is not engine:
            judge_engine.close()
