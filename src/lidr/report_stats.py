"""The statistics a report shows: 95 % intervals in rate cells, M<t> vs M0 paired tests on
the same items, and each language's gap to the dominant language.

Inputs are what evaluations save: a result's per-language numbers (`accuracy`, `n`,
`accuracy_ci`, ...) and its per-item file (one JSON row per item: `id`, `language` and
0/1 outcomes such as `correct`), named by the result's `items` key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lidr.config import GatesConfig
from lidr.evaluate.stats import (
    difference_interval, discordant, mcnemar_exact, mean_rate_interval, paired_bootstrap, paired_group_randomization,
    wilson_interval,
)
from lidr.evaluate.tasks.mgsm import too_short_to_identify
from lidr.stages.gates import is_degenerate
from lidr.text.answers import gold_in_question

# Metrics that are k/n rates: their cells carry a 95 % interval.
PROPORTIONS = ("accuracy", "accuracy_in_language", "accuracy_no_echo", "accuracy_no_loop", "off_target",
               "off_target_identified", "unidentified", "fidelity", "degenerate", "same_opening")
# Per-item 0/1 key, in a task's items file, behind each rate metric.
ITEM_KEYS = {"accuracy": "correct", "accuracy_in_language": "correct_in_language",
             "accuracy_no_echo": "correct_no_echo", "accuracy_no_loop": "correct_no_loop", "off_target": "off_target",
             "off_target_identified": "off_target_identified", "unidentified": "unidentified",
             "fidelity": "in_language", "degenerate": "degenerate",
             "same_opening": "same_opening"}
# Metrics whose gap to the dominant language gets a table and a plot.
GAP_METRICS = ("accuracy", "accuracy_in_language")
ALPHA = 0.05
N_BOOT = 10_000
RATE_SPEC = ".2f"  # with an interval beside it, a third decimal is noise at any n we run

# Per-item key naming the template an item was written from (the bundled word problems);
# the paired tests then test the change over whole templates as well as items.
GROUP_KEY = "template"
_LOOP_THRESHOLDS = GatesConfig()  # the degenerate gate's defaults, as the mgsm task marks loops

Outcomes = dict[str, dict[str, dict[str, int]]]  # lang -> metric -> item id -> 0/1
Groups = dict[str, dict[str, str]]  # lang -> item id -> template


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---- intervals in cells ---------------------------------------------------------------------

def counts(values: dict[str, Any], metric: str) -> tuple[int, int] | None:
    """(successes, n) behind a rate, when the result has both the rate and n."""
    v, n = values.get(metric), values.get("n")
    if not (_number(v) and isinstance(n, int) and n > 0 and 0.0 <= v <= 1.0):
        return None
    return round(v * n), n


def interval(values: dict[str, Any], metric: str) -> tuple[float, float] | None:
    """The 95 % interval saved next to the metric (`<metric>_ci`), or, for results saved
    before intervals were, the Wilson interval of its counts."""
    ci = values.get(f"{metric}_ci")
    if isinstance(ci, list) and len(ci) == 2 and all(_number(x) for x in ci):
        return float(ci[0]), float(ci[1])
    if metric in PROPORTIONS and (kn := counts(values, metric)) is not None:
        return wilson_interval(*kn)
    return None


def has_intervals(metric: str, per_model: list[dict[str, dict[str, Any]]]) -> bool:
    return any(interval(v, metric) is not None for langs in per_model for v in langs.values())


def rate_cell(value: float | None, ci: tuple[float, float] | None, delta: float | None = None) -> str:
    """'0.30 [0.11, 0.60]', with ' (+0.10)' when a change against M0 is given."""
    if value is None:
        return "-"
    text = format(value, RATE_SPEC)
    if ci is not None:
        text += f" [{ci[0]:{RATE_SPEC}}, {ci[1]:{RATE_SPEC}}]"
    if delta is not None:
        text += f" ({signed(delta)})"
    return text


def signed(delta: float) -> str:
    """'+0.14'; a change that rounds to zero reads '+0.00', not '-0.00'."""
    return f"{round(delta, 2) + 0.0:+{RATE_SPEC}}"


def mean_cell(langs: dict[str, dict[str, Any]], order: list[str], metric: str) -> tuple[float, str] | None:
    """(mean, cell) of a rate over languages with its interval (`mean_rate_interval`)."""
    kn = [counts(langs.get(lang, {}), metric) for lang in order]
    if any(x is None for x in kn):
        return None
    mean, lo, hi = mean_rate_interval([k for k, _ in kn], [n for _, n in kn])
    return mean, rate_cell(mean, (lo, hi))


def p_text(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def verdict(p: float) -> str:
    return "significant" if p < ALPHA else "not significant"


# ---- per-item outcomes ----------------------------------------------------------------------

def items_path(result_path: Path, result: dict[str, Any]) -> Path:
    """The per-item file of a result: its `items` key, else `<task>_generations.jsonl`."""
    name = result.get("items") or f"{result.get('task', result_path.stem)}_generations.jsonl"
    return result_path.parent / str(name)


def _outcome(row: dict[str, Any], metric: str) -> int | None:
    v = row.get(ITEM_KEYS[metric])
    # Files saved before a key existed: derived from the keys they have.
    if v is None and metric == "off_target" and "detected_language" in row:
        v = row["detected_language"] != row.get("language")
    if v is None and metric == "degenerate" and "response" in row and "correct" in row:
        v = is_degenerate(row["response"], _LOOP_THRESHOLDS)  # an mgsm file saved before loops were marked
    if v is None and metric in ("unidentified", "off_target_identified") and "response" in row:
        short = too_short_to_identify(row["response"])
        off = _outcome(row, "off_target")
        v = short if metric == "unidentified" else (None if off is None else off and not short)
    if v is None and metric == "accuracy_in_language" and "correct" in row:
        off = _outcome(row, "off_target")
        v = None if off is None else row["correct"] and not off
    if v is None and metric == "accuracy_no_echo" and "question" in row and "gold" in row:
        right = _outcome(row, "accuracy_in_language")
        v = None if right is None else right and not gold_in_question(row["question"], row["gold"])
    if v is None and metric == "accuracy_no_loop":
        solved, loop = _outcome(row, "accuracy_no_echo"), _outcome(row, "degenerate")
        v = None if solved is None or loop is None else solved and not loop
    return None if v is None else int(bool(v))


def add_missing_rates(langs: dict[str, dict[str, Any]], outcomes: Outcomes) -> None:
    """Give a result saved before a rate existed (accuracy_in_language) that rate and its
    interval, from its per-item outcomes, where they cover all of its n items."""
    for lang, values in langs.items():
        for metric, by_item in outcomes.get(lang, {}).items():
            if metric in values or metric not in PROPORTIONS or len(by_item) != values.get("n"):
                continue
            k, n = sum(by_item.values()), len(by_item)
            values[metric], values[f"{metric}_ci"] = k / n, list(wilson_interval(k, n))


def load_items(path: Path) -> tuple[Outcomes, list[str]]:
    """lang -> metric -> id -> 0/1 from a per-item file; bad lines are named, not fatal."""
    out: Outcomes = {}
    problems = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                lang, item = row["language"], str(row["id"])
            except (ValueError, KeyError, TypeError) as e:
                problems.append(f"{path}:{lineno}: expected a JSON object with id and language ({e})")
                continue
            for metric in ITEM_KEYS:
                if (v := _outcome(row, metric)) is not None:
                    out.setdefault(lang, {}).setdefault(metric, {})[item] = v
    return out, problems


def item_groups(path: Path) -> Groups:
    """lang -> item id -> template, for the rows of a per-item file that name one."""
    out: Groups = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                out.setdefault(row["language"], {})[str(row["id"])] = row[GROUP_KEY]
            except (ValueError, KeyError, TypeError):
                continue  # load_items names the bad lines; a row without a template has no group
    return {lang: g for lang, g in out.items() if all(isinstance(v, str) for v in g.values())}


def _paired(before: dict[str, int], after: dict[str, int]) -> tuple[list[int], list[int]]:
    """Outcomes on the items both models have, in M0's order."""
    ids = [i for i in before if i in after]
    return [before[i] for i in ids], [after[i] for i in ids]


