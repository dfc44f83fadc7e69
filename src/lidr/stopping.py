"""Stop when gains saturate (`iterations: auto`).

After M(t) is evaluated, its score is the mean of `stopping.metric` over the non-dominant
languages on the evaluation task `stopping.task` (a dev set); the gain is M(t)'s score minus
M(t-1)'s (for off_target, the fall). A gain below `stopping.min_gain` ends the run after
iteration t; so does reaching `max_iterations`. Each decision is written to
`run_dir/stopping.json`:

    {"rule": {...}, "gains": [{"iteration": 1, "before": 0.10, "after": 0.14, "gain": 0.04,
      "gain_ci": [lo, hi], "p_value": 0.03, "n": 120}, ...],
     "guards": [{"iteration": 1, "task": "chat_dev", "metric": "same_opening", "m0": 0.05,
      "value": 0.31, "loss": 0.26, "max_loss": 0.1, "held": false, "loss_ci": [..], ...}, ...],
     "decided_through": t, "stopped_after": t or null, "reason": "..." or null, "final": {...}}

A guard (`stopping.guards`) watches what the gain must not cost: its metric on another task
(a chat dev set's `same_opening`, say) against M0's, in each non-dominant language. When M(t)
is worse than M0 by more than the guard's max_loss in any of them, the run stops after t and
M(t) cannot be the final model.

The decision is computed from the saved evaluation results alone, so a resumed run takes
the same decision again and never starts iteration t+1; other workers read it from the
file. The final model is the best one on the dev set among M0..M(t) (the earlier one on a
tie): a last iteration that lost ground is not what the run hands over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lidr import report_stats as rs, rundir
from lidr.config import RunConfig
from lidr.evaluate.stats import paired_bootstrap
from lidr.store import RunDirError, load_json

STOPPING_FILE = "stopping.json"
LOWER_IS_BETTER = ("off_target", "off_target_identified", "unidentified", "degenerate", "same_opening")


def rule(cfg: RunConfig) -> dict[str, Any]:
    stop = cfg.stopping
    return {**_reading(cfg, stop.task, stop.metric), "min_gain": stop.min_gain, "max_iterations": cfg.max_iterations,
            "guards": [{**_reading(cfg, g.task, g.metric), "max_loss": g.max_loss} for g in stop.guards]}


def _reading(cfg: RunConfig, label: str, metric: str) -> dict[str, Any]:
    """What a rule reads: a task's metric, mean over the non-dominant languages it covers."""
    task = next(t for t in cfg.evaluation.tasks if t.name == label)
    covered = task.languages or cfg.languages
    return {"task": label, "metric": metric, "languages": [x for x in cfg.languages if x in covered],
            "higher_is_better": metric not in LOWER_IS_BETTER}


def _result(run_dir: Path, task: str, t: int) -> tuple[Path, dict[str, Any]]:
    path = rundir.eval_result_path(run_dir, t, task)
    if not path.is_file():
        raise RunDirError(f"{path} is missing: the stopping rule needs M{t}'s {task} result")
    return path, load_json(path)


def score(run_dir: Path, r: dict[str, Any], t: int) -> float:
    """M(t)'s mean of the rule's metric over the rule's languages."""
    path, result = _result(run_dir, r["task"], t)
    langs = _rates(path, result, r["metric"])
    values = []
    for lang in r["languages"]:
        v = langs.get(lang, {}).get(r["metric"])
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise RunDirError(f"{path} has no {r['metric']} for {lang}: the stopping rule cannot read it")
        values.append(float(v))
    return sum(values) / len(values)


def _rates(path: Path, result: dict[str, Any], metric: str) -> dict[str, dict[str, Any]]:
    """A result's per-language values; a rate it was saved without (a run resumed from results
    of an older lidr: word-problem loops) is derived from its per-item file, as the report does."""
    langs = result.get("languages", {})
    items = rs.items_path(path, result)
    if any(metric not in v for v in langs.values()) and items.is_file():
        rs.add_missing_rates(langs, rs.load_items(items)[0])
    return langs


def _outcomes(run_dir: Path, r: dict[str, Any], t: int) -> dict[str, dict[str, int]]:
    """lang -> item id -> 0/1 behind the metric, when the task saves per-item outcomes."""
    path, result = _result(run_dir, r["task"], t)
    items = rs.items_path(path, result)
    if r["metric"] not in rs.ITEM_KEYS or not items.is_file():
        return {}
    outcomes, _ = rs.load_items(items)
    return {lang: outcomes.get(lang, {}).get(r["metric"], {}) for lang in r["languages"]}


