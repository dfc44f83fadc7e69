"""Intervals and paired tests against published values, hand computations and scipy."""

from __future__ import annotations

import pytest

from lidr.evaluate.stats import (
    difference_interval, discordant, mcnemar_exact, mean_rate_interval, paired_bootstrap,
    paired_group_randomization, wilson_interval,
)


@pytest.mark.parametrize("k, n, lo, hi", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
    # method 3 (score interval without continuity correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    # Hand computation: 3/10 -> centre 0.3555, half-width 0.2477.
    (3, 10, 0.1078, 0.6032),
])
def test_wilson_interval_published_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(5, 5)[1] == 1.0 and wilson_interval(0, 5)[0] == 0.0
    # A wider z gives a wider interval (z = 2.5758 is 99 %).
    assert wilson_interval(3, 10, z=2.575829)[0] < wilson_interval(3, 10)[0]
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(11, 10)


@pytest.mark.parametrize("k1, n1, k2, n2, lo, hi", [
    # Newcombe (1998), "Interval estimation for the difference between independent
    # proportions", Table II, method 10 (score interval from the two Wilson intervals).
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
])
def test_difference_interval_published_values(k1, n1, k2, n2, lo, hi):
    d, got_lo, got_hi = difference_interval(k1, n1, k2, n2)
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert (got_lo, got_hi) == pytest.approx((lo, hi), abs=1e-4)


def test_mean_rate_interval():
    # Equal n: the Wilson interval of the pooled counts (6/20 -> [0.1455, 0.5190], by hand).
    assert mean_rate_interval([3, 3], [10, 10]) == pytest.approx((0.3, 0.1455, 0.5190), abs=1e-4)
    assert mean_rate_interval([1, 5], [10, 10])[0] == pytest.approx(0.3)
    # Unequal n: n_eff = 4 / (1/10 + 1/40) = 32, mean (0.5 + 0.25) / 2 = 0.375.
    mean, lo, hi = mean_rate_interval([5, 10], [10, 40])
    assert mean == pytest.approx(0.375)
    z2 = 1.959964**2
    centre = (0.375 + z2 / 64) / (1 + z2 / 32)
    half = 1.959964 / (1 + z2 / 32) * (0.375 * 0.625 / 32 + z2 / (4 * 32 * 32)) ** 0.5
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert mean_rate_interval([0, 0], [10, 10])[1] == 0.0


