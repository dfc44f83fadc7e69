"""Several runs side by side, from their saved files only:

    out_dir/report.md                    per (task, metric): rows = languages, columns = each
                                         run's M0 and final model; the config keys that differ
    out_dir/plots/<task>_<metric>.png    metric per language, one line per run (final model
                                         solid, M0 dashed), intervals as error bars

A run is named by its directory name. Its final model, per task, is the highest iteration
with a result for that task, so runs of different lengths still line up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lidr import report_stats as rs
from lidr.config import diff_configs
from lidr.report import RunResults, _is_number, _languages, _safe_name, load_run, number_format, numeric_metrics
from lidr.store import RunDirError, write_text_atomic

Columns = list[tuple[str, int, dict[str, dict[str, Any]]]]  # (run, t, per-language values)


def run_names(run_dirs: list[Path]) -> list[str]:
    """Directory names; a name two runs share gets its parent folder in front."""
    names = [p.name for p in run_dirs]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in run_dirs]


def _columns(task: str, runs: dict[str, RunResults]) -> Columns:
    """Each run's M0 (when it has one) and final model for `task`."""
    cols: Columns = []
    for name, res in runs.items():
        per_iter = res.evals.get(task, {})
        for t in sorted({t for t in (0, max(per_iter, default=0)) if t in per_iter}):
            cols.append((name, t, per_iter[t]))
    return cols


def _cell(values: dict[str, Any], metric: str, base: dict[str, Any] | None, spec: str | None) -> str:
    v = values.get(metric)
    if not _is_number(v):
        return "-"
    b = base.get(metric) if base is not None else None
    delta = v - b if _is_number(b) else None
    if spec is None:
        return rs.rate_cell(v, rs.interval(values, metric), delta)
    text = format(int(v) if spec == "d" else v, spec)
    return text + (f" ({format(int(delta) if spec == 'd' else delta, '+' + spec)})" if delta is not None else "")


def compare_table(metric: str, cols: Columns) -> list[str]:
    """Rows = languages; a final model's cell carries its change against the same run's M0."""
    per_col = {i: langs for i, (_, _, langs) in enumerate(cols)}
    langs = _languages(per_col)
    spec = None
    if not rs.has_intervals(metric, list(per_col.values())):
        values = [v for c in per_col.values() for x in c.values() if _is_number(v := x.get(metric))]
        spec = number_format(metric, values)
    m0 = {name: values for name, t, values in cols if t == 0}
    rows = []
    for lang in langs:
        cells = [_cell(values.get(lang, {}), metric, m0[name].get(lang, {}) if t != 0 and name in m0 else None,
                       spec) for name, t, values in cols]
        ns = [str(values.get(lang, {}).get("n", "-")) for _, _, values in cols]
        rows.append([lang, *cells, ns[0] if len(set(ns)) == 1 else "/".join(ns)])
    return rs.table(["language", *(f"{name} M{t}" for name, t, _ in cols), "n"], rows)


def config_section(names: list[str], configs: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for cfg in configs[1:]:
        keys.update(dict.fromkeys(diff_configs(configs[0], cfg)))
    lines = ["## Configuration keys that differ", ""]
    if not keys:
        return lines + ["None: the runs' config.yaml files agree on every key.", ""]
    rows = [[f"`{k}`", *(_lookup(cfg, k) for cfg in configs)] for k in keys]
    return lines + rs.table(["key", *names], rows) + [""]


def _lookup(cfg: dict[str, Any], dotted: str) -> str:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return "-"
        node = node[part]
    return str(node).replace("|", "\\|")


def plot_compare(task: str, metric: str, cols: Columns, path: Path) -> None:
    """x = language; per run a solid line for its final model and a dashed one for M0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    langs = _languages(dict(enumerate(c[2] for c in cols)))
    colours: dict[str, str] = {}
    for name, t, values in cols:
        pts = [(i, values[lang]) for i, lang in enumerate(langs) if _is_number(values.get(lang, {}).get(metric))]
        if not pts:
            continue
        ys = [v[metric] for _, v in pts]
        cis = [rs.interval(v, metric) for _, v in pts]
        err = None if any(c is None for c in cis) else [[y - c[0] for y, c in zip(ys, cis)],
                                                        [c[1] - y for y, c in zip(ys, cis)]]
        line = ax.errorbar([i for i, _ in pts], ys, yerr=err, marker="o", capsize=3, color=colours.get(name),
                           linestyle="--" if t == 0 else "-", label=f"{name} M{t}")
        colours.setdefault(name, line.lines[0].get_color())
    ax.set_xticks(range(len(langs)), langs)
    ax.set_xlabel("language")
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def build_comparison(run_dirs: list[Path], out_dir: Path) -> Path:
    """Write `out_dir/report.md` and `out_dir/plots/*.png` for several runs."""
    run_dirs = [Path(p) for p in run_dirs]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--output {out_dir} is a file; expected a directory for report.md and plots/")
    if (out_dir / "config.yaml").is_file():
        raise RunDirError(f"--output {out_dir} is a run directory; its own report is `lidr report {out_dir}`")
    names = run_names(run_dirs)
    runs = {name: load_run(p) for name, p in zip(names, run_dirs)}
    lines = [f"# lidr comparison: {', '.join(names)}", ""]
    lines += [f"- `{name}`: {p}" for name, p in zip(names, run_dirs)] + [""]
    lines += [f"Skipped `{path}`: {why}" for res in runs.values() for path, why in res.skipped]
    lines += config_section(names, [res.config for res in runs.values()])
    lines += _eval_section(runs, out_dir)
    out = out_dir / "report.md"
    write_text_atomic(out, "\n".join(lines).rstrip() + "\n")
    return out


def _eval_section(runs: dict[str, RunResults], out_dir: Path) -> list[str]:
    lines = ["## Evaluation", "",
             "Per run: its M0 and its final model (highest iteration evaluated); (±x) is the change "
             "against the same run's M0; [lo, hi] the 95 % interval (Wilson).", ""]
    tasks = sorted({task for res in runs.values() for task in res.evals})
    if not tasks:
        return lines + ["No evaluation results in these runs.", ""]
    for task in tasks:
        cols = _columns(task, runs)
        lines += [f"### {task}", ""]
        for metric in numeric_metrics(dict(enumerate(c[2] for c in cols))):
            png = out_dir / "plots" / f"{_safe_name(task)}_{_safe_name(metric)}.png"
            plot_compare(task, metric, cols, png)
            lines += [f"#### {task}: {metric}", "", *compare_table(metric, cols), "",
                      f"![{task} {metric}](plots/{png.name})", ""]
    return lines