def gain_interval(run_dir: Path, r: dict[str, Any], t: int, since: int | None = None) -> dict[str, Any]:
    """A paired bootstrap of M(t)'s gain over M(since) (default M(t-1)) on the items both models
    answered (n, 95 % interval, p)."""
    before, after = _outcomes(run_dir, r, t - 1 if since is None else since), _outcomes(run_dir, r, t)
    b, a = {}, {}
    for lang in r["languages"]:
        ids = [i for i in before.get(lang, {}) if i in after.get(lang, {})]
        if ids:
            b[lang], a[lang] = [before[lang][i] for i in ids], [after[lang][i] for i in ids]
    if set(b) != set(r["languages"]):
        return {}
    boot = paired_bootstrap(b, a, n_boot=rs.N_BOOT, seed=0)
    sign = 1 if r["higher_is_better"] else -1
    lo, hi = sorted((sign * boot["ci_low"], sign * boot["ci_high"]))
    return {"gain_ci": [round(lo, 4), round(hi, 4)], "p_value": round(boot["p_value"], 4),
            "n": sum(len(v) for v in b.values())}


def decide(run_dir: Path, cfg: RunConfig, t: int) -> dict[str, Any]:
    """The stopping record after M(t) has been evaluated."""
    r = rule(cfg)
    scores = [score(run_dir, r, s) for s in range(t + 1)]
    sign = 1 if r["higher_is_better"] else -1
    gains = [{"iteration": s, "before": round(scores[s - 1], 4), "after": round(scores[s], 4),
              "gain": round(sign * (scores[s] - scores[s - 1]), 4), **gain_interval(run_dir, r, s)}
             for s in range(1, t + 1)]
    guards = [_guard(run_dir, g, s) for s in range(1, t + 1) for g in r["guards"]]
    within = [s == 0 or all(g["held"] for g in guards if g["iteration"] == s) for s in range(t + 1)]
    record = {"rule": r, "gains": gains, "guards": guards, "decided_through": t, "stopped_after": None,
              "reason": None, "final": _best(cfg, scores, sign, within)}
    last = gains[-1]
    where = f"{r['task']} {r['metric']}, mean {'/'.join(r['languages'])}"
    broken = [g for g in guards if g["iteration"] == t and not g["held"]]
    if broken:
        record["stopped_after"] = t
        record["reason"] = "; ".join(_guard_reason(g) for g in broken)
    # Rounded so that 0.15 - 0.14 counts as the one point it is, not 0.00999...
    elif round(sign * (scores[t] - scores[t - 1]), 9) < r["min_gain"]:
        record["stopped_after"] = t
        record["reason"] = (f"gain {last['gain']:+.3f} < min_gain {r['min_gain']:g} "
                            f"(M{t - 1} {last['before']:.3f} -> M{t} {last['after']:.3f}, {where})")
    elif t >= r["max_iterations"]:
        record["stopped_after"] = t
        record["reason"] = (f"reached max_iterations {r['max_iterations']} (last gain {last['gain']:+.3f} "
                            f">= min_gain {r['min_gain']:g}, {where})")
    return record


def _guard(run_dir: Path, g: dict[str, Any], t: int) -> dict[str, Any]:
    """Guard g after M(t), read on its worst language (a mean would let one language's collapse
    hide behind the others'): how much worse than M0 (positive = worse), within max_loss or not."""
    sign = 1 if g["higher_is_better"] else -1

    def loss_in(lang: str) -> tuple[float, float, float]:
        one = {**g, "languages": [lang]}
        m0, now = score(run_dir, one, 0), score(run_dir, one, t)
        return round(sign * (m0 - now), 9), m0, now

    losses = {lang: loss_in(lang) for lang in g["languages"]}  # each language's results read once
    lang = max(losses, key=lambda x: losses[x][0])  # max keeps the first on a tie
    loss, m0, now = losses[lang]
    vs_m0 = gain_interval(run_dir, {**g, "languages": [lang]}, t, since=0)
    if vs_m0:  # the interval of the gain, turned into one of the loss
        vs_m0["loss_ci"] = sorted(-x for x in vs_m0.pop("gain_ci"))
    return {"iteration": t, "task": g["task"], "metric": g["metric"], "language": lang, "m0": round(m0, 4),
            "value": round(now, 4), "loss": round(loss, 4), "max_loss": g["max_loss"], "held": loss <= g["max_loss"],
            **vs_m0}


def _guard_reason(g: dict[str, Any]) -> str:
    return (f"guard {g['task']} {g['metric']} ({g['language']}): M0 {g['m0']:.3f} -> M{g['iteration']} "
            f"{g['value']:.3f}, worse by {g['loss']:.3f} > max_loss {g['max_loss']:g}")


def _best(cfg: RunConfig, scores: list[float], sign: int, within: list[bool]) -> dict[str, Any]:
    """The best model so far on the rule's score among those within every guard (M0 always is);
    the earlier one on a tie."""
    k = max((s for s in range(len(scores)) if within[s]),
            key=lambda s: (round(sign * scores[s], 9), -s))  # float noise is a tie
    why = "best on the stopping task among the models evaluated"
    if not all(within):
        why += " within every guard"
    return {"iteration": k, "model": cfg.model if k == 0 else f"iter_{k}/model", "score": round(scores[k], 4),
            "why": why}


