"""Run one evaluation task on one model: the code behind `lidr eval` and the pipeline's
evaluation of M0 and every new model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lidr.config import EvalTaskConfig, GenerationConfig
from lidr.engines.configured import engine_from_config
from lidr.evaluate.base import data_files
from lidr.models import resolve_model
from lidr.store import write_json_atomic


def _judge_config(task: EvalTaskConfig, gen: GenerationConfig) -> GenerationConfig:
    """The generation settings the judge runs with: the run's, with the task's overrides."""
    update = {}
    if task.judge_engine:
        update["engine"] = task.judge_engine
    # The judge is its own model: a model_name meant for the evaluated model must not replace it.
    update["openai"] = task.judge_openai or gen.openai.model_copy(update={"model_name": None})
    return gen.model_copy(update=update)


def _judge_is_remote(task: EvalTaskConfig, gen: GenerationConfig) -> bool:
    """A judge named on a server that lidr does not start (a hosted API): no local files."""
    judge_gen = _judge_config(task, gen)
    return judge_gen.engine == "openai" and judge_gen.openai.serve_command is None


def check_task(task: EvalTaskConfig, languages: list[str], base_dir: Path | None,
               gen: GenerationConfig | None = None) -> None:
    """Fail early (before any model loads) on missing data files or judge model."""
    if task.task != "lm_eval":
        data_files(task.data, task.languages or languages, base_dir)
    if task.judge and not _judge_is_remote(task, gen or GenerationConfig()):
        resolve_model(task.judge, base_dir, build_bundled=False)


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
    gen = gen or GenerationConfig()
    langs = task.languages or languages
    out_dir.mkdir(parents=True, exist_ok=True)
    if task.task == "lm_eval":
        from lidr.evaluate.harness import run_lm_eval

        return run_lm_eval(model_path, task.families, langs, out_dir, limit=task.limit,
                           batch_size=task.batch_size, device=lm_eval_device(gen.device))
    files = data_files(task.data, langs, base_dir)
    engine = engine_from_config(gen, model_path, batch_size=task.batch_size)
    try:
        if task.task == "mgsm":
            from lidr.evaluate.mgsm import evaluate_mgsm

            return evaluate_mgsm(engine, files, out_dir, model_name=model_name, template=task.template,
                                 limit=task.limit, max_new_tokens=task.max_new_tokens)
        if task.task == "fidelity":
            from lidr.evaluate.fidelity import evaluate_fidelity

            return evaluate_fidelity(engine, files, out_dir, model_name=model_name, limit=task.limit,
                                     max_new_tokens=task.max_new_tokens)
        return _x_alpacaeval(task, engine, model_path, files, out_dir, model_name, langs, base_dir,
                             baseline_dir, gen)
    finally:
        engine.close()


def lm_eval_device(device: str) -> str:
    """The device lm-eval runs on: `auto` is the GPU when there is one."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    if task.task == "x_alpacaeval" and task.baseline == "M0" and t == 0:
        _baseline_outputs(task, model_path, out, languages, base_dir, gen)
        return None
    result = run_task(task, model_path, f"M{t}", out, languages, base_dir,
                      baseline_dir=task_dir(m0_eval_dir, task), gen=gen)
    if out != eval_dir:
        # Filed under its label beside the others; its per-item file stays in its folder.
        items = result.get("items") or f"{task.task}_generations.jsonl"
        result = {**result, "task": task.name, "kind": task.task, "items": f"{task.name}/{items}"}
        write_json_atomic(eval_dir / f"{task.name}.json", result)
    return result


def _baseline_outputs(task: EvalTaskConfig, model_path: str, out_dir: Path, languages: list[str],
                      base_dir: Path | None, gen: GenerationConfig) -> None:
    """M0's answers (alpaca_eval model_outputs.json per language), unless already written."""
    from lidr.evaluate.judge import generate_outputs, outputs_path

    files = data_files(task.data, task.languages or languages, base_dir)
    if all(outputs_path(out_dir, lang).is_file() for lang in files):
        return
    engine = engine_from_config(gen, model_path, batch_size=task.batch_size)
    try:
        generate_outputs(engine, files, out_dir, model_name="M0", limit=task.limit,
                         max_new_tokens=task.max_new_tokens)
    finally:
        engine.close()


def _x_alpacaeval(task, engine, model_path, files, out_dir, model_name, langs, base_dir, baseline_dir, gen):
    from lidr.evaluate.judge import evaluate_x_alpacaeval, outputs_path

    if task.baseline == "M0":
        if baseline_dir is None:
            raise ValueError("baseline M0 is only known inside a run")
        baseline = {lang: outputs_path(baseline_dir, lang) for lang in langs}
        missing = [str(p) for p in baseline.values() if not p.is_file()]
        if missing:
            raise ValueError(f"baseline M0: M0's outputs are not written yet ({missing[0]})")
    else:
        baseline = data_files([task.baseline], langs, base_dir)
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

