"""The run report: tables and plots across iterations and languages, from saved files only.

    run_dir/report.md                    one table per (task, metric), paired tests, gaps to
                                         the dominant language, pairs, stage times
    run_dir/plots/<task>_<metric>.png    metric per language across iterations
    run_dir/plots/<task>_<metric>_gap.png  each language's gap to the dominant language

Everything is discovered from the run directory (`iter_<t>/eval/*.json` as written by
`lidr.evaluate.base.write_result`, their per-item files, `iter_<t>/<stage>/_done.json`,
`config.yaml` for the dominant language), so a new evaluation task or metric shows up
without a change here, and a report can be rebuilt without a model. Column M<t> is the
model evaluated in `iter_<t>/eval` (M0 = the starting model). Rates carry 95 % intervals
and M<t> vs M0 changes their paired tests (see `lidr.report_stats`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lidr import report_stats as rs
from lidr.stopping import report_section as stopping_section
from lidr import rundir
from lidr.store import write_text_atomic

# Metrics reported in percent (alpaca_eval's convention); every other metric whose values
# all lie in [0, 1] is a rate. Matched as substrings, so `lc_win_rate` is a percent too.
PERCENT_METRICS = ("win_rate", "standard_error")
# Stage order in the time table; stages not listed here follow alphabetically.
STAGE_ORDER = ("responses", "translations", "pairs", "train", "eval")


@dataclass
class RunResults:
    """Everything the report reads, gathered once from the run directory."""

    iterations: list[int]
    # task -> iteration -> the result file's "languages" dict
    evals: dict[str, dict[int, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    # iteration -> stage -> that stage's _done.json
    stages: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # files that exist but could not be read as results: (path, why)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    # task -> iteration -> per-item 0/1 outcomes (lang -> metric -> item id -> 0/1)
    items: dict[str, dict[int, rs.Outcomes]] = field(default_factory=dict)
    # task -> the template of each item, where the items name one (the same for every model)
    groups: dict[str, rs.Groups] = field(default_factory=dict)
    # the saved config.yaml as a dict ({} when absent), and its dominant language
    config: dict[str, Any] = field(default_factory=dict)
    dominant: str = "en"


# ---- reading the run directory --------------------------------------------------------------

def load_run(run_dir: Path) -> RunResults:
    run_dir = Path(run_dir)
    iters = rundir.iteration_dirs(run_dir)
    res = RunResults(iterations=list(iters))
    skip = lambda path, why: res.skipped.append((path, why))  # noqa: E731 - a damaged file is reported, not fatal
    _load_config(rundir.config_path(run_dir), res)
    for t, it_dir in iters.items():
        for label, result in rundir.eval_results(it_dir, skip).items():
            res.evals.setdefault(label, {})[t] = result["languages"]
            _load_items(rs.items_path(it_dir / "eval" / f"{label}.json", result), label, t, res)
        if stages := rundir.stage_records(it_dir, skip):
            res.stages[t] = stages
    return res


def _load_config(path: Path, res: RunResults) -> None:
    if not path.is_file():
        return
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        res.skipped.append((path, f"unreadable: {e}"))
        return
    if isinstance(cfg, dict):
        res.config = cfg
        res.dominant = str(cfg.get("dominant_language") or res.dominant)


def _load_items(path: Path, task: str, t: int, res: RunResults) -> None:
    """Per-item outcomes, for paired tests; a result without them still gets its tables."""
    if not path.is_file():
        return
    try:
        outcomes, problems = rs.load_items(path)
    except OSError as e:
        res.skipped.append((path, f"unreadable: {e}"))
        return
    res.skipped += [(path, why) for why in problems]
    if outcomes:
        res.items.setdefault(task, {})[t] = outcomes
        rs.add_missing_rates(res.evals[task][t], outcomes)
        if t == 0:
            res.groups[task] = rs.item_groups(path)


def numeric_metrics(per_iter: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    """Metric names with a number somewhere, in first-seen order; not `n`, not dicts/lists."""
    names: dict[str, None] = {}
    for langs in per_iter.values():
        for values in langs.values():
            for key, v in values.items():
                if key != "n" and _is_number(v):
                    names.setdefault(key)
    return list(names)


def _is_number(v: Any) -> bool:
    # bool is an int in Python, but a flag is not a metric.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _languages(per_iter: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    """Languages in the order the result files list them (M0's order first)."""
    seen: dict[str, None] = {}
    for t in sorted(per_iter):
        for lang in per_iter[t]:
            seen.setdefault(lang)
    return list(seen)


# ---- formatting -----------------------------------------------------------------------------

def number_format(metric: str, values: list[float | int]) -> str:
    """One format per table, so a column lines up: percent .1f, count d, rate .3f, else .2f."""
    if any(p in metric for p in PERCENT_METRICS):
        return ".1f"
    if values and all(isinstance(v, int) for v in values):
        return "d"
    if all(0.0 <= v <= 1.0 for v in values):
        return ".3f"
    return ".2f"


def _fmt(v: float, spec: str, signed: bool = False) -> str:
    if spec == "d":
        v = int(round(v))
    return format(v, ("+" if signed else "") + spec)


def _cell(value: float | None, base: float | None, spec: str, show_delta: bool) -> str:
    if value is None:
        return "-"
    text = _fmt(value, spec)
    if show_delta and base is not None:
        text += f" ({_fmt(value - base, spec, signed=True)})"
    return text


_table = rs.table


# ---- report sections ------------------------------------------------------------------------

def metric_table(metric: str, per_iter: dict[int, dict[str, dict[str, Any]]], dominant: str | None = None) -> list[str]:
    """Rows = languages, columns = M<t> with the delta against M0, then n per model."""
    iters = sorted(per_iter)
    langs = _languages(per_iter)

    def value(t: int, lang: str) -> float | int | None:
        v = per_iter[t].get(lang, {}).get(metric)
        return v if _is_number(v) else None

    if rs.has_intervals(metric, list(per_iter.values())):
        return _rate_table(metric, per_iter, iters, langs, dominant)
    values = [v for t in iters for lang in langs if (v := value(t, lang)) is not None]
    spec = number_format(metric, values)
    rows = []
    for lang in langs:
        base = value(0, lang) if 0 in per_iter else None
        cells = [_cell(value(t, lang), base, spec, show_delta=t != 0) for t in iters]
        rows.append([lang, *cells, _n_cell(per_iter, iters, lang)])
    mean = _mean_row(per_iter, iters, langs, value, spec)
    if mean:
        rows.append(mean)
    return _table(["language", *(f"M{t}" for t in iters), "n"], rows)


def _rate_table(metric: str, per_iter: dict[int, dict[str, dict[str, Any]]], iters: list[int],
                langs: list[str], dominant: str | None = None) -> list[str]:
    """Rates as 'value [95 % interval] (change against M0)'; the mean over all languages, and
    over the non-dominant ones (the languages the method is for)."""

    def cell(t: int, lang: str) -> str:
        values = per_iter[t].get(lang, {})
        v = values.get(metric)
        if not _is_number(v):
            return "-"
        base = per_iter.get(0, {}).get(lang, {}).get(metric) if t != 0 else None
        return rs.rate_cell(v, rs.interval(values, metric), v - base if _is_number(base) else None)

    rows = [[lang, *(cell(t, lang) for t in iters), _n_cell(per_iter, iters, lang)] for lang in langs]
    others = [lang for lang in langs if lang != dominant]
    for label, group in (("**mean**", langs), (f"**mean {', '.join(others)}**", others if dominant in langs else [])):
        if len(group) < 2:
            continue
        means = {t: rs.mean_cell(per_iter[t], group, metric) for t in iters}
        if all(m is not None for m in means.values()):
            base = means[0][0] if 0 in means else None
            rows.append([label, *(means[t][1] + (f" ({rs.signed(means[t][0] - base)})"
                                                  if t != 0 and base is not None else "") for t in iters), ""])
    return _table(["language", *(f"M{t}" for t in iters), "n"], rows)


def _n_cell(per_iter: dict[int, dict[str, dict[str, Any]]], iters: list[int], lang: str) -> str:
    """One n when every model saw the same number of items, else n per model (M0/M1/...)."""
    ns = [per_iter[t].get(lang, {}).get("n") for t in iters]
    ns = ["-" if n is None else str(n) for n in ns]
    return ns[0] if len(set(ns)) == 1 else "/".join(ns)


def _mean_row(per_iter, iters, langs, value, spec) -> list[str] | None:
    """The unweighted mean over languages (the paper's 'average'); only when every model
    has every language, since a mean over different language sets would not compare.
    Not for counts (a mean of per-language counts is no quantity anyone reads)."""
    if len(langs) < 2 or spec == "d":
        return None
    grid = {t: [value(t, lang) for lang in langs] for t in iters}
    if any(v is None for vs in grid.values() for v in vs):
        return None
    means = {t: sum(vs) / len(vs) for t, vs in grid.items()}
    base = means.get(0)
    return ["**mean**", *(_cell(means[t], base, spec, t != 0) for t in iters), ""]


def eval_section(res: RunResults, plots: dict[tuple[str, str], Path | None], run_dir: Path) -> list[str]:
    lines = ["## Evaluation", ""]
    if not res.evals:
        return lines + ["No evaluation results in this run (no `iter_<t>/eval/<task>.json`).", ""]
    lines += ["M<t> is the model evaluated in `iter_<t>/eval`; (±x) is the change against M0; "
              "[lo, hi] is the 95 % interval (Wilson for a rate; for a mean over languages (**mean**: all of them), "
              "Wilson on the effective n).", ""]
    # An iteration with no results at all is named once, at the top; here only the
    # iterations that have other tasks' results but not this one.
    evaluated = sorted({t for per_iter in res.evals.values() for t in per_iter})
    for task, per_iter in sorted(res.evals.items()):
        lines += [f"### {task}", ""]
        missing = [t for t in evaluated if t not in per_iter]
        if missing:
            lines += [f"No `{task}` results for {', '.join(f'M{t}' for t in missing)}.", ""]
        if 0 not in per_iter:
            lines += ["No M0 result: no deltas.", ""]
        metrics = numeric_metrics(per_iter)
        if not metrics:
            lines += ["No numeric metrics.", ""]
        for metric in metrics:
            lines += [f"#### {task}: {metric}", ""]
            lines += metric_table(metric, per_iter, res.dominant) + [""]
            lines += _image(plots.get((task, metric)), f"{task} {metric}", run_dir)
            if metric in rs.ITEM_KEYS and task in res.items:
                lines += rs.paired_section(task, metric, res.items[task], res.dominant, _languages(per_iter),
                                           res.groups.get(task))
        for metric in (m for m in rs.GAP_METRICS if m in metrics):
            gap_lines, _ = rs.gap_section(task, metric, per_iter, res.dominant, _languages(per_iter))
            lines += gap_lines + (_image(plots.get((task, f"{metric}_gap")), f"{task} {metric} gap", run_dir)
                                  if gap_lines else [])
    return lines


def _image(png: Path | None, title: str, run_dir: Path) -> list[str]:
    return [] if png is None else [f"![{title}]({png.relative_to(run_dir).as_posix()})", ""]


def pairs_section(res: RunResults) -> list[str]:
    """Kept and dropped pairs per language, per iteration (iteration t trains M<t> from M<t-1>)."""
    done_by_t = {t: d for t in res.iterations if (d := res.stages.get(t, {}).get("pairs"))}
    # With several answers per prompt (generation.samples): how many kept pairs came from the extra ones.
    stats = [s for d in done_by_t.values() for s in (d.get("languages") or {}).values()]
    sampled = any("kept_sampled" in s for s in stats)
    # With a mix of prompt kinds (word problems and instructions): the kept pairs of each kind.
    mixed = any("kept_by_task" in s for s in stats)
    # With `pairs.language_pairs`: how many of the kept pairs are the added language pairs.
    language = any("language_pairs" in s for s in stats)
    # With `gates.cut_off_native_rejected: trim`: kept pairs whose looping rejected side was cut.
    trimmed = any("rejected_trimmed" in s for s in stats)
    # With `translation.retries`: kept pairs whose chosen side is a sampled retry of the translation.
    retried = any("translation_retries" in s for s in stats)
    rows = []
    for t, done in done_by_t.items():
        for lang, s in (done.get("languages") or {}).items():
            dropped = rundir.drop_reasons(s)
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "-"
            extra = [str(s.get("kept_sampled", "-"))] if sampled else []
            by_task = ", ".join(f"{k} {v}" for k, v in (s.get("kept_by_task") or {}).items()) or "-"
            lp = [str(s.get("language_pairs", "-"))] if language else []
            tr = [str(s.get("rejected_trimmed", "-"))] if trimmed else []
            tr += [str(s.get("translation_retries", "-"))] if retried else []
            rows.append([str(t), lang, str(s.get("kept", "-")), *extra, *lp, *tr, *([by_task] if mixed else []),
                         str(sum(dropped.values())), reasons])
    if not rows:
        return []
    header = ["iteration", "language", "kept", *(["of them from sampled answers"] if sampled else []),
              *(["of them language pairs"] if language else []),
              *(["of them rejected side trimmed"] if trimmed else []),
              *(["of them from a translation retry (their first translation's drop counted too)"] if retried else []),
              *(["kept by prompt kind"] if mixed else []), "dropped", "dropped by reason"]
    return ["## Preference pairs", "", *_table(header, rows), ""]


def _stage_key(name: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER), name)


