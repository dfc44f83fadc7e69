"""Intervals and paired tests for evaluation figures.

numpy only (no scipy): the report must be buildable wherever `lidr` installs.

- `wilson_interval`: the Wilson score interval for a binomial proportion; unlike the
  normal ("Wald") interval it stays inside [0, 1] and behaves at 0/n and n/n, which is
  where small multilingual evaluations live.
- `mean_rate_interval`, `difference_interval`: the same for a mean over languages and
  for the gap between two languages.
- `mcnemar_exact`: the exact McNemar test for two models scored on the same items;
  only the discordant items carry information, and under H0 each of them is equally
  likely to favour either model, so the p-value is a two-sided binomial test at p = 0.5.
- `paired_bootstrap`: the mean over languages of the accuracy change, with a
  percentile interval and a p-value from resampling items within each language.
- `paired_group_bootstrap`: the same change, resampling whole groups of items (the
  templates a word problem was written from) instead of items: items of one template are
  not independent, so a gain made on one template says less about a new template than
  the item bootstrap's interval suggests.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n` (n == 0 -> (0.0, 1.0))."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (0.0, 1.0)
    return _wilson(successes / n, n, z)


def _wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a rate `p` on `n` (possibly effective, non-integer) trials."""
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0/n and n/n the bound is exactly 0 or 1; floating error would leave 1e-17 there.
    lo = 0.0 if p <= 0.0 else centre - half
    hi = 1.0 if p >= 1.0 else centre + half
    return (lo, hi)


def mean_rate_interval(successes: list[int], ns: list[int], z: float = Z95) -> tuple[float, float, float]:
    """(mean, lo, hi): the unweighted mean of several rates (the paper's average over
    languages) with a Wilson interval on the effective sample size n_eff = L^2 / sum(1/n_i).

    With equal n this is the Wilson interval of the pooled counts. Using the mean rate in
    the variance is conservative: by concavity, mean(p_i (1 - p_i)) <= p (1 - p).
    """
    if not ns or len(successes) != len(ns) or any(n <= 0 for n in ns):
        raise ValueError(f"mean_rate_interval: need matching non-empty counts, got {successes} of {ns}")
    mean = sum(k / n for k, n in zip(successes, ns)) / len(ns)
    n_eff = len(ns) ** 2 / sum(1 / n for n in ns)
    lo, hi = _wilson(mean, n_eff, z)
    return mean, lo, hi


