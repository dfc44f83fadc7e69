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
- `paired_group_randomization`: the same change tested over whole groups of items (the
  templates a word problem was written from): items of one template are not independent,
  so a gain made on one template says less about a new template than the item bootstrap
  suggests. With as few groups as a split has (7 templates), resampling groups is not
  reliable (when every template moves the same way, every draw does, and its p falls below
  0.001 on 7 observations), so this is an exact sign-flip randomization test over groups,
  whose smallest p is 2 / 2^groups, with the interval of the shifts it does not reject.
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


def paired_group_randomization(before: dict[str, list[int]], after: dict[str, list[int]],
                               groups: dict[str, list[str]], alpha: float = 0.05, max_exact: int = 12,
                               n_random: int = 20000, seed: int = 0) -> dict:
    """Exact randomization test of the mean change over languages, by group (template).

    `groups[lang][i]` names the group of item i. The mean over languages of the change is a
    sum of one share per group (its items' changes, each divided by its language's item
    count and by the number of languages); aligned items share a group across languages,
    so a group's share adds its changes in every language. Under H0 (the two models are
    exchangeable on every item, hence on every group) each share is as likely to have
    either sign, so p is the share of the 2^groups sign patterns whose |sum| reaches the
    observed one (exact up to `max_exact` groups, else `n_random` random patterns with the
    observed one counted). The interval is every shift d of the change that the same test
    does not reject at `alpha` (each share minus d times its share of items): None when no
    shift can be rejected, i.e. with 2 / 2^groups > alpha (5 groups or fewer at 0.05).

    Returns {"delta", "ci_low", "ci_high", "p_value", "groups"} (ci_* None without an interval).
    """
    if set(groups) != set(before) or any(len(groups[lang]) != len(before[lang]) for lang in before):
        raise ValueError("paired_group_randomization: need a group name for every item of every language")
    diffs = _differences(before, after)
    names = sorted({g for lang in diffs for g in groups[lang]})
    if len(names) < 2:
        raise ValueError(f"paired_group_randomization: need at least 2 groups, got {names}")
    share, weight = _group_shares(diffs, groups, names)
    signs = _sign_patterns(len(names), max_exact, n_random, seed)
    exact = len(names) <= max_exact

    def p_at(shift: np.ndarray) -> np.ndarray:
        """p for each shift d: how often a sign pattern reaches |sum of (share - d * weight)|."""
        c = share[None, :] - shift[:, None] * weight[None, :]
        observed = np.abs(c.sum(axis=1))
        reach = (np.abs(c @ signs.T) >= observed[:, None] - 1e-12).sum(axis=1)
        return reach / len(signs) if exact else (reach + 1) / (len(signs) + 1)

    delta = float(share.sum())
    out = {"delta": delta, "ci_low": None, "ci_high": None,
           "p_value": float(p_at(np.array([0.0]))[0]), "groups": len(names)}
    # Outside the range of the groups' own changes every share has one sign, and only the
    # two all-equal patterns reach the sum: no shift there is accepted unless 2 / 2^G > alpha.
    floor = 2 / len(signs) if exact else 1 / (len(signs) + 1)
    if floor > alpha:
        return out
    own = share / weight
    grid = np.union1d(np.linspace(own.min(), own.max(), 2001), [delta])
    accepted = grid[p_at(grid) > alpha]
    out["ci_low"], out["ci_high"] = float(accepted.min()), float(accepted.max())
    return out


def _group_shares(diffs: dict[str, np.ndarray], groups: dict[str, list[str]],
                  names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per group: its share of the mean change over languages, and its share of the items
    (the weights sum to 1), so that shifting every item's change by d shifts a share by d * weight."""
    col = {g: k for k, g in enumerate(names)}
    share, weight = np.zeros(len(names)), np.zeros(len(names))
    for lang, d in diffs.items():
        ks = np.array([col[g] for g in groups[lang]])
        share += np.bincount(ks, d, len(names)) / (len(d) * len(diffs))
        weight += np.bincount(ks, minlength=len(names)) / (len(d) * len(diffs))
    return share, weight


def _sign_patterns(n_groups: int, max_exact: int, n_random: int, seed: int) -> np.ndarray:
    """Every +-1 pattern over the groups (up to max_exact groups), else n_random random ones."""
    if n_groups <= max_exact:
        bits = (np.arange(2**n_groups)[:, None] >> np.arange(n_groups)[None, :]) & 1
    else:
        bits = np.random.default_rng(seed).integers(0, 2, size=(n_random, n_groups))
    return 1.0 - 2.0 * bits


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
