"""Stage 4 under `accelerate launch`: the same training, on N processes (DDP, ZeRO-3, FSDP2).

The run's process stays single: it writes the training arguments to a JSON file, starts

    python -m accelerate.commands.launch --config_file C [--num_processes N] \\
        -m lidr.stages.train_launch ARGS.json

and waits. Every rank runs `train.train_dpo` on the same pairs (accelerate shards the
batches); the main rank writes the model directory and the summary, so the stage's contract
(pairs in, a plain model directory and a summary out) is the one of the in-process path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from lidr.config import ACCELERATE_PRESETS, ConfigError, TrainingConfig
from lidr.store import write_json_atomic

PRESET_DIR = Path(__file__).resolve().parent.parent / "accelerate_configs"
SUMMARY = "summary.json"


class LaunchError(RuntimeError):
    pass


def accelerate_config_path(name: str, base_dir: Path | None = None) -> Path:
    """A shipped preset name (fsdp2, ...) or a file, relative to the run config's folder."""
    if name in ACCELERATE_PRESETS:
        return PRESET_DIR / f"{name}.yaml"
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"training.accelerate_config: {name!r} is neither a file ({path}) nor a shipped "
                                f"config ({', '.join(ACCELERATE_PRESETS)})")
    return path


def launch_command(cfg: TrainingConfig, args_file: Path, base_dir: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(accelerate_config_path(cfg.accelerate_config, base_dir))]
    if cfg.num_processes:
        cmd += ["--num_processes", str(cfg.num_processes)]
    return cmd + ["-m", "lidr.stages.train_launch", str(args_file)]


def train_launched(
    model_dir: str, pairs_file: Path, out_dir: Path, cfg: TrainingConfig, work_dir: Path,
    log: Callable[[str], None] = print, base_dir: Path | None = None, log_dir: Path | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Train in `accelerate launch` subprocesses; returns the main rank's summary. Every rank
    gets the tracker settings; the trainer's tracking callbacks write on the main rank only."""
    work_dir.mkdir(parents=True, exist_ok=True)
    summary_file = work_dir / SUMMARY
    summary_file.unlink(missing_ok=True)
    args_file = work_dir / "train_args.json"
    args_file.write_text(json.dumps({
        "model_dir": model_dir, "pairs_file": str(pairs_file), "out_dir": str(out_dir),
        "work_dir": str(work_dir / "trainer"), "summary_file": str(summary_file),
        "training": cfg.model_dump(mode="json"),
        "log_dir": str(log_dir) if log_dir else None, "run_name": run_name,
    }, indent=2), encoding="utf-8")
    cmd = launch_command(cfg, args_file, base_dir)
    log("training: " + " ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:  # the ranks' step lines, shown as they come
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if "train step" in line or "error" in line.lower():
            log(line)
    if proc.wait() != 0 or not summary_file.is_file():
        raise LaunchError(f"accelerate launch exited with code {proc.returncode}; last output:\n" + "\n".join(tail))
    return json.loads(summary_file.read_text(encoding="utf-8"))


def _rank_main(args_file: str) -> None:
    """One rank: train, and on the main rank write the summary for the parent process."""
    import os

    from lidr.stages.train import train_dpo

    os.environ.setdefault("TQDM_DISABLE", "1")
    args = json.loads(Path(args_file).read_text(encoding="utf-8"))
    cfg = TrainingConfig.model_validate(args["training"])
    rank = int(os.environ.get("RANK", "0"))
    summary = train_dpo(args["model_dir"], Path(args["pairs_file"]), Path(args["out_dir"]), cfg,
                        Path(args["work_dir"]), log=lambda m: print(m, flush=True) if rank == 0 else None,
                        log_dir=Path(args["log_dir"]) if args.get("log_dir") else None,
                        run_name=args.get("run_name"))
    if rank == 0:
        summary["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
        write_json_atomic(Path(args["summary_file"]), summary)


if __name__ == "__main__":
    _rank_main(sys.argv[1])
