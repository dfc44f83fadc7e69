"""Start a run from another run's finished stages (`lidr run CONFIG --reuse OLD_RUN`).

An ablation changes one setting; every stage upstream of it would give the same files, so
it is copied instead of run again (the generation and translation of one iteration take most
of a run's time). A stage is copied when the settings it was made from, and those of every
stage before it, are equal in both configs; the first stage that differs, and everything
after it, runs. Evaluation results are copied for models that were themselves copied and
tasks whose settings are equal. What was copied, and from where, is written to
RUN/reused.json.

A relative path means what it names from its config's folder: two configs in different
folders that read the same files (`../../shared/data/x.jsonl` and `../../../../shared/...`)
are equal, once both runs record their folder (RUN/config_dir.json).

Files are hard-linked where the file system allows (a stage writes new files and renames
them into place, never into an existing file, so the two runs cannot change each other's).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lidr import rundir, tracking
from lidr.config import RunConfig, diff_configs, iteration_view, with_defaults
from lidr.errors import ConfigError
from lidr.models import model_ok
from lidr.store import DONE, DamagedFileError, finished, load_json, write_json_atomic

REUSED_FILE = "reused.json"

# The config keys each stage's files depend on, beyond those of the stages before it.
# `prompts` is compared per iteration (the block that iteration reads), and so are the sections
# `per_iteration` changes; `name`, `iterations`,
# the stopping rule and the evaluation tasks change no stage's files.
_MODEL_KEYS = ("model", "dominant_language", "languages", "seed", "limit", "generation")
# Generation settings that shape the responses only, not how a model answers an evaluation.
_RESPONSE_ONLY = ("generation.samples", "generation.sample_temperature")
_STAGE_KEYS = {
    "responses": ("prompts",),
    # The degenerate gate ends looping translations early, and the agreement gate's drops are
    # not translated, so both shape the translations.
    "translations": ("translation", "pairs.gates.enabled", "pairs.gates.degenerate", "pairs.gates.agreement",
                     "pairs.detect_translation_tasks", "pairs.translation_task_ids"),
    "pairs": ("pairs",),
    "train": ("training",),
}


@dataclass(frozen=True)
class Copy:
    what: str          # "iteration 1 responses", "M0 dev"
    sources: tuple[Path, ...]
    targets: tuple[Path, ...]


def plan_reuse(old_run: Path, cfg: RunConfig, run_dir: Path,
               base_dir: Path | None = None) -> tuple[list[Copy], str]:
    """The copies to make from `old_run` into `run_dir`, and why the chain stops where it does.
    `base_dir`: the folder `cfg`'s relative paths are read against."""
    old_run, run_dir = Path(old_run), Path(run_dir)
    old, new = rundir.comparable_configs(_load_config(old_run), old_run, cfg.model_dump(mode="json"), base_dir)
    model_differs = [k for k in _under(diff_configs(old, new), _MODEL_KEYS) if not _under([k], _RESPONSE_ONLY)]
    copies = _eval_copies(old_run, run_dir, 0, old, new) if not model_differs else []
    for t in range(1, cfg.last_iteration + 1):
        # Every earlier iteration is equal in both (else the chain stopped there): iteration t's
        # stages depend on the model settings and on its own settings up to the stage.
        keys: tuple[str, ...] = _MODEL_KEYS
        differ = diff_configs(_block_view(old, t), _block_view(new, t))
        for stage, extra in _STAGE_KEYS.items():
            keys += extra
            changed = _under(differ, keys)
            if changed:
                return copies, f"iteration {t} {stage} runs: settings differ ({', '.join(changed)})"
            src = rundir.stage_dir(old_run, t, stage)
            if not finished(src) or (stage == "train" and not model_ok(rundir.model_dir(old_run, t))):
                return copies, f"iteration {t} {stage} runs: not finished in {old_run}"
            copies.append(_stage_copy(old_run, run_dir, t, stage))
        copies += _eval_copies(old_run, run_dir, t, old, new)
    return copies, "every iteration is copied"


