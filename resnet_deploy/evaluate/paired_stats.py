"""Paired statistics of a top-1 change: two models scored on the same images.

Only the discordant images carry information about the change: ``worse`` (the reference is right,
the other model wrong) and ``better`` (the reverse). The change in top-1 error is
``(worse - better) / n``, in percentage points.

- Interval: Tango's score interval for the difference of paired proportions (Tango 1998,
  Statistics in Medicine 17:891). It inverts the score test with the restricted maximum-likelihood
  variance, so it stays honest where a Wald or a bootstrap interval collapses: with no discordant
  image among n its upper bound is about 3.84 / n (a bootstrap would say [0, 0]).
- Test: McNemar's (the score test at a change of 0, z = (worse - better) / sqrt(worse + better)).
  The change is called significant exactly when the interval excludes 0: the same test, inverted.

Pure Python and numpy; no SciPy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

METHOD = "Tango score interval (95%); McNemar score test"
GATES = ("estimate", "upper-bound")  # what a --max-top1-drop budget is compared with
_BISECTIONS = 100  # halvings of [-1, 1]: far below float resolution


@dataclass(frozen=True)
class PairedChange:
    """The change in top-1 error of one model against a reference, on the same ``images``."""

    images: int
    worse: int  # reference right, this model wrong
    better: int  # reference wrong, this model right
    delta_pp: float  # rise in top-1 error, percentage points (positive = worse)
    low_pp: float  # the 95% interval of delta_pp
    high_pp: float
    p_value: float  # McNemar: the chance of a split at least this uneven if nothing changed
    significant: bool  # the interval excludes 0 (p < 0.05)

    def gated_pp(self, gate: str) -> float:
        """What a budget is compared with: the point estimate, or the interval's upper bound."""
        if gate not in GATES:
            raise ValueError(f"unknown gate {gate!r}; choose one of {', '.join(GATES)}")
        return self.delta_pp if gate == "estimate" else self.high_pp

    def describe(self) -> str:
        """``+0.28 pp [-0.78, +1.56] (1 worse, 0 better; not significant)``"""
        verdict = "significant" if self.significant else "not significant"
        return (
            f"{self.delta_pp:+.2f} pp [{self.low_pp:+.2f}, {self.high_pp:+.2f}] "
            f"({self.worse} worse, {self.better} better; {verdict})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "method": METHOD}


def paired_change(reference_hits: Any, other_hits: Any, confidence: float = 0.95) -> PairedChange:
    """The change from ``reference_hits`` to ``other_hits`` (booleans per image, same images, same order)."""
    ref = np.asarray(reference_hits, dtype=bool).ravel()
    other = np.asarray(other_hits, dtype=bool).ravel()
    if ref.shape != other.shape:
        raise ValueError(f"paired scores need the same images: {ref.size} against {other.size}")
    worse = int(np.count_nonzero(ref & ~other))
    better = int(np.count_nonzero(~ref & other))
    return change_from_counts(int(ref.size), worse, better, confidence)


def change_from_counts(images: int, worse: int, better: int, confidence: float = 0.95) -> PairedChange:
    if images < 1:
        raise ValueError("paired scores need at least one image")
    if min(worse, better) < 0 or worse + better > images:
        raise ValueError(f"impossible counts: {worse} worse and {better} better of {images} images")
    if not 0 < confidence < 1:  # 0 would call every change significant; 1 or more, none (z = 10)
        raise ValueError(f"confidence is a probability strictly between 0 and 1, not {confidence}")
    z = _normal_quantile(0.5 + confidence / 2)
    delta = (worse - better) / images
    low = _bound(images, worse, better, z, lo=-1.0, hi=delta)
    high = _bound(images, worse, better, z, lo=delta, hi=1.0)
    discordant = worse + better
    p_value = 1.0 if discordant == 0 else math.erfc(abs(worse - better) / math.sqrt(discordant) / math.sqrt(2))
    return PairedChange(
        images=images,
        worse=worse,
        better=better,
        delta_pp=100 * delta,
        low_pp=100 * low,
        high_pp=100 * high,
        p_value=p_value,
        significant=low > 0 or high < 0,
    )


def score_statistic(images: int, worse: int, better: int, delta: float) -> float:
    """Tango's score statistic for a true change of ``delta`` (a proportion, in [-1, 1]).

    The variance is that of (worse - better) / n under the maximum-likelihood cell proportions
    constrained to the change ``delta``: the "better" cell's proportion q solves
    2n q^2 + W q - better * delta * (1 - delta) = 0 with W = -(worse + better) + delta * (2n - worse + better).
    """
    n = images
    w = -(worse + better) + delta * (2 * n - worse + better)
    q = (-w + math.sqrt(max(w * w + 8 * n * better * delta * (1 - delta), 0.0))) / (4 * n)
    variance = n * (2 * q + delta * (1 - delta))
    difference = worse - better - n * delta
    if variance <= 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / math.sqrt(variance)


def _bound(images: int, worse: int, better: int, z: float, *, lo: float, hi: float) -> float:
    """The change in [lo, hi] where the score statistic crosses +z (lower bound) or -z (upper bound).

    The statistic falls as the assumed change rises; one side of the point estimate holds one crossing.
    """
    lower_side = hi <= (worse - better) / images + 1e-15  # searching below the estimate
    target = z if lower_side else -z
    if lower_side and score_statistic(images, worse, better, lo) <= target:
        return lo  # even a change of -1 is not rejected
    if not lower_side and score_statistic(images, worse, better, hi) >= target:
        return hi
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if score_statistic(images, worse, better, mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _normal_quantile(p: float) -> float:
    """The standard normal quantile (bisection on erfc; 1.959964 at 0.975)."""
    lo, hi = -10.0, 10.0
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
