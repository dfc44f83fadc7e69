"""The `lidr` command."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from lidr.chat import ChatTemplateError
from lidr.config import ConfigError, RunConfig, demo_config, load_config, parse_config
from lidr.data.prompts import DataError
from lidr.languages import UnknownLanguageError
from lidr.models import ModelError
from lidr.store import RunDirError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Language Imbalance Driven Rewarding: multilingual self-improvement of chat LLMs.")
console = Console(stderr=True, log_path=False)
if not console.is_terminal:
    console = Console(stderr=True, log_path=False, width=140)
USER_ERRORS = (ConfigError, DataError, ModelError, RunDirError, UnknownLanguageError, ChatTemplateError)


def _stdout() -> Console:
    # Wide enough for the summary tables when the output is a file or a CI log.
    return Console() if Console().is_terminal else Console(width=140)


def _fail(err: Exception) -> None:
    console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _quiet_libraries() -> None:
    """lidr shows its own progress; silence the libraries' bars and chatter."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference log-prob pass reads this
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def _execute(cfg: RunConfig, run_dir: Path, base_dir: Path | None, dry_run: bool = False) -> None:
    # Imported here so that `lidr --help` and config errors do not pay for torch.
    from lidr.pipeline import Pipeline
    from lidr.summary import print_summary

    _quiet_libraries()
    pipeline = Pipeline(cfg, run_dir, base_dir, console)
    try:
        pipeline.prepare()
        if dry_run:
            for line in pipeline.describe():
                typer.echo(line)
            return
        t0 = time.perf_counter()
        summary = pipeline.run()
    except USER_ERRORS as err:
        _fail(err)
    print_summary(summary, _stdout(), str(run_dir))
    typer.echo(f"\ntotal wall time: {time.perf_counter() - t0:.0f} s")


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML run config"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="run directory (default runs/<name>)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="use only the first N prompts per iteration"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and print the plan; load no model"),
) -> None:
    """Run the LIDR loop from a config; re-running with the same config and output resumes."""
    try:
        cfg, base_dir = load_config(config)
        if limit is not None:
            cfg = parse_config({**cfg.model_dump(), "limit": limit}, str(config))
    except USER_ERRORS as err:
        _fail(err)
    run_dir = output or Path("runs") / (cfg.name or config.stem)
    _execute(cfg, run_dir, base_dir, dry_run)


@app.command()
def demo(
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="prompts per language per iteration (default 12)"),
    iterations: int = typer.Option(2, "--iterations", min=1, max=20),
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o"),
) -> None:
    """Two iterations on the bundled SmolLM2-135M-Instruct and bundled en/es/fr/de prompts."""
    try:
        cfg = demo_config(limit=limit, iterations=iterations)
    except USER_ERRORS as err:
        _fail(err)
    _execute(cfg, output, None)


@app.command()
def status(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Print what a run has finished so far."""
    from lidr.pipeline import run_summary
    from lidr.summary import print_summary

    if not (run_dir / "config.yaml").is_file():
        _fail(RunDirError(f"{run_dir} is not a lidr run directory (no config.yaml)"))
    print_summary(run_summary(run_dir), _stdout(), str(run_dir))


if __name__ == "__main__":
    app()
