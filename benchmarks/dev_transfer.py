"""Does a gain measured on one split's templates carry to another's? Models against M0 on
several held-out splits, and how their gains agree.

Each model's change against the baseline is read on every split (mean over the non-dominant
languages; paired bootstrap over items, and the exact sign-flip test over whole templates),
then on all splits pooled (every template of every split a group of its own). Across models,
the rank correlation of the changes between two splits says whether a choice made on one
predicts the other; the spread of the changes over templates says how many templates a split
needs to tell two models apart.

    python benchmarks/dev_transfer.py benchmarks/dev_transfer.yaml [--metric accuracy_in_language] [--baseline 'chosen M1']

The spec names, per model, the result json of each split (`lidr eval` writes `mgsm.json`; a
run writes `iter_<t>/eval/<label>.json`) and, per split, the data files naming each item's
template (`{lang}` in the path):

    baseline: M0
    splits: {dev: src/lidr/data/arith/dev/{lang}.jsonl, dev_2: src/lidr/data/arith/dev_2/{lang}.jsonl}
    models:
      M0: {dev: runs/a/iter_0/eval/dev.json, dev_2: runs/dev2_reads/m0/mgsm.json}
      a M1: {dev: runs/a/iter_1/eval/dev.json, dev_2: runs/dev2_reads/a_m1/mgsm.json}
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import spearmanr

from lidr.evaluate.stats import paired_bootstrap, paired_group_randomization
from lidr.report_stats import ITEM_KEYS, p_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_models import outcomes, templates_from  # noqa: E402

Items = dict[str, list[int]]  # lang -> outcomes in a fixed item order


def paired(base: Path, model: Path, tpl_pattern: str, metric: str, dominant: str,
           prefix: str) -> tuple[Items, Items, dict[str, list[str]]]:
    """The baseline's and the model's outcomes on the items both have, non-dominant languages,
    with each item's template named `prefix:template` so that splits pooled stay apart."""
    a, b = outcomes(base, metric), outcomes(model, metric)
    langs = sorted(lang for lang in set(a) & set(b) if lang != dominant)
    tpl = templates_from(tpl_pattern, langs)
    before, after, groups = {}, {}, {}
    for lang in langs:
        ids = [i for i in a[lang] if i in b[lang]]
        before[lang], after[lang] = [a[lang][i] for i in ids], [b[lang][i] for i in ids]
        groups[lang] = [f"{prefix}:{tpl[lang][i]}" for i in ids]
    return before, after, groups


def pool(parts: list[tuple[Items, Items, dict[str, list[str]]]]) -> tuple[Items, Items, dict[str, list[str]]]:
    before, after, groups = {}, {}, {}
    for b, a, g in parts:
        for lang in b:
            before.setdefault(lang, []).extend(b[lang])
            after.setdefault(lang, []).extend(a[lang])
            groups.setdefault(lang, []).extend(g[lang])
    return before, after, groups


def per_template(before: Items, after: Items, groups: dict[str, list[str]]) -> dict[str, float]:
    """Change per template, mean over languages of each language's change on that template."""
    out: dict[str, list[float]] = {}
    for lang in before:
        by: dict[str, list[int]] = {}
        for x, y, g in zip(before[lang], after[lang], groups[lang]):
            by.setdefault(g, []).append(y - x)
        for g, d in by.items():
            out.setdefault(g, []).append(float(np.mean(d)))
    return {g: float(np.mean(v)) for g, v in out.items()}


def cell(before: Items, after: Items, groups: dict[str, list[str]]) -> tuple[float, str]:
    r = paired_bootstrap(before, after, n_boot=10000, seed=0)
    t = paired_group_randomization(before, after, groups)
    return r["delta"], (f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], p {p_text(r['p_value'])}; "
                        f"templates p {p_text(t['p_value'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--metric", default="accuracy_in_language", choices=list(ITEM_KEYS))
    ap.add_argument("--dominant", default="en")
    ap.add_argument("--baseline", help="the model every other is compared with (default: the spec's baseline)")
    args = ap.parse_args(argv)
    spec = yaml.safe_load(args.spec.read_text(encoding="utf-8"))
    if args.baseline:
        if args.baseline not in spec["models"]:
            ap.error(f"--baseline {args.baseline!r} is not a model of {args.spec} ({', '.join(spec['models'])})")
        spec["baseline"] = args.baseline
    splits, models, base = spec["splits"], spec["models"], spec["models"][spec["baseline"]]
    print(f"metric: {args.metric}; change against {spec['baseline']}, mean over the languages other than "
          f"{args.dominant}; [95 %] paired bootstrap over items; templates p: exact sign flips over whole templates\n")
    print("| model | " + " | ".join(splits) + " | all splits pooled |")
    print("|---|" + "---|" * (len(splits) + 1))
    deltas: dict[str, dict[str, float]] = {}
    spreads: list[float] = []
    for name, paths in models.items():
        if name == spec["baseline"]:
            continue
        parts, cells = [], []
        for split, pattern in splits.items():
            if split not in paths:
                cells.append("-")
                continue
            part = paired(Path(base[split]), Path(paths[split]), pattern, args.metric, args.dominant, split)
            parts.append(part)
            deltas.setdefault(split, {})[name], text = cell(*part)
            cells.append(text)
        pooled = pool(parts)
        _, text = cell(*pooled)
        changes = per_template(*pooled)
        spreads.append(float(np.std(list(changes.values()), ddof=1)))
        print(f"| {name} | " + " | ".join(cells) + f" | {text} ({len(changes)} templates) |")
    print("\nRank correlation of the changes across models (Spearman):\n")
    print("| splits | models | rho | p |\n|---|---|---|---|")
    for s, t in itertools.combinations(deltas, 2):
        common = [m for m in deltas[s] if m in deltas[t]]
        if len(common) >= 3:
            rho, p = spearmanr([deltas[s][m] for m in common], [deltas[t][m] for m in common])
            print(f"| {s} vs {t} | {len(common)} | {rho:+.2f} | {p:.2f} |")
    sd = float(np.median(spreads))
    print(f"\nSpread of a model's change over templates (standard deviation, median over models): {sd:.3f}. "
          f"A mean change d over k templates has a standard error of about {sd:.3f} / sqrt(k): "
          + ", ".join(f"k = {k}: {sd / np.sqrt(k):.3f}" for k in (7, 14, 21, 42)) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
