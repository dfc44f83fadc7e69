"""Is the model still a chat model? Everyday-prompt answers of several models, against a baseline.

Reads the per-item files of `fidelity` evaluations (`lidr eval --task fidelity ...`, or a run's
fidelity task) of the same prompts, and per language and model gives, with the change against
the first model (exact McNemar on the same prompts) and the mean over the non-dominant languages
(paired bootstrap):

    in_language   the answer is in the prompt's language (the fidelity rate)
    degenerate    the answer is a repetition loop (the degenerate gate's measures)
    short         the answer has under 40 characters (an everyday request answered in one line)
    answer_line   the answer states a result ("El resultado es", "The answer is", ...): the form
                  arithmetic training teaches, out of place on an everyday request
    same_opening  the answer opens with the model's most common first three words in that
                  language (the fidelity task's label-free measure of one form for every request;
                  computed here when a folder predates it)

    python benchmarks/chat_answer_form.py runs/chat_dev/m0 runs/chat_dev/chosen_m1 runs/chat_dev/chosen_m2 \\
        [--dominant en]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from lidr.evaluate.stats import discordant, mcnemar_exact, paired_bootstrap, wilson_interval
from lidr.evaluate.tasks.fidelity import mark_same_opening
from lidr.report_stats import p_text

SHORT_CHARS = 40
# A stated result: the answer phrases the mgsm scorer reads, and "the result is" in each
# language (the form the arithmetic pairs' chosen answers have: "El resultado es: 12").
ANSWER_LINE = re.compile(
    r"\b(?:the\s+(?:final\s+)?(?:answer|result)\s+is|el\s+resultado\s+es|la\s+respuesta\s+es|"
    r"le\s+résultat\s+est|la\s+réponse\s+est|das\s+ergebnis\s+ist|die\s+antwort\s+(?:ist|lautet))\b",
    re.IGNORECASE)
MEASURES = {
    "in_language": lambda r: r["in_language"],
    "degenerate": lambda r: r["degenerate"],
    "short": lambda r: len(r["response"]) < SHORT_CHARS,
    "answer_line": lambda r: ANSWER_LINE.search(r["response"]) is not None,
    "same_opening": lambda r: r["same_opening"],
}


def load(folder: Path) -> dict[str, dict[str, dict]]:
    """language -> prompt id -> row of fidelity_generations.jsonl."""
    result = json.loads((folder / "fidelity.json").read_text(encoding="utf-8"))
    rows: dict[str, dict[str, dict]] = {}
    for line in (folder / result.get("items", "fidelity_generations.jsonl")).read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows.setdefault(r["language"], {})[str(r["id"])] = r
    openings = {}
    for lang, mine in rows.items():
        if any("same_opening" not in r for r in mine.values()):
            openings[lang] = mark_same_opening(list(mine.values()))
        else:
            openings[lang] = result["languages"].get(lang, {}).get("most_common_opening")
    print(f"{folder}: most common openings " + "; ".join(f"{lang} {o!r}" for lang, o in openings.items()))
    return rows


def rate(v: list[int]) -> str:
    lo, hi = wilson_interval(sum(v), len(v))
    return f"{sum(v) / len(v):.2f} [{lo:.2f}, {hi:.2f}]"


def compare(base: dict, other: dict, measure: str, dominant: str) -> list[str]:
    """Table rows: per language base rate, other rate, change, McNemar p; then the mean."""
    f, lines, before, after = MEASURES[measure], [], {}, {}
    for lang in sorted(set(base) & set(other), key=lambda x: (x != dominant, x)):
        ids = [i for i in base[lang] if i in other[lang]]
        x, y = [int(f(base[lang][i])) for i in ids], [int(f(other[lang][i])) for i in ids]
        lost, gained = discordant(x, y)
        lines.append(f"| {measure} | {lang} | {len(ids)} | {rate(x)} | {rate(y)} | {(sum(y) - sum(x)) / len(ids):+.2f} "
                     f"| {p_text(mcnemar_exact(lost, gained))} |")
        if lang != dominant:
            before[lang], after[lang] = x, y
    if before:
        r = paired_bootstrap(before, after, n_boot=10000, seed=0)
        lines.append(f"| {measure} | mean {', '.join(before)} | {sum(map(len, before.values()))} | | | "
                     f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {p_text(r['p_value'])} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+", help="fidelity evaluation folders; the first is the baseline")
    ap.add_argument("--dominant", default="en")
    args = ap.parse_args(argv)
    models = {str(f): load(f) for f in args.folders}
    base_name, base = next(iter(models.items()))
    print("Median answer characters: " + "; ".join(
        f"{name}: " + ", ".join(f"{lang} {statistics.median_low(len(r['response']) for r in rows.values())}"
                                for lang, rows in m.items()) for name, m in models.items()))
    for name, m in list(models.items())[1:]:
        print(f"\nA = {base_name}\nB = {name}\n")
        print("| measure | language | n | A | B | B − A | p |")
        print("|---|---|---|---|---|---|---|")
        for measure in MEASURES:
            print("\n".join(compare(base, m, measure, args.dominant)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
