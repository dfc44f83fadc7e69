"""One setting trained several times (another `training.seed` each): what does the setting do,
beyond the luck of one training?

    for s in 43 44; do lidr run CONFIG -o runs/x_seed$s --set training.seed=$s --reuse runs/x; done
    python benchmarks/seed_spread.py runs/x/iter_0/eval/dev.json runs/x/iter_1/eval/dev.json \\
        runs/x_seed43/iter_1/eval/dev.json runs/x_seed44/iter_1/eval/dev.json [--metric accuracy_in_language]

Against the baseline (M0) on the same items, over the non-dominant languages: each training's
change (paired bootstrap, as `paired_models.py`), the spread of those changes (their standard
deviation: how far one training moves the figure), and the change of the setting's average
model: each item scored by the share of trainings that got it right, resampled by item. That
last test is conditional on these trainings; with few of them, read it beside the spread, not
instead of it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from paired_models import outcomes

from lidr.evaluate.stats import paired_bootstrap
from lidr.report_stats import ITEM_KEYS, p_text


def changes(base: dict[str, dict[str, int]], runs: list[dict[str, dict[str, int]]], dominant: str):
    """(before, after of each run, after averaged over runs): lang -> outcomes on the items
    that the baseline and every run share, in one order."""
    langs = sorted(lang for lang in base if lang != dominant and all(lang in r for r in runs))
    if not langs:
        raise SystemExit("no non-dominant language is in the baseline and every run")
    ids = {lang: [i for i in base[lang] if all(i in r[lang] for r in runs)] for lang in langs}
    before = {lang: [base[lang][i] for i in ids[lang]] for lang in langs}
    each = [{lang: [r[lang][i] for i in ids[lang]] for lang in langs} for r in runs]
    mean = {lang: [sum(r[lang][k] for r in each) / len(each) for k in range(len(ids[lang]))] for lang in langs}
    return before, each, mean


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="result json of the baseline (M0)")
    ap.add_argument("runs", type=Path, nargs="+", help="result json of each training of the setting")
    ap.add_argument("--metric", default="accuracy_in_language", choices=list(ITEM_KEYS))
    ap.add_argument("--dominant", default="en")
    args = ap.parse_args(argv)
    before, each, mean = changes(outcomes(args.base, args.metric),
                                 [outcomes(r, args.metric) for r in args.runs], args.dominant)
    n = sum(map(len, before.values()))
    print(f"baseline = {args.base}\nmetric: {args.metric}, mean of {', '.join(before)} (n = {n} items)\n")
    print("| model | change [95 %] | p (paired bootstrap) |\n|---|---|---|")
    deltas = []
    for path, after in zip(args.runs, each):
        r = paired_bootstrap(before, after, n_boot=10000, seed=0)
        deltas.append(r["delta"])
        print(f"| {path} | {r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {p_text(r['p_value'])} |")
    if len(each) > 1:
        r = paired_bootstrap(before, mean, n_boot=10000, seed=0)
        print(f"| average of the {len(each)} trainings | {r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
              f"| {p_text(r['p_value'])} |")
        print(f"\nspread over trainings: standard deviation {statistics.stdev(deltas):.3f}, "
              f"range {min(deltas):+.3f} to {max(deltas):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
