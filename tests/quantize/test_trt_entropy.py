"""TensorRT-style entropy calibration: the vectorised search equals a plain loop of the algorithm."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from resnet_deploy.quantize.trt_entropy import entropy_amax


def reference_amax(hist: np.ndarray, edges: np.ndarray, levels: int = 128, start: int = 128) -> float:
    """The algorithm written out plainly (pytorch-quantization's _compute_amax_entropy, stride 1)."""
    bins = hist.astype(np.float64).copy()
    bins[0] = bins[1]
    divergences = []
    for i in range(start, len(bins) + 1):
        space = np.linspace(0, i, num=levels + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        density = np.zeros(levels)
        for j, d in enumerate(digitized):
            if d != -1:
                density[d] += bins[j]
        for key, val in Counter(digitized).items():
            if key != -1:
                density[key] /= val
        q = np.array([density[d] if d != -1 else 0.0 for d in digitized])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        p, q = p / p.sum(), q / q.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / q), 0.0)
        divergences.append(terms.sum() if np.all(q[p > 0] > 0) else np.inf)
    divergences = np.array(divergences)
    best = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return float(edges[best + start])


@pytest.mark.parametrize("kind", ["relu", "normal", "laplace", "sparse"])
def test_vectorised_search_equals_the_plain_algorithm(kind: str) -> None:
    rng = np.random.default_rng(3)
    values = {
        "relu": np.maximum(rng.standard_normal(50_000), 0),
        "normal": rng.standard_normal(50_000) * 3,
        "laplace": rng.laplace(size=20_000),
        "sparse": rng.exponential(size=300),
    }[kind]
    magnitudes = np.abs(values).astype(np.float32)
    hist, edges = np.histogram(magnitudes, bins=512, range=(0, float(magnitudes.max())))
    assert entropy_amax(hist, edges) == pytest.approx(reference_amax(hist, edges), rel=1e-6)


def test_clips_long_tails_but_keeps_a_clean_range() -> None:
    rng = np.random.default_rng(0)
    values = np.abs(np.concatenate([rng.standard_normal(100_000), [60.0]]))  # one outlier
    hist, edges = np.histogram(values, bins=2048, range=(0, values.max()))
    amax = entropy_amax(hist, edges)
    assert 2.5 < amax < 10  # far below the outlier, above the bulk of a unit normal
    uniform = rng.uniform(0, 1, 100_000)
    hist, edges = np.histogram(uniform, bins=2048, range=(0, 1))
    assert entropy_amax(hist, edges) > 0.95  # nothing to clip
