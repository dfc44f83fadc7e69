"""Sampled self-translation retries (`translation.retries`): xx pairs the first translation lost.

A small model rarely translates a worked English answer into French or German at greedy: it
copies the English, or keeps only "The answer is 18", and the gates drop the pair. Sampled at
a temperature, some translations of the same answer come out in the language with the answer's
number (docs/EVIDENCE.md: four retries at 0.7 gave 35 French and 21 German pairs per 100
English answers where greedy gave 8 and 0). Each retry j is tried in place of the first
translation, in order, and the pair is built and gated exactly as the first one was; an xx pair
the first translation did not give is taken from the first retry that passes every gate. Pairs
the first translation gave are never replaced, and English pairs are not retried.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Callable

from lidr.stages.generate import sample_of

Rows = list[dict[str, Any]]


def _translation_key(t: dict[str, Any]) -> tuple:
    return t["prompt_id"], sample_of(t), t["source_language"], t["target_language"]


def _pair_key(p: dict[str, Any]) -> tuple:
    return p["language"], str(p["prompt_id"]), sample_of(p)


def with_retry(first: Rows, retry: Rows) -> Rows:
    """The translations with `retry`'s records in place of the first translations they redo."""
    replaced = {_translation_key(t) for t in retry}
    return [t for t in first if _translation_key(t) not in replaced] + retry


def recover_with_retries(kept: Rows, translations: Rows, dominant: str,
                         pairs_from: Callable[[Rows], Rows]) -> tuple[Rows, Counter]:
    """`kept` with the xx pairs that a retry recovers appended, and how many per language.
    `pairs_from(translations)`: the gated pairs that these translations give (the run's pairing
    and gates; retry records are passed without their mark, as first translations)."""
    first = [t for t in translations if not t.get("retry")]
    by_retry: dict[int, Rows] = defaultdict(list)
    for t in translations:
        if t.get("retry"):
            by_retry[int(t["retry"])].append({k: v for k, v in t.items() if k != "retry"})
    have = {_pair_key(p) for p in kept}
    recovered: Counter = Counter()
    extra: Rows = []
    for j in sorted(by_retry):
        candidates = pairs_from(with_retry(first, by_retry[j]))
        for p in candidates:
            key = _pair_key(p)
            if p["language"] == dominant or p.get("via_language") is not None or key in have:
                continue
            have.add(key)
            extra.append({**p, "translation_retry": j})
            recovered[p["language"]] += 1
    return kept + extra, recovered