def timing_section(res: RunResults) -> list[str]:
    """Seconds per stage per iteration, from each stage's `_done.json`."""
    stages = sorted({s for st in res.stages.values() for s, d in st.items() if _is_number(d.get("seconds"))},
                    key=_stage_key)
    if not stages:
        return []
    rows = []
    for t in res.iterations:
        st = res.stages.get(t, {})
        secs = [st.get(s, {}).get("seconds") for s in stages]
        if all(v is None for v in secs):
            continue
        total = sum(v for v in secs if _is_number(v))
        rows.append([str(t), *("-" if v is None else f"{v:.1f}" for v in secs), f"{total:.1f}"])
    return ["## Time per stage (seconds)", "", *_table(["iteration", *stages, "total"], rows), ""]


def availability_section(res: RunResults) -> list[str]:
    lines = []
    with_results = {t for per_iter in res.evals.values() for t in per_iter}
    without = [t for t in res.iterations if t not in with_results]
    if without:
        lines.append("Iterations with no evaluation results: " + ", ".join(f"M{t} (`iter_{t}`)" for t in without))
    for path, why in res.skipped:
        lines.append(f"Skipped `{path}`: {why}")
    return lines + [""] if lines else []


# ---- plots ----------------------------------------------------------------------------------

def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text)


