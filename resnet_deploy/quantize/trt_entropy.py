"""TensorRT's entropy calibration (``EntropyCalibration2``) on |x| histograms, vectorised.

The algorithm of NVIDIA's "8-bit Inference with TensorRT" (GTC 2017), as pytorch-quantization's
``_compute_amax_entropy`` implements it: a 2,048-bin histogram of |x| (bin 0 set to bin 1, so
ReLU's spike at zero does not dominate); for every candidate cut ``i`` from 128 to 2,048 bins the
reference P is ``bins[:i]`` with everything beyond folded into its last bin; Q merges those ``i``
bins into 128 levels (``np.linspace(0, i, 129)`` boundaries) and spreads each level's count evenly
over its non-empty bins; amax is the upper edge of the cut with the least KL(P || Q), the last one
on ties. Unlike ONNX Runtime's signed (MXNet) variant, which spends half its 128 levels on the
empty negative side of post-ReLU tensors, all 128 levels cover the magnitudes TensorRT quantizes.

Each candidate's KL is computed per quantized level from prefix sums (O(levels) instead of O(bins)
per candidate), all candidates at once; a plain loop version in the tests checks it.

``AbsHistograms`` collects the histograms as TensorRT's calibrator keeps them: 2,048 bins of |x| over
[0, amax of the first batch]; later batches with larger values append bins of the same width. It
counts with torch's in-place abs/scale and ``bincount``, one pass over the values, where ``np.histogram``
with explicit edges (what ORT's collector uses) sorts the values to search for the edges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import QuantizationError

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch", extra="train")

LEVELS = 128  # int8 magnitudes
START_BIN = 128


def entropy_amax(hist: np.ndarray, edges: np.ndarray) -> float:
    levels, start = LEVELS, START_BIN
    bins = np.asarray(hist, dtype=np.float64).copy()
    n = bins.size
    if n <= start:
        return float(edges[-1])
    bins[0] = bins[1]
    total = bins.sum()
    if total <= 0:
        return float(edges[-1])
    cum = np.concatenate([[0.0], np.cumsum(bins)])
    nonzero = bins > 0
    nz_cum = np.concatenate([[0], np.cumsum(nonzero)])
    with np.errstate(divide="ignore", invalid="ignore"):
        blogb = np.where(nonzero, bins * np.log(np.where(nonzero, bins, 1.0)), 0.0)
    blogb_cum = np.concatenate([[0.0], np.cumsum(blogb)])

    cuts = np.arange(start, n + 1)  # candidate i: keep bins[:i]
    k = np.arange(levels + 1)
    space = k[None, :] * (cuts[:, None] / levels)  # np.linspace(0, i, levels + 1)
    space[:, -1] = cuts
    bounds = np.ceil(space).astype(np.int64)  # bin j belongs to level k iff space[k] <= j < space[k + 1]
    lo, hi = bounds[:, :-1], bounds[:, 1:]
    mass = cum[hi] - cum[lo]  # counts per level
    count = nz_cum[hi] - nz_cum[lo]  # non-empty bins per level
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(count > 0, mass / np.where(count > 0, count, 1), 0.0)  # Q's value on each non-empty bin
        log_density = np.where(density > 0, np.log(np.where(density > 0, density, 1.0)), 0.0)

    last = cuts - 1
    b_last = bins[last]
    outliers = total - cum[cuts]
    rows = np.arange(len(cuts))
    # the level holding the last kept bin: the largest k with lo[k] <= i - 1
    level_of_last = np.clip((lo <= last[:, None]).sum(axis=1) - 1, 0, levels - 1)

    # sum over j < i-1 of b_j * (log b_j - log d_k(j)): prefix sums per level, minus the last bin's share
    b_log_b = blogb_cum[last]  # sum over j < i-1 of b_j log b_j
    cross = (mass * log_density).sum(axis=1) - b_last * log_density[rows, level_of_last]
    body = b_log_b - cross
    p_last = b_last + outliers
    with np.errstate(divide="ignore", invalid="ignore"):
        q_last = np.where(b_last > 0, density[rows, level_of_last], 0.0)
        tail = np.where(p_last > 0, p_last * (np.log(np.where(p_last > 0, p_last, 1.0)) - np.log(q_last)), 0.0)
    q_total = cum[cuts]  # Q sums to the in-range counts
    # KL(P||Q) with p_j = b_j / T (p_last = (b_last + outliers) / T) and q_j = d_k / C_i
    kl = (body + tail) / total - np.log(total) + np.log(q_total)
    kl = np.where(np.isnan(kl), np.inf, kl)
    best = len(kl) - 1 - int(np.argmin(kl[::-1]))  # the last minimum, as pytorch-quantization takes
    return float(edges[cuts[best]])


def percentile_amax(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """The upper edge of the bin holding the ``percentile``-th percentile of |x| (a conservative amax)."""
    cdf = np.cumsum(hist, dtype=np.float64)
    if cdf[-1] <= 0:
        return float(edges[-1])
    index = int(np.searchsorted(cdf / cdf[-1], percentile / 100.0))
    return float(edges[min(index + 1, len(edges) - 1)])


class AbsHistograms:
    """Fixed-width histograms of |x| per tensor, fed chunk by chunk; the arrays given are modified in place."""

    def __init__(self, bins: int = 2048, nonnegative: frozenset[str] = frozenset()) -> None:
        self.bins = bins
        self.nonnegative = nonnegative  # tensors known to be >= 0 (ReLU outputs): no abs pass
        self.counts: dict[str, np.ndarray] = {}
        self.width: dict[str, float] = {}
        self.pending_zeros: dict[str, int] = {}  # values seen while the tensor was all zeros: no width yet
        self.minimum: dict[str, float] = {}  # signed minimum, for asymmetric (uint8) ranges

    def collect(self, chunk: dict[str, np.ndarray]) -> None:

        for name, values in chunk.items():
            if not values.flags.writeable:
                values = values.copy()
            flat = torch.from_numpy(values).view(-1)
            if not flat.numel():
                continue
            if name in self.nonnegative:
                self.minimum[name] = 0.0
            else:
                low = float(flat.min())
                self.minimum[name] = min(low, self.minimum.get(name, low))
                flat.abs_()
            first = name not in self.width
            if first:
                amax = float(flat.max())
                if not np.isfinite(amax):
                    raise QuantizationError(_non_finite(name))
                if amax == 0:
                    self.pending_zeros[name] = self.pending_zeros.get(name, 0) + flat.numel()
                    continue
                self.width[name] = amax / self.bins
            index = flat.mul_(1.0 / self.width[name]).to(
                torch.int32
            )  # floor for |x| >= 0; NaN and overflow go negative
            if first:
                index.clamp_(max=self.bins - 1)  # amax itself belongs to the last bin
            try:
                counts = torch.bincount(index).numpy().astype(np.int64)
            except RuntimeError:
                raise QuantizationError(_non_finite(name)) from None
            old = self.counts.get(name)
            if old is None:
                old = np.zeros(self.bins, np.int64)
                old[0] += self.pending_zeros.pop(name, 0)
            merged = np.zeros(max(len(old), len(counts)), np.int64)
            merged[: len(old)] += old
            merged[: len(counts)] += counts
            self.counts[name] = merged

    def histogram(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of ``name``; an all-zero tensor gets one full bin 0 over [0, 1/bins)."""
        counts = self.counts.get(name)
        if counts is None:
            counts = np.zeros(self.bins, np.int64)
            counts[0] = self.pending_zeros.get(name, 0)
        width = self.width.get(name, 1.0 / self.bins)
        return counts, np.arange(len(counts) + 1, dtype=np.float64) * width


def _non_finite(name: str) -> str:
    return (
        f"tensor {name!r} holds NaN, infinite or absurdly large values on the calibration images; "
        "check the model's weights and the calibration data"
    )
