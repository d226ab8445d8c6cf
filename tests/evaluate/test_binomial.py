"""binomial: the exact (Clopper-Pearson) interval against closed forms, published values (R's
``binom.test``), a brute-force binomial-tail inversion and its exact coverage."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from resnet_deploy.evaluate.binomial import (
    METHOD,
    beta_quantile,
    clopper_pearson,
    error_rate,
    regularized_incomplete_beta,
)


def binomial_pmf(k: int, n: int, p: float) -> float:
    return math.exp(
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
    )


def at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed term by term."""
    return math.fsum(binomial_pmf(i, n, p) for i in range(k, n + 1))


def inverted_tail(tail: Callable[[float], float], target: float) -> float:
    """The p in (0, 1) where the rising function ``tail`` reaches ``target`` (60 halvings)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) < target else (lo, mid)
    return (lo + hi) / 2


def test_no_errors_and_all_errors_have_closed_forms() -> None:
    """0 of n: the upper bound solves (1 - p)^n = 0.025; n of n mirrors it."""
    for n in (1, 10, 100, 360, 50_000):
        low, high = clopper_pearson(0, n)
        assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-10)
        assert clopper_pearson(n, n) == pytest.approx((0.025 ** (1 / n), 1.0), rel=1e-10)
    assert 100 * clopper_pearson(0, 100)[1] == pytest.approx(3.6217, abs=1e-4)
    assert clopper_pearson(0, 100, confidence=0.99)[1] == pytest.approx(1 - 0.005 ** (1 / 100), rel=1e-10)


@pytest.mark.parametrize(
    ("errors", "images", "low", "high"),
    [  # R: binom.test(errors, images)$conf.int
        (50, 100, 0.3983211, 0.6016789),
        (1, 10, 0.002528579, 0.4450161),
        (2, 100, 0.002431337, 0.07038393),
        (3, 7, 0.09898828, 0.8159484),
    ],
)
def test_published_values(errors: int, images: int, low: float, high: float) -> None:
    assert clopper_pearson(errors, images) == pytest.approx((low, high), rel=1e-6)


@pytest.mark.parametrize(("errors", "images"), [(17, 3000), (1234, 2000), (40, 1500)])
def test_the_beta_quantiles_invert_the_binomial_tails(errors: int, images: int) -> None:
    """The lower bound is where P(X >= k) = 2.5%, the upper where P(X <= k) = 2.5%."""
    low, high = clopper_pearson(errors, images)
    assert low == pytest.approx(inverted_tail(lambda p: at_least(errors, images, p), 0.025), abs=1e-11)
    assert high == pytest.approx(inverted_tail(lambda p: at_least(errors + 1, images, p), 0.975), abs=1e-11)


def test_the_interval_mirrors_and_holds_the_estimate() -> None:
    for errors in range(0, 41, 5):
        low, high = clopper_pearson(errors, 40)
        assert low <= errors / 40 <= high
        mirrored = clopper_pearson(40 - errors, 40)
        assert (low, high) == pytest.approx((1 - mirrored[1], 1 - mirrored[0]), abs=1e-12)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.2, 0.5])
def test_exact_coverage_is_at_least_95_percent(p: float) -> None:
    """Summed over every outcome of 50 images: the chance that the interval holds the true rate."""
    n = 50
    intervals = [clopper_pearson(k, n) for k in range(n + 1)]
    coverage = math.fsum(binomial_pmf(k, n, p) for k, (low, high) in enumerate(intervals) if low <= p <= high)
    assert 0.95 <= coverage < 1.0


def test_the_incomplete_beta_function_on_closed_forms() -> None:
    for x in (0.001, 0.2, 0.5, 0.93):
        assert regularized_incomplete_beta(x, 1, 1) == pytest.approx(x, rel=1e-12)
        assert regularized_incomplete_beta(x, 3, 1) == pytest.approx(x**3, rel=1e-12)
        assert regularized_incomplete_beta(x, 1, 4) == pytest.approx(1 - (1 - x) ** 4, rel=1e-12)
        assert regularized_incomplete_beta(x, 2.5, 7) == pytest.approx(1 - regularized_incomplete_beta(1 - x, 7, 2.5))
    assert regularized_incomplete_beta(0.5, 300, 300) == pytest.approx(0.5, abs=1e-12)
    assert (regularized_incomplete_beta(0, 2, 3), regularized_incomplete_beta(1, 2, 3)) == (0.0, 1.0)
    assert beta_quantile(0.3, 1, 1) == pytest.approx(0.3, abs=1e-14)


def test_error_rate_in_percent() -> None:
    rate = error_rate(2, 100)
    assert (rate.images, rate.errors, rate.error_pct) == (100, 2, 2.0)
    assert (rate.low_pct, rate.high_pct) == pytest.approx((0.2431337, 7.038393), rel=1e-6)
    assert rate.describe() == "2.00% [0.24, 7.04] (2 of 100)"
    assert rate.to_dict()["method"] == METHOD == "Clopper-Pearson exact binomial interval (95%)"


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one trial"):
        clopper_pearson(0, 0)
    with pytest.raises(ValueError, match="impossible counts: 5 of 4"):
        clopper_pearson(5, 4)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        clopper_pearson(1, 4, confidence=1.0)
    with pytest.raises(ValueError, match="positive"):
        regularized_incomplete_beta(0.5, 0, 1)