def plot_metric(task: str, metric: str, per_iter: dict[int, dict[str, dict[str, Any]]], path: Path) -> None:
    """One line per language, x = iteration. Uses the Agg canvas directly (no pyplot), so no
    global backend is switched and nothing needs a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    iters = sorted(per_iter)
    for lang in _languages(per_iter):
        pts = [(t, per_iter[t][lang][metric]) for t in iters
               if _is_number(per_iter[t].get(lang, {}).get(metric))]
        if pts:
            ax.plot([t for t, _ in pts], [v for _, v in pts], marker="o", label=lang)
    rs.save_iteration_plot(fig, ax, iters, metric + (" (%)" if any(p in metric for p in PERCENT_METRICS) else ""),
                           f"{task}: {metric}", path)


def make_plots(res: RunResults, plot_dir: Path) -> tuple[dict[tuple[str, str], Path | None], str | None]:
    """(task, metric) -> png path; a note instead when matplotlib is missing (the tables
    are the report; plots are a view of them)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {}, "Plots skipped: matplotlib is not installed (`pip install matplotlib`)."
    plots: dict[tuple[str, str], Path | None] = {}
    for task, per_iter in sorted(res.evals.items()):
        for metric in numeric_metrics(per_iter):
            path = plot_dir / f"{_safe_name(task)}_{_safe_name(metric)}.png"
            plot_metric(task, metric, per_iter, path)
            plots[(task, metric)] = path
        for metric in (m for m in rs.GAP_METRICS if m in numeric_metrics(per_iter)):
            found = rs.gaps(per_iter, metric, res.dominant, _languages(per_iter))
            if found:
                path = plot_dir / f"{_safe_name(task)}_{_safe_name(metric)}_gap.png"
                rs.plot_gap(task, metric, found, res.dominant, path)
                plots[(task, f"{metric}_gap")] = path
    return plots, None


# ---- entry point ----------------------------------------------------------------------------

def build_report(run_dir: Path) -> Path:
    """Write `run_dir/report.md` and `run_dir/plots/*.png` from the saved results; returns
    the report's path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    res = load_run(run_dir)
    plots, plot_note = make_plots(res, run_dir / "plots")
    lines = [f"# lidr report: {run_dir.name}", ""]
    lines += availability_section(res)
    if plot_note:
        lines += [plot_note, ""]
    lines += stopping_section(run_dir)
    lines += eval_section(res, plots, run_dir)
    lines += pairs_section(res)
    lines += timing_section(res)
    out = run_dir / "report.md"
    write_text_atomic(out, "\n".join(lines).rstrip() + "\n")
    return out