@pytest.mark.parametrize("b, c", [(0, 5), (1, 9), (2, 8), (5, 5), (10, 46), (3, 0), (7, 12), (0, 1)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(c, b) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_exact_hand_values():
    # 1 vs 9 discordant: 2 * (1 + 10) / 2**10 = 22/1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    # 0 vs 5: 2 / 32; all even: 1; no discordant items: nothing to test, p = 1.
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert mcnemar_exact(4, 4) == 1.0
    assert mcnemar_exact(0, 0) == 1.0


def test_discordant_counts():
    before = [1, 1, 0, 0, 1, 0]
    after = [1, 0, 1, 1, 0, 0]
    assert discordant(before, after) == (2, 2)
    assert discordant([1, 1, 1], [0, 0, 1]) == (2, 0)
    with pytest.raises(ValueError, match="differ in length"):
        discordant([1], [1, 0])


def test_paired_bootstrap_delta_interval_and_p():
    # es: 20 wrong -> right of 100; fr: unchanged. Mean over languages of the change = 0.10.
    before = {"es": [0] * 100, "fr": [1] * 50 + [0] * 50}
    after = {"es": [1] * 20 + [0] * 80, "fr": [1] * 50 + [0] * 50}
    r = paired_bootstrap(before, after, n_boot=4000, seed=1)
    assert r["delta"] == pytest.approx(0.10)
    # The resampled es change is Binomial(100, 0.2)/100, halved by the mean over two languages:
    # sd = sqrt(0.2 * 0.8 / 100) / 2 = 0.02, so the 95 % interval is about 0.10 +- 0.039.
    assert r["ci_low"] == pytest.approx(0.061, abs=0.01)
    assert r["ci_high"] == pytest.approx(0.139, abs=0.01)
    # No replicate is <= 0 (every resample of 100 items with 20 % ones has some ones, in practice):
    # p is the floor 2 / (n_boot + 1).
    assert r["p_value"] == pytest.approx(2 / 4001)
    assert paired_bootstrap(before, after, n_boot=4000, seed=1) == r  # seeded


def test_paired_bootstrap_no_change_and_symmetric():
    same = {"es": [1, 0, 1, 0], "de": [0, 0, 1, 1]}
    r = paired_bootstrap(same, same, n_boot=500)
    assert r == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
    # One item up and one down in a language of 10: no evidence of a change either way.
    # A replicate's change is (X - Y) / 10 with (X, Y, rest) ~ Multinomial(10; .1, .1, .8);
    # exactly, P(X - Y <= -3) = 0.036 and P(X - Y <= -4) = 0.007, so the 2.5 % point is -0.3.
    before = {"es": [1, 0] + [1] * 8}
    after = {"es": [0, 1] + [1] * 8}
    r = paired_bootstrap(before, after, n_boot=4000)
    assert r["delta"] == 0.0 and r["p_value"] == 1.0
    assert r["ci_low"] == pytest.approx(-0.3) and r["ci_high"] == pytest.approx(0.3)


def test_paired_bootstrap_bad_input():
    with pytest.raises(ValueError, match="languages differ"):
        paired_bootstrap({"es": [1]}, {"fr": [1]})
    with pytest.raises(ValueError, match="es: need the same non-empty items"):
        paired_bootstrap({"es": [1, 0]}, {"es": [1]})


TEMPLATES = [t for t in "abcdefg" for _ in range(20)]  # 7 templates of 20 items, as a split has


def test_group_test_a_gain_on_one_template_is_not_evidence_for_others():
    # es: 10 of template a's 20 items go wrong -> right, every other item stays wrong.
    before = {"es": [0] * 140}
    after = {"es": [1] * 10 + [0] * 130}
    items = paired_bootstrap(before, after, n_boot=4000, seed=1)
    grouped = paired_group_randomization(before, after, {"es": TEMPLATES})
    assert items["delta"] == grouped["delta"] == pytest.approx(10 / 140) and grouped["groups"] == 7
    assert items["p_value"] < 0.01  # resampling items, the gain looks certain
    # Over templates: one template's change, either sign, reaches the same |sum|.
    assert grouped["p_value"] == 1.0 and grouped["ci_low"] == 0.0


def test_group_test_a_gain_on_every_template_is_at_most_as_sure_as_seven_observations():
    # 2 of every template's 20 items gain. A bootstrap over templates sees +0.10 in every
    # draw (p = 2/1001 at 1,000 draws); seven templates are seven observations, and the
    # exact test's p is the share of sign patterns as extreme: the two all-equal ones.
    before = {"es": [0] * 140}
    after = {"es": [1 if i % 20 < 2 else 0 for i in range(140)]}
    r = paired_group_randomization(before, after, {"es": TEMPLATES})
    assert r["p_value"] == pytest.approx(2 / 2**7)
    assert r["ci_low"] == pytest.approx(0.1) and r["ci_high"] == pytest.approx(0.1)
    # Five templates: 2/32 > 0.05, no change could be significant and no shift rejected.
    five = [t for t in "abcde" for _ in range(20)]
    r = paired_group_randomization({"es": [0] * 100}, {"es": after["es"][:100]}, {"es": five})
    assert r["p_value"] == pytest.approx(2 / 2**5) and r["ci_low"] is None and r["ci_high"] is None


def test_group_test_matches_enumeration_on_uneven_gains():
    # Gains of 0, 1, 0, 1, 2, 1, 2 items on the 7 templates (a dev split's M1, 2026-12-03):
    # the 5 templates that moved all moved up, so |sum| is reached only by the 2 of 2^5
    # patterns of their signs with all equal: p = 2/32, though the item bootstrap says 0.02.
    gains = [0, 1, 0, 1, 2, 1, 2]
    before = {"es": [0] * 140}
    after = {"es": [1 if i % 20 < gains[i // 20] else 0 for i in range(140)]}
    r = paired_group_randomization(before, after, {"es": TEMPLATES})
    assert r["p_value"] == pytest.approx(2 / 32)
    assert r["ci_low"] == 0.0 < r["delta"] < r["ci_high"]  # 0 not rejected (p = 2/32), below 0 every template gains
    assert paired_bootstrap(before, after, n_boot=4000, seed=1)["p_value"] < 0.05


def test_group_test_takes_the_same_template_in_every_language():
    # Template a: es gains 10, fr loses 10. Flipped together the mean over languages is 0;
    # flipped apart it would spread both ways.
    before = {"es": [0] * 140, "fr": [1] * 10 + [0] * 130}
    after = {"es": [1] * 10 + [0] * 130, "fr": [0] * 140}
    r = paired_group_randomization(before, after, {"es": TEMPLATES, "fr": TEMPLATES})
    assert r == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "groups": 7}


def test_group_test_bad_input():
    with pytest.raises(ValueError, match="a group name for every item"):
        paired_group_randomization({"es": [1, 0]}, {"es": [0, 0]}, {"es": ["a"]})
    with pytest.raises(ValueError, match="at least 2 groups"):
        paired_group_randomization({"es": [1, 0]}, {"es": [0, 0]}, {"es": ["a", "a"]})
