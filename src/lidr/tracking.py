"""Training curves and evaluation figures in the tracker people already look at.

`training.report_to` picks one of the trackers that transformers' Trainer (and so TRL)
reports to: tensorboard, wandb or trackio; `none` turns tracking off, and `auto` (the
default) means tensorboard when it is installed. Training is logged by the trainer's own
callback (loss, reward margins and accuracies, learning rate, per step; on the main rank
only under `accelerate launch`); lidr adds every model's evaluation as scalars
`eval/<task>/<metric>/<lang>` at step = iteration (M0 at step 0).

TensorBoard: one view for the whole run, `tensorboard --logdir RUN/tb`:

    RUN/tb/iter_<t>/   the training of M(t), one curve per iteration on the same tags
    RUN/tb/eval/       the evaluation scalars

wandb and trackio: project `$WANDB_PROJECT` (as transformers does) and `lidr`; runs
`<run>-iter<t>` for training and `<run>-eval` for the evaluation scalars.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lidr.config import ConfigError

TB_DIR = "tb"
TRACKIO_PROJECT = "lidr"
# Uncertainty figures belong beside their metric, not on a curve of their own.
NOT_PLOTTED = {"n", "standard_error"}


def _installed(tracker: str) -> bool:
    from transformers.integrations import is_tensorboard_available, is_trackio_available, is_wandb_available

    return {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available,
            "trackio": is_trackio_available}[tracker]()


def resolve(report_to: str) -> str:
    """The tracker a setting means here: `auto` is tensorboard when installed, else none."""
    if report_to == "auto":
        return "tensorboard" if _installed("tensorboard") else "none"
    return report_to


def check(report_to: str) -> None:
    """Before a run starts: a tracker asked for by name must be installed."""
    tracker = resolve(report_to)
    if tracker != "none" and not _installed(tracker):
        raise ConfigError(f"training.report_to: {tracker} is not installed (pip install {tracker}), "
                          "or use none / auto")


def train_log_dir(run_dir: Path, t: int) -> Path:
    return Path(run_dir) / TB_DIR / f"iter_{t}"


def clear_train_logs(run_dir: Path, t: int) -> None:
    """Training of M(t) starts from scratch: drop the curve of an attempt that was killed."""
    shutil.rmtree(train_log_dir(run_dir, t), ignore_errors=True)


def trainer_args(report_to: str, run_name: str | None, log_dir: Path | None) -> dict[str, Any]:
    """Keyword arguments for TRL's DPOConfig. TensorBoard with no `log_dir` is off: its files
    would go to the trainer's work directory, which is deleted after training."""
    tracker = resolve(report_to)
    if tracker == "none" or (tracker == "tensorboard" and log_dir is None):
        return {"report_to": "none"}
    return {"report_to": tracker, "run_name": run_name, "project": TRACKIO_PROJECT}


@contextmanager
def tensorboard_dir(log_dir: Path | None) -> Iterator[None]:
    """transformers 5 takes TensorBoard's directory from $TENSORBOARD_LOGGING_DIR, read when
    its callback is built (TrainingArguments has no logging_dir any more): set it for that."""
    if log_dir is None:
        yield
        return
    old = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(log_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = old


def eval_scalars(result: dict[str, Any]) -> dict[str, float]:
    """An evaluation result file -> {"eval/<task>/<metric>/<lang>": value}; counts stay out."""
    task = result["task"]
    return {
        f"eval/{task}/{metric}/{lang}": float(value)
        for lang, metrics in result.get("languages", {}).items()
        for metric, value in metrics.items()
        if isinstance(value, float) and metric not in NOT_PLOTTED
    }


def log_eval(report_to: str, run_dir: Path, run_name: str, t: int, result: dict[str, Any]) -> int:
    """Write one evaluation of M(t) to the tracker; returns the number of scalars written."""
    tracker = resolve(report_to)
    scalars = eval_scalars(result)
    if tracker == "none" or not scalars:
        return 0
    if tracker == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(Path(run_dir) / TB_DIR / "eval")) as writer:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, global_step=t)
    else:
        _log_hosted(tracker, run_dir, run_name, t, scalars)
    return len(scalars)


def _log_hosted(tracker: str, run_dir: Path, run_name: str, t: int, scalars: dict[str, float]) -> None:
    """wandb / trackio: one `<run>-eval` run per run directory, resumed at every iteration."""
    mod = importlib.import_module(tracker)
    if tracker == "wandb":
        run_id = "lidr-eval-" + hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
        mod.init(project=os.getenv("WANDB_PROJECT", "huggingface"), name=f"{run_name}-eval", id=run_id,
                 resume="allow")
    else:
        mod.init(project=TRACKIO_PROJECT, name=f"{run_name}-eval", resume="allow")
    mod.log({**scalars, "iteration": t}, step=t)
    mod.finish()
