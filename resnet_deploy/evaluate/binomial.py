"""Exact (Clopper-Pearson) intervals of an error rate: ``errors`` wrong of ``images`` scored.

The Clopper-Pearson interval (Clopper and Pearson 1934, Biometrika 26:404) holds every true rate
``p`` that a two-sided binomial test at the interval's level would not reject; it is "exact" in
that it uses the binomial distribution itself, never a normal approximation, and so it keeps its
coverage (at least 95%) for any number of images, including 0 errors and all errors.

Its bounds are beta quantiles. For ``k`` errors of ``n`` and ``alpha = 1 - confidence``:

- lower = the ``alpha / 2`` quantile of Beta(k, n - k + 1) (0 when k = 0);
- upper = the ``1 - alpha / 2`` quantile of Beta(k + 1, n - k) (1 when k = n).

Equivalently, the lower bound is the rate at which ``P(X >= k) = alpha / 2`` and the upper bound the
rate at which ``P(X <= k) = alpha / 2``, for X ~ Binomial(n, p): the binomial tails are the
regularized incomplete beta function, ``P(X >= k) = I_p(k, n - k + 1)``.

Method: each quantile is found by bisection on ``p`` in [0, 1] (``I_p`` rises with ``p``), and
``I_p(a, b)`` is computed from its continued fraction (modified Lentz's method), on whichever side
of the symmetry ``I_p(a, b) = 1 - I_{1-p}(b, a)`` converges fast. Pure Python; no SciPy.

With no errors of ``n`` the upper bound has a closed form, ``1 - (alpha / 2) ** (1 / n)``: 3.62% for
100 images. 50 errors of 100 give [39.83%, 60.17%].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

METHOD = "Clopper-Pearson exact binomial interval (95%)"
_BISECTIONS = 100  # halvings of [0, 1]: far below float resolution
_FRACTION_TERMS = 10_000  # continued-fraction terms at most; about sqrt(images) are needed
_TINY = 1e-300  # keeps Lentz's method away from dividing by zero
_EPSILON = 1e-15  # a term this close to 1 ends the continued fraction


@dataclass(frozen=True)
class ErrorRate:
    """``errors`` wrong of ``images``, as a percentage with its exact interval."""

    images: int
    errors: int
    error_pct: float
    low_pct: float  # the interval, in percent
    high_pct: float

    def describe(self) -> str:
        """``2.00% [0.24, 7.04] (2 of 100)``"""
        return f"{self.error_pct:.2f}% [{self.low_pct:.2f}, {self.high_pct:.2f}] ({self.errors} of {self.images})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "method": METHOD}


def error_rate(errors: int, images: int, confidence: float = 0.95) -> ErrorRate:
    """The error rate of ``errors`` wrong of ``images``, with its Clopper-Pearson interval."""
    low, high = clopper_pearson(errors, images, confidence)
    return ErrorRate(images, errors, 100 * errors / images, 100 * low, 100 * high)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact interval of a binomial proportion (``successes`` of ``trials``), as proportions in [0, 1]."""
    if trials < 1:
        raise ValueError("a binomial interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"impossible counts: {successes} of {trials}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is a probability strictly between 0 and 1, not {confidence}")
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else beta_quantile(tail, successes, trials - successes + 1)
    high = 1.0 if successes == trials else beta_quantile(1 - tail, successes + 1, trials - successes)
    return low, high


def beta_quantile(probability: float, a: float, b: float) -> float:
    """The ``x`` in [0, 1] with ``regularized_incomplete_beta(x, a, b) == probability`` (bisection)."""
    if not 0 < probability < 1:
        raise ValueError(f"a quantile's probability is strictly between 0 and 1, not {probability}")
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if regularized_incomplete_beta(mid, a, b) < probability:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """``I_x(a, b)``: the Beta(a, b) distribution function at ``x`` (a, b > 0)."""
    if a <= 0 or b <= 0:
        raise ValueError(f"the beta function's parameters are positive, not a={a}, b={b}")
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):  # the continued fraction converges fast on this side
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (Numerical Recipes' ``betacf``), by modified Lentz."""
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / _away_from_zero(d)
    fraction = d
    for m in range(1, _FRACTION_TERMS + 1):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 / _away_from_zero(1 + even * d)
        c = _away_from_zero(1 + even / c)
        fraction *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 / _away_from_zero(1 + odd * d)
        c = _away_from_zero(1 + odd / c)
        step = d * c
        fraction *= step
        if abs(step - 1) < _EPSILON:
            return fraction
    return fraction


def _away_from_zero(value: float) -> float:
    return value if abs(value) > _TINY else _TINY
