"""paired_stats against first principles: a brute-force restricted maximum likelihood, the interval's
definition (where the score statistic crosses +-1.96), textbook counts and a seeded coverage check.

Notation: of n paired images, b are worse (reference right, other wrong) and c better; the change
in top-1 error is d = (b - c) / n. Under a true change d the cell proportions are p_b = q + d,
p_c = q, and the restricted likelihood is maximised over q alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from resnet_deploy.evaluate.paired_stats import GATES, METHOD, change_from_counts, paired_change, score_statistic

Z95 = 1.959963984540054  # the 0.975 normal quantile


def brute_force_statistic(n: int, b: int, c: int, d: float) -> float:
    """(b - c - n d) / sqrt(n (2 q + d (1 - d))) with q maximising the restricted log-likelihood
    b log(q + d) + c log(q) + (n - b - c) log(1 - 2q - d), found on ever finer grids."""
    lo, hi = max(0.0, -d), (1 - d) / 2  # every cell proportion in [0, 1]
    for _ in range(4):
        q = np.linspace(lo, hi, 20001)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = [
                np.where(b > 0, b * np.log(q + d), 0.0),
                np.where(c > 0, c * np.log(q), 0.0),
                np.where(n - b - c > 0, (n - b - c) * np.log(1 - 2 * q - d), 0.0),
            ]
        loglik = np.nan_to_num(sum(terms), nan=-np.inf)
        best, step = int(np.argmax(loglik)), q[1] - q[0]
        lo, hi = max(lo, q[best] - 2 * step), min(hi, q[best] + 2 * step)
    q_hat = float(q[best])
    return (b - c - n * d) / math.sqrt(n * (2 * q_hat + d * (1 - d)))


@pytest.mark.parametrize(("n", "b", "c"), [(360, 1, 0), (360, 0, 0), (1000, 30, 10), (50, 3, 7), (200, 0, 4)])
@pytest.mark.parametrize("d", [-0.2, -0.01, 0.0, 0.004, 0.03, 0.25])
def test_score_statistic_is_the_restricted_maximum_likelihood_one(n, b, c, d) -> None:
    if b == c == 0 and d == 0:
        assert score_statistic(n, b, c, d) == 0.0  # no discordant image, no change assumed: nothing to test
        return
    assert score_statistic(n, b, c, d) == pytest.approx(brute_force_statistic(n, b, c, d), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("n", "b", "c"), [(360, 1, 0), (360, 0, 0), (1000, 30, 10), (50, 3, 7), (200, 0, 4)])
def test_the_interval_bounds_are_where_the_statistic_is_1_96(n, b, c) -> None:
    change = change_from_counts(n, b, c)
    low, high = change.low_pp / 100, change.high_pp / 100
    assert brute_force_statistic(n, b, c, low) == pytest.approx(Z95, abs=1e-4)
    assert brute_force_statistic(n, b, c, high) == pytest.approx(-Z95, abs=1e-4)
    assert low < change.delta_pp / 100 < high  # the estimate inside


def test_no_discordant_image_bounds_the_change_by_about_3_84_over_n() -> None:
    change = change_from_counts(360, 0, 0)
    assert change.high_pp == pytest.approx(100 * Z95**2 / (360 + Z95**2), rel=1e-9)  # exact: n d / (1 - d) = z^2
    assert change.high_pp == pytest.approx(100 * 3.84 / 360, abs=0.02) and round(change.high_pp, 2) == 1.06
    assert change.low_pp == pytest.approx(-change.high_pp)
    assert (change.delta_pp, change.p_value, change.significant) == (0.0, 1.0, False)


def test_one_image_of_360_is_a_quarter_point_and_not_significant() -> None:
    change = change_from_counts(360, 1, 0)
    assert change.delta_pp == pytest.approx(100 / 360) and f"{change.delta_pp:.2f}" == "0.28"
    assert not change.significant and change.low_pp < 0 < change.high_pp
    assert change.p_value == pytest.approx(math.erfc(1 / math.sqrt(2)))  # McNemar z = 1: p = 0.3173
    assert change.describe() == "+0.28 pp [-0.78, +1.56] (1 worse, 0 better; not significant)"


def test_30_worse_and_10_better_of_1000_is_significant() -> None:
    change = change_from_counts(1000, 30, 10)
    assert change.delta_pp == pytest.approx(2.0) and change.significant and change.low_pp > 0
    assert change.p_value == pytest.approx(0.0016, abs=5e-5)  # z = 20 / sqrt(40) = 3.162
    mirrored = change_from_counts(1000, 10, 30)
    assert (mirrored.low_pp, mirrored.high_pp) == pytest.approx((-change.high_pp, -change.low_pp))


def test_paired_change_counts_the_discordant_images() -> None:
    reference = [True, True, False, False, True, True]
    other = [True, False, True, False, False, True]
    change = paired_change(reference, other)
    assert (change.images, change.worse, change.better) == (6, 2, 1)
    assert change == change_from_counts(6, 2, 1)
    assert change.to_dict()["method"] == METHOD and change.to_dict()["worse"] == 2


def test_the_interval_covers_the_true_change_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(20240601)
    n, p_worse, p_better = 500, 0.03, 0.05
    true_pp = 100 * (p_worse - p_better)
    draws = rng.multinomial(n, [p_worse, p_better, 1 - p_worse - p_better], size=1000)
    intervals = [change_from_counts(n, int(worse), int(better)) for worse, better, _ in draws]
    coverage = np.mean([c.low_pp <= true_pp <= c.high_pp for c in intervals])
    assert 0.92 <= coverage <= 0.98


def test_gated_pp_is_the_estimate_or_the_upper_bound() -> None:
    change = change_from_counts(360, 1, 0)
    assert GATES == ("estimate", "upper-bound")
    assert change.gated_pp("estimate") == change.delta_pp
    assert change.gated_pp("upper-bound") == change.high_pp == pytest.approx(1.556, abs=1e-3)
    with pytest.raises(ValueError, match="unknown gate 'upper'; choose one of estimate, upper-bound"):
        change.gated_pp("upper")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: change_from_counts(0, 0, 0), "at least one image"),
        (lambda: change_from_counts(10, -1, 0), "impossible counts"),
        (lambda: change_from_counts(10, 6, 5), "impossible counts: 6 worse and 5 better of 10 images"),
        (lambda: change_from_counts(10, 1, 0, confidence=0), "strictly between 0 and 1"),
        (lambda: change_from_counts(10, 1, 0, confidence=1.5), "strictly between 0 and 1"),
        (lambda: paired_change([True, False], [True]), "the same images: 2 against 1"),
        (lambda: paired_change([], []), "at least one image"),
    ],
)
def test_bad_inputs_raise_value_error(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
