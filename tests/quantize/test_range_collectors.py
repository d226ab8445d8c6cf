"""The per-method collectors behind ``compute_ranges``: which one each method gets, and what they keep."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from resnet_deploy.errors import QuantizationError
from resnet_deploy.quantize.ranges import (
    AbsHistogramCollector,
    MinMaxCollector,
    SignedHistogramCollector,
    make_collector,
)

MODEL = SimpleNamespace(graph=SimpleNamespace(node=()))  # the histograms read only which tensors ReLUs write


@pytest.mark.parametrize(
    ("method", "symmetric", "kind"),
    [
        ("entropy", True, AbsHistogramCollector),
        ("entropy", False, AbsHistogramCollector),
        ("percentile", True, AbsHistogramCollector),
        ("percentile", False, SignedHistogramCollector),
        ("minmax", True, MinMaxCollector),
        ("minmax", False, MinMaxCollector),
    ],
)
def test_each_method_gets_its_collector(method, symmetric, kind) -> None:
    with make_collector(method, ["t"], MODEL, symmetric=symmetric, percentile=99.0) as collector:
        assert type(collector) is kind


def test_minmax_keeps_the_extrema_over_all_chunks() -> None:
    rng = np.random.default_rng(0)
    chunks = [{"a": rng.normal(size=(8, 4)), "b": rng.uniform(size=(8, 4))} for _ in range(3)]
    with MinMaxCollector(["a", "b"]) as collector:
        for chunk in chunks:
            collector.collect(chunk)
        low, high = collector.extrema()
    for name in ("a", "b"):
        values = np.concatenate([c[name] for c in chunks])
        assert (low[name], high[name]) == (float(values.min()), float(values.max()))


def test_a_histogram_failure_on_the_counting_thread_reaches_the_caller() -> None:
    collector = AbsHistogramCollector(["t"], MODEL, method="entropy", symmetric=True, percentile=99.99)
    with pytest.raises(QuantizationError, match="'t' holds NaN"), collector:
        collector.collect({"t": np.array([1.0, np.nan], dtype=np.float32)})
        collector.collect({"t": np.ones(2, dtype=np.float32)})  # waits for the first chunk: its error surfaces
