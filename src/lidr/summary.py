"""The end-of-run summary: per iteration, what each stage produced and how long it took,
and the evaluation results (rates with their 95 % intervals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lidr import rundir, stopping
from lidr.report_stats import interval, rate_cell


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _train_line(train: dict[str, Any]) -> str:
    hist = train.get("history") or []
    if not hist:
        return f"training: {train.get('pairs', 0)} pairs, nothing trained"
    first, last = hist[0], hist[-1]
    margins = [h["margin"] for h in hist if h.get("margin") is not None]
    mean_margin = sum(margins) / len(margins) if margins else None
    return (f"training: {train['pairs']} pairs, {train['steps']} steps, loss {_fmt(first['loss'])} -> "
            f"{_fmt(last['loss'])}, reward margin {_fmt(first.get('margin'))} -> {_fmt(last.get('margin'))} "
            f"(mean {_fmt(mean_margin)})")


def _language_table(it: dict[str, Any]) -> Table:
    resp = it.get("responses", {}).get("languages", {})
    pairs = it.get("pairs", {}).get("languages", {})
    dirs = it.get("translations", {}).get("directions", {})
    table = Table(show_header=True, header_style="bold")
    for col in ("lang", "responses", "truncated", "transl. parsed/failed (into)", "pairs kept", "dropped"):
        table.add_column(col)
    for lang in sorted(set(resp) | set(pairs), key=lambda x: (x != "en", x)):
        r = resp.get(lang, {})
        into = [d for k, d in dirs.items() if k.endswith(f">{lang}")]
        parsed = sum(d["parsed"] for d in into)
        failed = sum(d["failed"] for d in into)
        p = pairs.get(lang, {})
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(rundir.drop_reasons(p).items())) or "-"
        table.add_row(lang, str(r.get("responses", "-")), str(r.get("truncated", "-")),
                      f"{parsed}/{failed}" if into else "-", str(p.get("kept", "-")), dropped)
    return table


def _eval_table(result: dict[str, Any]) -> Table:
    langs = result.get("languages", {})
    metrics = [k for k in next(iter(langs.values()), {}) if isinstance(next(iter(langs.values()))[k], (int, float))]
    table = Table(title=f"{result['task']} ({result.get('model', '')})", show_header=True, header_style="bold")
    table.add_column("lang")
    first = next(iter(langs.values()), {})
    for m in metrics:
        # A rate and its interval stay on one line; the count columns give up width first.
        table.add_column(m, no_wrap=interval(first, m) is not None)
    for lang, vals in langs.items():
        table.add_row(lang, *[_metric_cell(vals, m) for m in metrics])
    return table


def _metric_cell(values: dict[str, Any], metric: str) -> str:
    """A rate with its 95 % interval ('0.30 [0.11, 0.60]'); any other number as it is."""
    ci = interval(values, metric)
    return _fmt(values.get(metric), ".3g") if ci is None else rate_cell(values.get(metric), ci)


def print_summary(summary: dict[str, Any], console: Console, run_dir: str) -> None:
    console.print(f"\n[bold]run directory:[/bold] {run_dir}")
    for name, it in summary.items():
        if not name.startswith(rundir.ITER_PREFIX):
            continue
        t = int(name.removeprefix(rundir.ITER_PREFIX))
        if t > 0:
            times = ", ".join(f"{s} {it[s].get('seconds', 0):.0f}s"
                              for s in rundir.STAGES if s in it)
            console.print(f"\n[bold]iteration {t}[/bold]  (time: {times})")
            console.print(_language_table(it))
            if "train" in it:
                console.print(_train_line(it["train"]))
        for result in it.get("eval", {}).values():
            console.print(_eval_table(result))
    if "stopping" in summary:
        console.print("\n[bold]stopping[/bold]")
        for line in stopping.lines(summary["stopping"]):
            console.print(line, highlight=False, markup=False)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Every finished stage's `_done.json` and evaluation result, by iteration directory name;
    under `iterations: auto`, the stopping record too."""
    out: dict[str, Any] = {}
    for it_dir in rundir.iteration_dirs(run_dir).values():
        record = {s: r for s, r in rundir.stage_records(it_dir).items() if s in rundir.STAGES}
        evals = {r["task"]: r for r in rundir.eval_results(it_dir).values() if "task" in r}
        if evals:
            record["eval"] = evals
        out[it_dir.name] = record
    if (record := stopping.read(run_dir)) is not None:
        out["stopping"] = record  # the gains so far and why the run stopped
    return out
