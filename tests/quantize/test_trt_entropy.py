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


def test_abs_histograms_equal_numpy_and_grow_with_fixed_width() -> None:
    from resnet_deploy.quantize.trt_entropy import AbsHistograms

    rng = np.random.default_rng(0)
    first = rng.standard_normal((4, 8, 6, 6)).astype(np.float32)
    second = (3 * rng.standard_normal((4, 8, 6, 6))).astype(np.float32)  # larger values: bins get appended
    amax = float(np.abs(first).max())
    collector = AbsHistograms(bins=64)
    collector.collect({"x": first.copy()})
    counts, edges = collector.histogram("x")
    expected, _ = np.histogram(np.abs(first), bins=64, range=(0, amax))
    assert np.array_equal(counts, expected) and edges[-1] == pytest.approx(amax)
    collector.collect({"x": second.copy()})
    counts, edges = collector.histogram("x")
    width = amax / 64
    assert len(counts) == int(np.abs(second).max() / width) + 1 and np.diff(edges) == pytest.approx(width)
    assert counts.sum() == first.size + second.size
    later, _ = np.histogram(np.abs(second), bins=len(counts), range=(0, len(counts) * width))
    padded = np.pad(expected, (0, len(counts) - 64))
    assert np.abs(counts - padded - later).max() <= 2  # float rounding at bin edges


def test_abs_histograms_edge_cases() -> None:
    from resnet_deploy.errors import ResnetDeployError
    from resnet_deploy.quantize.trt_entropy import AbsHistograms, percentile_amax

    relu = np.maximum(np.random.default_rng(1).standard_normal(4096), 0).astype(np.float32)
    trusted = AbsHistograms(bins=128, nonnegative=frozenset({"r"}))
    checked = AbsHistograms(bins=128)
    trusted.collect({"r": relu.copy()})
    checked.collect({"r": relu.copy()})
    assert np.array_equal(trusted.histogram("r")[0], checked.histogram("r")[0])  # no abs pass, same counts

    late = AbsHistograms(bins=16)  # all zeros first: no width until a non-zero chunk arrives
    late.collect({"t": np.zeros(100, np.float32)})
    late.collect({"t": np.linspace(-1, 1, 33, dtype=np.float32)})
    counts, edges = late.histogram("t")
    assert counts.sum() == 133 and counts[0] >= 100 and edges[-1] == pytest.approx(1.0)

    with pytest.raises(ResnetDeployError, match="tensor 'n' holds NaN"):
        late.collect({"n": np.array([1.0, np.nan], np.float32)})
    with pytest.raises(ResnetDeployError, match="tensor 't' holds NaN"):
        late.collect({"t": np.array([0.5, np.inf], np.float32)})

    hist = np.array([10, 80, 9, 1])
    edges = np.array([0.0, 1, 2, 3, 4])
    assert percentile_amax(hist, edges, 90.0) == 2.0 and percentile_amax(hist, edges, 99.95) == 4.0
