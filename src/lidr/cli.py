"""The `lidr` command."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

# torch's OpenMP threads (libgomp) spin for a while before they sleep. Beside other work on the
# same cores (a test suite, a second run) the spinning threads take the cores from each other:
# the hf engine generated 4-8x slower on 2 cores. A short spin keeps the speed of the default
# alone and most of the passive policy's beside other work (benchmarks/bench_hf_wait_policy.py,
# benchmarks/RESULTS.md). libgomp reads it once, when torch loads: this module must not import
# torch. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

import typer
from rich.console import Console

from lidr.chat import ChatTemplateError
from pydantic import ValidationError

from lidr.config import ENGINES, EVAL_TASKS, ConfigError, EvalTask, LmEvalTask, MgsmTask, OpenAIOptions, RunConfig, \
    XAlpacaEvalTask, _format_error, demo_config, load_config, parse_config
from lidr.data.prompts import DataError
from lidr.engines.base import EngineError
from lidr.languages import UnknownLanguageError
from lidr.models import ModelError
from lidr import rundir
from lidr.store import RunDirError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Language Imbalance Driven Rewarding: multilingual self-improvement of chat LLMs.")
console = Console(stderr=True, log_path=False)
if not console.is_terminal:
    console = Console(stderr=True, log_path=False, width=140)
USER_ERRORS = (ConfigError, DataError, ModelError, RunDirError, UnknownLanguageError, ChatTemplateError, EngineError)


ENGINE_HELP = " | ".join(f"{name} ({text})" for name, text in
                         {"auto": "ct2 on a CPU, hf on one with AMX, vllm or hf on a GPU", **ENGINES}.items())


def _engine_option():
    return typer.Option("auto", "--engine", help=ENGINE_HELP)


def _help(section: type, field: str) -> str:
    """An option's help: the config field's own description (one source for both)."""
    return section.model_fields[field].description


def _base_url_option():
    return typer.Option(None, "--base-url", help=_help(OpenAIOptions, "base_url"))


def _api_key_env_option():
    return typer.Option(None, "--api-key-env", help=_help(OpenAIOptions, "api_key_env"))


def _serve_command_option():
    return typer.Option(None, "--serve-command", help=_help(OpenAIOptions, "serve_command"))


def _compute_type_option():
    return typer.Option("auto", "--compute-type", help="ct2 engine: auto (float32 on a CPU), int8 (faster, "
                        "changes the text: benchmarks/RESULTS.md), float32, bfloat16, ...")


def _generation_config(engine: str, base_url: Optional[str], api_key_env: Optional[str], serve_command: Optional[str],
                       batch_size: int, compute_type: str = "auto"):
    """The command line's engine choice as a run config's generation section."""
    from lidr.config import GenerationConfig

    if compute_type != "auto" and engine not in ("auto", "ct2"):
        _fail(ConfigError(f"--compute-type {compute_type} is for the ct2 engine, not --engine {engine}"))
    openai = {"base_url": base_url, "api_key_env": api_key_env or None, "serve_command": serve_command}
    try:
        return GenerationConfig.model_validate({"engine": engine, "batch_size": batch_size, "openai": openai,
                                                "ct2": {"compute_type": compute_type}})
    except ValidationError as err:
        _fail(ConfigError(_format_error(err, "(command line)")))


def _stdout() -> Console:
    # Wide enough for the summary tables when the output is a file or a CI log.
    return Console() if Console().is_terminal else Console(width=140)


def _fail(err: Exception) -> None:
    from rich.markup import escape

    # Escaped: messages quote things like pip install 'lidr[vllm]', which are not markup.
    console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
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


def _execute(cfg: RunConfig, run_dir: Path, base_dir: Path | None, dry_run: bool = False,
             worker: int = 0, workers: int = 1, reuse: Path | None = None) -> None:
    # Imported here so that `lidr --help` and config errors do not pay for torch.
    from lidr.pipeline import Pipeline
    from lidr.store import Worker
    from lidr.summary import print_summary

    if not 0 <= worker < workers:
        _fail(ConfigError(f"--worker {worker} is out of range for --workers {workers} (0 to {workers - 1})"))
    _quiet_libraries()
    pipeline = Pipeline(cfg, run_dir, base_dir, console, Worker(worker, workers), reuse)
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
    limit: Optional[int] = typer.Option(None, "--limit", help="use only the first N prompts per iteration"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and print the plan; load no model"),
    worker: int = typer.Option(0, "--worker", min=0, help="data parallel: this worker's index (0 trains)"),
    workers: int = typer.Option(1, "--workers", min=1, help="data parallel: how many workers share the run "
                                "directory and split generation and translation shards"),
    reuse: Optional[Path] = typer.Option(None, "--reuse", help="copy the finished stages of this run directory "
                                         "whose settings (and those of every stage before) are the same; the "
                                         "first that differs runs (an ablation skips what it does not change)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="change one setting of "
                                             "the config, e.g. --set training.seed=43 (repeatable; the run "
                                             "saves the changed config, so resume with the same --set)"),
) -> None:
    """Run the LIDR loop from a config; re-running with the same config and output resumes."""
    try:
        if limit is not None and limit < 1:  # checked here: typer's min= prints a usage box
            raise ConfigError(f"--limit must be at least 1 (got {limit})")
        cfg, base_dir = load_config(config, set_)
        if limit is not None:
            cfg = parse_config({**cfg.model_dump(), "limit": limit}, str(config))
    except USER_ERRORS as err:
        _fail(err)
    run_dir = output or Path("runs") / (cfg.name or config.stem)
    _execute(cfg, run_dir, base_dir, dry_run, worker, workers, reuse)


@app.command()
def demo(
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="prompts per language per iteration (default 24)"),
    iterations: int = typer.Option(2, "--iterations", min=1, max=20),
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o"),
) -> None:
    """Two iterations on the bundled SmolLM2-135M-Instruct and the bundled en/es/fr/de arithmetic problems."""
    try:
        cfg = demo_config(limit=limit, iterations=iterations)
    except USER_ERRORS as err:
        _fail(err)
    _execute(cfg, output, None)


@app.command("eval")
def eval_(
    model: str = typer.Option(..., "--model", help="model directory, hub id, or bundled:smollm2-135m-instruct"),
    task: str = typer.Option(..., "--task", help=" | ".join(EVAL_TASKS)),
    data: list[str] = typer.Option([], "--data", help=_help(EvalTask, "data")),
    languages: list[str] = typer.Option([], "--languages", help="language codes (repeat, or comma-separated)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help=_help(EvalTask, "limit")),
    judge: Optional[str] = typer.Option(None, "--judge", help=_help(XAlpacaEvalTask, "judge")),
    baseline: Optional[str] = typer.Option(None, "--baseline", help=_help(XAlpacaEvalTask, "baseline")),
    families: list[str] = typer.Option([], "--families", help=_help(LmEvalTask, "families")),
    template: str = typer.Option("mgsm", "--template", help=_help(MgsmTask, "template")),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help=_help(EvalTask, "max_new_tokens")),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help=_help(EvalTask, "batch_size")),
    output: Path = typer.Option(..., "--output", "-o", help="folder for <task>.json and raw outputs"),
    engine: str = _engine_option(),
    base_url: Optional[str] = _base_url_option(),
    api_key_env: Optional[str] = _api_key_env_option(),
    serve_command: Optional[str] = _serve_command_option(),
    compute_type: str = _compute_type_option(),
    judge_engine: Optional[str] = typer.Option(None, "--judge-engine", help=_help(XAlpacaEvalTask, "judge_engine")
                                               + "; openai judges use --judge-base-url"),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="x_alpacaeval: the judge's server"),
) -> None:
    """Evaluate one model on one task; writes OUTPUT/<task>.json plus raw generations."""
    from lidr.config import EVAL_TASK_CLASSES, parse_eval_task
    from lidr.evaluate.runner import check_task, run_task
    from lidr.models import resolve_model
    from lidr.pipeline import _metrics_line

    langs = [code for item in languages for code in item.split(",") if code]
    options = dict(
        task=task, data=data, languages=langs or None, limit=limit, judge=judge, baseline=baseline,
        families=[f for item in families for f in item.split(",") if f], template=template,
        max_new_tokens=max_new_tokens, batch_size=batch_size, judge_engine=judge_engine,
        judge_openai={"base_url": judge_base_url, "api_key_env": api_key_env} if judge_base_url else None)
    # Options of another kind (--judge on an mgsm task) are ignored, as the help says whose they are.
    kind = EVAL_TASK_CLASSES.get(task)
    try:
        spec = parse_eval_task({k: v for k, v in options.items() if kind is None or k in kind.model_fields})
    except ValidationError as err:
        _fail(ConfigError(_format_error(err, "(command line)")))
    gen = _generation_config(engine, base_url, api_key_env, serve_command, batch_size, compute_type)
    try:
        check_task(spec, langs, None, gen)
        model_path = resolve_model(model)
        _quiet_libraries()
        result = run_task(spec, model_path, model, output, langs, gen=gen)
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(f"{spec.task}: " + _metrics_line(result))
    typer.echo(f"written to {output / (spec.task + '.json')}")


@app.command("translate-prompts")
def translate_prompts_cmd(
    model: str = typer.Option(..., "--model", help="the translating model: directory, hub id, or bundled:..."),
    input: Path = typer.Option(..., "--input", help="prompts in the source language (jsonl/json/csv/parquet)"),
    languages: list[str] = typer.Option(..., "--languages", help="target codes (repeat, or comma-separated)"),
    source: str = typer.Option("en", "--source", help="language of the input prompts"),
    text_key: str = typer.Option("instruction", "--text-key"),
    id_key: Optional[str] = typer.Option("id", "--id-key", help="id column ('' = row number)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the aligned {lang}.jsonl files"),
    engine: str = _engine_option(),
    base_url: Optional[str] = _base_url_option(),
    api_key_env: Optional[str] = _api_key_env_option(),
    serve_command: Optional[str] = _serve_command_option(),
    compute_type: str = _compute_type_option(),
) -> None:
    """Translate English-only prompts into aligned prompt files that `lidr run` reads."""
    from lidr.config import PromptSource, TranslationConfig
    from lidr.data.prompts import load_aligned
    from lidr.engines import Sampling, check_engine, engine_from_config
    from lidr.languages import get_language
    from lidr.models import resolve_model
    from lidr.stages.translate_prompts import translate_prompts

    targets = [code for item in languages for code in item.split(",") if code]
    try:
        for code in [source, *targets]:
            get_language(code)
        src = PromptSource(paths={source: str(input)}, text_key=text_key, id_key=id_key or None, limit=limit)
        prompts = load_aligned(src, [source], None)[source]
        model_path = resolve_model(model)
        gen = _generation_config(engine, base_url, api_key_env, serve_command, batch_size, compute_type)
        check_engine(gen)
    except USER_ERRORS as err:
        _fail(err)
    _quiet_libraries()
    stats = translate_prompts(
        prompts, targets, output, lambda: engine_from_config(gen, model_path),
        sampling=Sampling(repetition_penalty=TranslationConfig().repetition_penalty),  # as the translation stage
        max_new_tokens=max_new_tokens, text_key=text_key)
    failed = "; ".join(f"{lang}: {sum(c.values())} failed" + (f" {c}" if c else "")
                       for lang, c in stats["failed"].items())
    typer.echo(f"{stats['kept']} of {stats['prompts']} prompts translated into every language ({failed})")
    typer.echo(f"written to {output}/{{lang}}.jsonl; use path: {output}/{{lang}}.jsonl in a run config")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="one run directory, or several to compare"),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="where a comparison of several runs is written"),
) -> None:
    """Write RUN_DIR/report.md and plots from the run's saved results (no model needed);
    with several runs, one report with them side by side into --output."""
    from lidr.report import build_report
    from lidr.report_compare import build_comparison

    for run_dir in run_dirs:
        if not rundir.config_path(run_dir).is_file():
            _fail(RunDirError(f"{run_dir} is not a lidr run directory (no config.yaml)"))
    if output is None and len(run_dirs) > 1:
        _fail(RunDirError(f"{len(run_dirs)} runs to compare: give --output DIR for the comparison"))
    try:
        out = build_report(run_dirs[0]) if output is None else build_comparison(run_dirs, output)
    except RunDirError as e:
        _fail(e)
    typer.echo(f"report written to {out}")


@app.command()
def status(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Print what a run has finished so far."""
    from lidr.summary import run_summary
    from lidr.summary import print_summary

    if not rundir.config_path(run_dir).is_file():
        _fail(RunDirError(f"{run_dir} is not a lidr run directory (no config.yaml)"))
    try:
        summary = run_summary(run_dir)
    except USER_ERRORS as err:
        _fail(err)
    print_summary(summary, _stdout(), str(run_dir))


if __name__ == "__main__":
    app()