def read(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / STOPPING_FILE
    return load_json(path) if path.is_file() else None


def decided(run_dir: Path, t: int) -> bool:
    """Whether worker 0 has written the decision after M(t) (other workers wait for it)."""
    try:
        record = read(run_dir)
    except RunDirError:  # being replaced right now
        return False
    return bool(record) and record.get("decided_through", 0) >= t


def lines(record: dict[str, Any]) -> list[str]:
    """Plain-text lines for the summary and `lidr status`."""
    r = record["rule"]
    out = [f"iterations: auto (at most {r['max_iterations']}); stops when the gain in {r['task']} {r['metric']} "
           f"(mean {'/'.join(r['languages'])}) is below {r['min_gain']:g}"]
    for g in record["gains"]:
        out.append(f"  M{g['iteration']}: {g['before']:.3f} -> {g['after']:.3f}, gain {g['gain']:+.3f}"
                   + _ci_text(g))
    for g in record.get("guards", []):
        out.append(f"  guard {g['task']} {g['metric']} ({g.get('language', 'mean')}): M0 {g['m0']:.3f} -> "
                   f"M{g['iteration']} {g['value']:.3f}, "
                   f"worse by {g['loss']:+.3f} (max_loss {g['max_loss']:g}): {'held' if g['held'] else 'broken'}")
    if record.get("stopped_after") is not None:
        out.append(f"stopped after iteration {record['stopped_after']}: {record['reason']}")
    else:
        out.append(f"running: iteration {record['decided_through'] + 1} next")
    f = record["final"]
    out.append(f"final model: M{f['iteration']} ({f['model']}), {r['task']} {r['metric']} {f['score']:.3f}, "
               f"the {f['why']}")
    return out


def _ci_text(g: dict[str, Any]) -> str:
    if "gain_ci" not in g:
        return ""
    lo, hi = g["gain_ci"]
    return f" [95 % CI {lo:+.3f}, {hi:+.3f}; n {g['n']}; p {g['p_value']:.3g}]"


def report_section(run_dir: Path) -> list[str]:
    """The report's 'Stopping' section (empty for a run with a fixed number of iterations)."""
    try:
        record = read(run_dir)
    except RunDirError as e:
        return ["## Stopping", "", f"Skipped: {e}", ""]
    if not record:
        return []
    r = record["rule"]
    rows = [[f"M{g['iteration']}", f"{g['before']:.3f}", f"{g['after']:.3f}", f"{g['gain']:+.3f}",
             _ci_cell(g), str(g.get("n", "-")), rs.p_text(g["p_value"]) if "p_value" in g else "-"]
            for g in record["gains"]]
    head = (f"`iterations: auto`, at most {r['max_iterations']}: after each new model, the gain is the change "
            f"of `{r['task']}` {r['metric']} (mean over {', '.join(r['languages'])}) from the previous model; "
            f"the run stops when it is below min_gain {r['min_gain']:g}. The interval is a paired bootstrap "
            "on the items both models answered.")
    stopped = (f"**Stopped after iteration {record['stopped_after']}:** {record['reason']}."
               if record.get("stopped_after") is not None else
               f"Not stopped yet: iteration {record['decided_through'] + 1} is next.")
    f = record["final"]
    within = " within every guard" if f["why"].endswith("within every guard") else ""
    final = (f"**Final model: M{f['iteration']}** (`{f['model']}`), the best on `{r['task']}` {r['metric']} "
             f"({f['score']:.3f}) among the models evaluated{within}; the earlier model on a tie.")
    return ["## Stopping", "", head, "",
            *rs.table(["model", "before", "after", "gain", "95 % interval", "n", "p"], rows), "",
            *_guard_table(record), stopped, "", final, ""]


def _guard_table(record: dict[str, Any]) -> list[str]:
    """The guards' rows: each model against M0 (a loss is the change for the worse)."""
    guards = record.get("guards") or []
    if not guards:
        return []
    rows = [[f"{g['task']} {g['metric']}", f"M{g['iteration']}", g.get("language", "mean"), f"{g['m0']:.3f}",
             f"{g['value']:.3f}",
             f"{g['loss']:+.3f}", "-" if "loss_ci" not in g else f"[{g['loss_ci'][0]:+.3f}, {g['loss_ci'][1]:+.3f}]",
             rs.p_text(g["p_value"]) if "p_value" in g else "-", f"{g['max_loss']:g}",
             "held" if g["held"] else "**broken**"] for g in guards]
    return ["Guards: what the gain must not cost, each model against M0 in its worst language (paired "
            "bootstrap on the items both answered).", "",
            *rs.table(["guard", "model", "worst language", "M0", "model's", "loss", "95 % interval", "p", "max_loss",
                       ""], rows), ""]


def _ci_cell(g: dict[str, Any]) -> str:
    return "-" if "gain_ci" not in g else f"[{g['gain_ci'][0]:+.3f}, {g['gain_ci'][1]:+.3f}]"
