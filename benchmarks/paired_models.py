"""Two models on the same evaluation items, paired: which is better, and is it significant?

`lidr report` pairs every model of one run with that run's M0; an ablation asks another
question: is M1 of run B better than M1 of run A (same M0, same items)? Per language, an exact
McNemar test; over the non-dominant languages, the paired bootstrap of the mean change (the
same tests as the report, lidr/evaluate/stats.py).

    python benchmarks/paired_models.py runs/evidence_arith/iter_1/eval/dev.json \\
        runs/abl_lr2e-5/iter_1/eval/dev.json [--metric accuracy|accuracy_in_language|off_target] [--dominant en]

With templates (the bundled word problems name theirs), a second mean row tests the change over whole
templates, an exact sign-flip test (lidr.evaluate.stats.paired_group_randomization). The items files name them since
mgsm saves `template`; for files saved before, `--templates-from` reads them from the data:

    python benchmarks/paired_models.py A.json B.json --templates-from src/lidr/data/arith/dev/{lang}.jsonl

`--loops-unsolved` counts an item whose answer is a repetition loop (`degenerate`) as 0: a loop
cut at the token cap can end on the gold number ("... ist 12 + 9 = 21\nDas wird ... 21 ..."), and
a model that loops more then scores more (docs/EVIDENCE.md). With `accuracy_no_echo` it is
`--metric accuracy_no_loop`, which the mgsm task now writes per item.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lidr.data.prompts import read_records
from lidr.evaluate.stats import discordant, mcnemar_exact, paired_bootstrap, paired_group_randomization, wilson_interval
from lidr.report_stats import GROUP_KEY, ITEM_KEYS, Groups, item_groups, items_path, load_items, p_text
from lidr.store import load_json


def outcomes(result_path: Path, metric: str, loops_unsolved: bool = False) -> dict[str, dict[str, int]]:
    items, problems = load_items(items_path(result_path, load_json(result_path)))
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    out = {lang: by_metric[metric] for lang, by_metric in items.items() if metric in by_metric}
    if loops_unsolved:
        out = {lang: {i: v * (1 - items[lang]["degenerate"][i]) for i, v in by_id.items()} for lang, by_id in out.items()}
    return out


def templates_from(pattern: str, langs: list[str]) -> Groups:
    """lang -> item id -> template from the evaluation's data files (`{lang}` in the path)."""
    return {lang: {str(rec["id"]): rec[GROUP_KEY] for _, rec in read_records(Path(pattern.format(lang=lang)))}
            for lang in langs}


def rate(v: list[int]) -> str:
    lo, hi = wilson_interval(sum(v), len(v))
    return f"{sum(v) / len(v):.3f} [{lo:.2f}, {hi:.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="result json of model A (the baseline)")
    ap.add_argument("b", type=Path, help="result json of model B")
    ap.add_argument("--metric", default="accuracy", choices=list(ITEM_KEYS),
                    help="accuracy_in_language: right and in the question's language")
    ap.add_argument("--dominant", default="en")
    ap.add_argument("--loops-unsolved", action="store_true", help="an answer that is a repetition loop scores 0")
    ap.add_argument("--templates-from", metavar="PATH", help="data files naming each item's template, "
                    "with {lang} (for items files saved without them)")
    args = ap.parse_args(argv)
    a, b = (outcomes(path, args.metric, args.loops_unsolved) for path in (args.a, args.b))
    groups = (templates_from(args.templates_from, sorted(a)) if args.templates_from
              else item_groups(items_path(args.a, load_json(args.a))))
    print(f"A = {args.a}\nB = {args.b}\nmetric: {args.metric}" + (", loops unsolved" if args.loops_unsolved else "") + "\n")
    print("| language | n | A | B | B − A | A only / B only | p (McNemar) |")
    print("|---|---|---|---|---|---|---|")
    before, after, item_templates = {}, {}, {}
    for lang in sorted(set(a) & set(b), key=lambda x: (x != args.dominant, x)):
        ids = [i for i in a[lang] if i in b[lang]]
        x, y = [a[lang][i] for i in ids], [b[lang][i] for i in ids]
        lost, gained = discordant(x, y)
        print(f"| {lang} | {len(ids)} | {rate(x)} | {rate(y)} | {(sum(y) - sum(x)) / len(ids):+.3f} | "
              f"{lost} / {gained} | {p_text(mcnemar_exact(lost, gained))} |")
        if lang != args.dominant:
            before[lang], after[lang] = x, y
            item_templates[lang] = [groups.get(lang, {}).get(i) for i in ids]
    if before:
        r = paired_bootstrap(before, after, n_boot=10000, seed=0)
        print(f"| mean {', '.join(before)} | {sum(map(len, before.values()))} | | | {r['delta']:+.3f} "
              f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | | {p_text(r['p_value'])} (paired bootstrap) |")
        if all(g is not None for gs in item_templates.values() for g in gs):
            r = paired_group_randomization(before, after, item_templates)
            ci = f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if r["ci_low"] is not None else " (no interval)"
            print(f"| mean by template ({r['groups']} templates) | {sum(map(len, before.values()))} | | | "
                  f"{r['delta']:+.3f}{ci} | | {p_text(r['p_value'])} (template signs flipped) |")
            print_per_template(before, after, item_templates)
    return 0


def print_per_template(before: dict[str, list[int]], after: dict[str, list[int]],
                       templates: dict[str, list[str]]) -> None:
    """Items scoring 1 per template, over the non-dominant languages together: where a gain is made."""
    counts: dict[str, list[int]] = {}
    for lang in before:
        for x, y, tpl in zip(before[lang], after[lang], templates[lang]):
            c = counts.setdefault(tpl, [0, 0, 0])
            c[0], c[1], c[2] = c[0] + 1, c[1] + x, c[2] + y
    print(f"\n| template | n ({', '.join(before)}) | A | B | B − A |\n|---|---|---|---|---|")
    for tpl, (n, x, y) in sorted(counts.items()):
        print(f"| {tpl} | {n} | {x} | {y} | {y - x:+d} |")


if __name__ == "__main__":
    sys.exit(main())