def apply_reuse(old_run: Path, copies: list[Copy], run_dir: Path, log: Callable[[str], None]) -> None:
    """Make the copies whose targets do not exist yet (a resumed run keeps its own files)."""
    made = []
    for c in copies:
        if any(t.exists() for t in c.targets):
            continue
        for src, dst in zip(c.sources, c.targets):
            _link_tree(src, dst)
        made.append(c.what)
        log(f"reused from {old_run}: {c.what}")
    if made:
        record_path = Path(run_dir) / REUSED_FILE
        record = load_json(record_path) if record_path.is_file() else {"from": str(old_run), "copied": []}
        record["copied"] += made
        write_json_atomic(record_path, record)


def describe_reuse(old_run: Path, copies: list[Copy], why_stop: str) -> list[str]:
    lines = [f"reuse from {old_run}: " + (", ".join(c.what for c in copies) or "nothing")]
    return lines + [f"  then {why_stop}"]


def _load_config(old_run: Path) -> dict[str, Any]:
    path = rundir.config_path(old_run)
    if not path.is_file():
        raise ConfigError(f"--reuse {old_run}: no {rundir.CONFIG_FILE} there, so it holds no lidr run")
    try:
        return with_defaults(rundir.load_saved_config(path))
    except DamagedFileError as err:
        raise ConfigError(f"--reuse {old_run}: {err.path} is damaged ({err.why})") from None


def _block_view(config: dict[str, Any], t: int) -> dict[str, Any]:
    """The config as iteration t sees it: `prompts` is the one block that iteration reads, and
    its `per_iteration` settings are in the sections they change."""
    blocks = config.get("prompts") or []
    block = blocks[0] if len(blocks) == 1 else (blocks[t - 1] if t <= len(blocks) else None)
    return {**iteration_view(config, t), "prompts": block}


def _under(differ: list[str], keys: tuple[str, ...]) -> list[str]:
    """The keys of `differ` that are one of `keys` or inside one."""
    return [k for k in differ if any(k == p or k.startswith(p + ".") for p in keys)]


def _stage_copy(old_run: Path, run_dir: Path, t: int, stage: str) -> Copy:
    src, dst = rundir.stage_dir(old_run, t, stage), rundir.stage_dir(run_dir, t, stage)
    if stage != "train":
        return Copy(f"iteration {t} {stage}", (src,), (dst,))
    # The model it wrote, its curve, and last the stage's record (not its work files).
    sources, targets = [rundir.model_dir(old_run, t)], [rundir.model_dir(run_dir, t)]
    if tracking.train_log_dir(old_run, t).is_dir():
        sources.append(tracking.train_log_dir(old_run, t))
        targets.append(tracking.train_log_dir(run_dir, t))
    sources.append(src / DONE)
    targets.append(dst / DONE)
    return Copy(f"iteration {t} train (M{t})", tuple(sources), tuple(targets))


def _eval_copies(old_run: Path, run_dir: Path, t: int, old: dict[str, Any], new: dict[str, Any]) -> list[Copy]:
    """M(t)'s results on each task whose settings are equal in both configs."""
    old_tasks = {_task_name(task): task for task in (old.get("evaluation") or {}).get("tasks") or []}
    copies = []
    for task in new["evaluation"]["tasks"]:
        name = _task_name(task)
        src = rundir.eval_result_path(old_run, t, name)
        if old_tasks.get(name) != task or not src.is_file():
            continue
        sources, targets = [src], [rundir.eval_result_path(run_dir, t, name)]
        outputs = rundir.eval_dir(old_run, t) / name  # the raw generations beside the result
        if outputs.is_dir():
            sources.append(outputs)
            targets.append(rundir.eval_dir(run_dir, t) / name)
        copies.append(Copy(f"M{t} {name}", tuple(sources), tuple(targets)))
    return copies


def _task_name(task: dict[str, Any]) -> str:
    return task.get("label") or task.get("task")


def _link_tree(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        _link(src, dst)
        return
    # Into a hidden name, then renamed: a copy cut short leaves no stage that looks finished.
    tmp = dst.with_name(f".{dst.name}.reuse")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=_link)
    tmp.rename(dst)


def _link(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)