# ---- paired tests ---------------------------------------------------------------------------

def paired_section(task: str, metric: str, items: dict[int, Outcomes], dominant: str,
                   languages: list[str], groups: Groups | None = None) -> list[str]:
    """Per M<t> (t > 0): exact McNemar per language and a paired bootstrap of the mean over
    the non-dominant languages, on the items M0 and M<t> both answered; with `groups`
    (the items' templates), the same mean tested over whole templates as well."""
    if 0 not in items:
        return []
    rows = []
    for t in sorted(t for t in items if t > 0):
        rows += _paired_rows(t, metric, items[0], items[t], dominant, languages, groups or {})
    if not rows:
        return []
    header = ["model", "language", "n", "M0", "M<t>", "change", "1→0", "0→1", "p", "verdict"]
    by_template = (" Where the items name their template, a second mean row tests the change over whole "
                   "templates: items of one template are not independent, and that row says whether the "
                   "change would hold on other templates like these. Its p is an exact randomization test "
                   "that flips the sign of each template's change (in every language at once; with G templates p is "
                   "at least 2/2^G, 0.016 for 7), its interval the shifts that test does not reject."
                   if any("mean by template" in r[1] for r in rows) else "")
    return [
        f"#### {task}: {metric}, M<t> vs M0 on the same items", "",
        f"Per language: exact McNemar test (1→0: items where M0 scores 1 and M<t> 0, for "
        f"`{ITEM_KEYS[metric]}`). Mean over the non-dominant languages: paired bootstrap "
        f"({N_BOOT} resamples of items within each language, seed 0), change with its 95 % "
        f"interval.{by_template} Significant: p < {ALPHA}.", "",
        *table(header, rows), "",
    ]