def difference_interval(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """(p1 - p2, lo, hi) for two independent rates: Newcombe's (1998) hybrid score
    interval (his method 10), built from the two Wilson intervals; it keeps the Wilson
    interval's good behaviour near 0 and 1, where a Wald difference interval collapses."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    b: items right before and wrong after; c: wrong before, right after. Under H0,
    b ~ Binomial(b + c, 1/2); the two-sided p-value is twice the smaller tail,
    capped at 1 (the symmetric distribution makes this equal to summing every
    outcome no more likely than the one observed). No discordant items -> 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact: counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def discordant(before: list[int], after: list[int]) -> tuple[int, int]:
    """(b, c) for `mcnemar_exact`: right->wrong and wrong->right counts on paired items."""
    if len(before) != len(after):
        raise ValueError(f"paired outcomes differ in length: {len(before)} vs {len(after)}")
    b = sum(1 for x, y in zip(before, after) if x and not y)
    c = sum(1 for x, y in zip(before, after) if not x and y)
    return b, c


def paired_bootstrap(before: dict[str, list[int]], after: dict[str, list[int]],
                     n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired bootstrap of the mean over languages of (after - before) accuracy.

    `before[lang]` and `after[lang]` are 0/1 outcomes on the same items in the same
    order. Each replicate resamples item indices with replacement within each
    language (the same indices for both models, which keeps the pairing) and
    recomputes the statistic.

    Returns {"delta", "ci_low", "ci_high", "p_value"}: the observed statistic, the
    2.5/97.5 percentile interval of the replicates, and a two-sided p-value by
    inverting the percentile interval: p = min(1, 2 * (min(#{d* <= 0}, #{d* >= 0}) + 1)
    / (n_boot + 1)), i.e. twice the share of replicates on the far side of zero, with
    the observed sample counted as one replicate so that p is never exactly 0. When
    no item changes (every replicate is 0) p is 1.
    """
    rng = np.random.default_rng(seed)
    diffs = _differences(before, after)
    delta = float(np.mean([d.mean() for d in diffs.values()]))
    reps = np.zeros(n_boot)
    for d in diffs.values():
        reps += _resampled_means(d, n_boot, rng)
    reps /= len(diffs)
    return _percentile_summary(delta, reps)


def paired_group_bootstrap(before: dict[str, list[int]], after: dict[str, list[int]],
                           groups: dict[str, list[str]], n_boot: int = 10000, seed: int = 0) -> dict:
    """`paired_bootstrap` with whole groups resampled: a cluster bootstrap.

    `groups[lang][i]` names the group of item i (a template). Each replicate draws as many
    group names as there are, with replacement, the same draw for every language (aligned
    items share a template across languages), and takes each language's change over the
    items of the drawn groups, counted as often as drawn. With few groups (7 templates a
    split here) the interval is coarse; it answers "would the change hold on other
    templates like these", which the item bootstrap does not.

    Returns `paired_bootstrap`'s keys and "groups", the number of groups.
    """
    if set(groups) != set(before) or any(len(groups[lang]) != len(before[lang]) for lang in before):
        raise ValueError("paired_group_bootstrap: need a group name for every item of every language")
    diffs = _differences(before, after)
    names = sorted({g for lang in diffs for g in groups[lang]})
    if len(names) < 2:
        raise ValueError(f"paired_group_bootstrap: need at least 2 groups, got {names}")
    col = {g: k for k, g in enumerate(names)}
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(names), [1 / len(names)] * len(names), size=n_boot).astype(float)
    per_lang = []
    for lang, d in diffs.items():
        ks = np.array([col[g] for g in groups[lang]])
        sums, sizes = np.bincount(ks, d, len(names)), np.bincount(ks, minlength=len(names)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_lang.append((draws @ sums) / (draws @ sizes))  # nan where no drawn group has this language
    reps = np.vstack(per_lang)
    reps = reps[:, ~np.isnan(reps).any(axis=0)].mean(axis=0)
    delta = float(np.mean([d.mean() for d in diffs.values()]))
    return {**_percentile_summary(delta, reps), "groups": len(names)}


def _differences(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, np.ndarray]:
    if set(before) != set(after) or not before:
        raise ValueError(f"paired_bootstrap: languages differ: {sorted(before)} vs {sorted(after)}")
    for lang in before:
        if len(before[lang]) != len(after[lang]) or not before[lang]:
            raise ValueError(f"paired_bootstrap: {lang}: need the same non-empty items before "
                             f"and after, got {len(before[lang])} and {len(after[lang])}")
    return {lang: np.asarray(after[lang], float) - np.asarray(before[lang], float) for lang in sorted(before)}


def _percentile_summary(delta: float, reps: np.ndarray) -> dict:
    """The observed change, the 2.5/97.5 percentiles of its replicates, and the two-sided p
    (twice the share of replicates on the far side of zero, the observed one counted)."""
    lo, hi = np.percentile(reps, [2.5, 97.5])
    tail = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
    p = min(1.0, 2.0 * (tail + 1) / (len(reps) + 1))
    return {"delta": delta, "ci_low": float(lo), "ci_high": float(hi), "p_value": p}


def _resampled_means(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of `d`, in chunks to bound memory."""
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // len(d))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, len(d), size=(stop - start, len(d)))
        out[start:stop] = d[idx].mean(axis=1)
    return out