def _paired_rows(t: int, metric: str, m0: Outcomes, mt: Outcomes, dominant: str,
                 languages: list[str], groups: Groups) -> list[list[str]]:
    rows, before, after, ids_of = [], {}, {}, {}
    for lang in languages:
        b0, a0 = m0.get(lang, {}).get(metric), mt.get(lang, {}).get(metric)
        if not b0 or not a0:
            continue
        b, a = _paired(b0, a0)
        if not b:
            continue
        lost, gained = discordant(b, a)
        p = mcnemar_exact(lost, gained)
        rows.append([f"M{t}", lang, str(len(b)), f"{sum(b) / len(b):.2f}", f"{sum(a) / len(a):.2f}",
                     signed((sum(a) - sum(b)) / len(b)), str(lost), str(gained), p_text(p), verdict(p)])
        if lang != dominant:
            before[lang], after[lang] = b, a
            ids_of[lang] = [i for i in b0 if i in a0]
    if len(before) >= 1:
        rows.append(_bootstrap_row(t, before, after, paired_bootstrap(before, after, n_boot=N_BOOT, seed=0)))
        item_groups = {lang: [groups.get(lang, {}).get(i) for i in ids] for lang, ids in ids_of.items()}
        if all(g is not None for gs in item_groups.values() for g in gs) and \
                len({g for gs in item_groups.values() for g in gs}) >= 2:
            r = paired_group_randomization(before, after, item_groups)
            rows.append(_bootstrap_row(t, before, after, r, f"mean by template ({r['groups']} templates)"))
    return rows


def _bootstrap_row(t: int, before: dict[str, list[int]], after: dict[str, list[int]], r: dict,
                   label: str = "mean") -> list[str]:
    m0 = sum(sum(v) / len(v) for v in before.values()) / len(before)
    mt = sum(sum(v) / len(v) for v in after.values()) / len(after)
    change = (f"{signed(r['delta'])} [{signed(r['ci_low'])}, {signed(r['ci_high'])}]" if r["ci_low"] is not None
              else f"{signed(r['delta'])} (too few templates for an interval)")
    return [f"M{t}", f"**{label} {', '.join(before)}**", str(sum(len(v) for v in before.values())),
            f"{m0:.2f}", f"{mt:.2f}", change, "", "", p_text(r["p_value"]), verdict(r["p_value"])]


# ---- gap to the dominant language -----------------------------------------------------------

def gaps(per_iter: dict[int, dict[str, dict[str, Any]]], metric: str, dominant: str,
         languages: list[str]) -> dict[str, dict[int, tuple[float, float, float]]]:
    """lang -> t -> (gap, lo, hi): metric_xx - metric_dominant with Newcombe's interval."""
    out: dict[str, dict[int, tuple[float, float, float]]] = {}
    for t, langs in sorted(per_iter.items()):
        ref = counts(langs.get(dominant, {}), metric)
        if ref is None:
            continue
        for lang in languages:
            kn = counts(langs.get(lang, {}), metric)
            if lang != dominant and kn is not None:
                out.setdefault(lang, {})[t] = difference_interval(*kn, *ref)
    return out


def gap_section(task: str, metric: str, per_iter: dict[int, dict[str, dict[str, Any]]], dominant: str,
                languages: list[str]) -> tuple[list[str], dict[str, dict[int, tuple[float, float, float]]]]:
    found = gaps(per_iter, metric, dominant, languages)
    if not found:
        return [], found
    iters = sorted({t for by_t in found.values() for t in by_t})
    rows = [[lang, *(rate_cell(g[0], (g[1], g[2])) if (g := by_t.get(t)) else "-" for t in iters)]
            for lang, by_t in found.items()]
    return [
        f"#### {task}: {metric} gap to {dominant} ({metric}_xx − {metric}_{dominant})", "",
        "Negative: the language trails the dominant one. 95 % interval: Newcombe's hybrid score "
        "interval for a difference of independent rates.", "",
        *table(["language", *(f"M{t}" for t in iters)], rows), "",
    ], found


def plot_gap(task: str, metric: str, found: dict[str, dict[int, tuple[float, float, float]]],
             dominant: str, path: Path) -> None:
    """One line per language, x = iteration, with the intervals as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    iters = sorted({t for by_t in found.values() for t in by_t})
    for lang, by_t in found.items():
        ts = sorted(by_t)
        g = [by_t[t] for t in ts]
        err = [[x[0] - x[1] for x in g], [x[2] - x[0] for x in g]]
        ax.errorbar(ts, [x[0] for x in g], yerr=err, marker="o", capsize=3, label=lang)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    save_iteration_plot(fig, ax, iters, f"{metric}_xx − {metric}_{dominant}",
                        f"{task}: {metric} gap to {dominant} (95 % interval)", path)


def save_iteration_plot(fig: Any, ax: Any, iters: list[int], ylabel: str, title: str, path: Path) -> None:
    """Label a per-language plot over models M0..Mt the one way the report draws them, and save it."""
    ax.set_xticks(iters, [f"M{t}" for t in iters])
    ax.set_xlabel("model (iteration)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="language", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
