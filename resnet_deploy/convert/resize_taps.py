"""The taps of Pillow's resize along one axis, in the integers Pillow itself computes with.

Pillow resizes an 8-bit image in two separable passes (horizontal, then vertical), each output pixel
a weighted sum of a few input pixels. The weights come from the filter (bilinear, bicubic) stretched
by the downscale factor, which is the antialiasing, normalised, then rounded to fixed point with 22
fractional bits; each sum starts at half a unit, is shifted right by 22 and clipped to 0..255. With
the weights as integers, the in-graph resize (:mod:`resnet_deploy.convert.preprocess_graph`) computes
the very same integers, so it equals :func:`resnet_deploy.artifacts.preprocess.fit` pixel for pixel
rather than approximately. Nearest is a pure index map, read off Pillow itself.

Which pass runs first matters (the intermediate image is rounded to 8 bits): Pillow up to 12 always runs
the horizontal one first; Pillow 13 runs the vertical one first when the height shrinks by more than
twice as many pixels as the width (:func:`vertical_first`).

numpy only (Pillow for the nearest map).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images (Resample.c)


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


FILTERS: dict[str, tuple[Callable[[float], float], float]] = {"bilinear": (_bilinear, 1.0), "bicubic": (_bicubic, 2.0)}


@dataclass(frozen=True)
class AxisTaps:
    """Output pixel i = clip((sum_k weights[i, k] * input[index[i, k]] + 2**21) >> 22, 0, 255); unused taps
    have weight 0. ``nearest``: one tap, weight 1 << 22 (an exact copy)."""

    index: np.ndarray  # (outputs, taps) int64
    weights: np.ndarray  # (outputs, taps) int32

    @property
    def taps(self) -> int:
        return int(self.index.shape[1])

    def span(self) -> tuple[int, int]:
        """The input pixels any output reads: [first, last + 1)."""
        used = self.index[self.weights != 0]
        return (int(used.min()), int(used.max()) + 1) if used.size else (0, 1)


def axis_taps(in_size: int, out_size: int, interpolation: str, keep: slice | None = None) -> AxisTaps:
    """The taps resizing ``in_size`` pixels to ``out_size`` as Pillow does, only the outputs in ``keep``
    (the crop) when given."""
    if interpolation == "nearest":
        index = _nearest_index(in_size, out_size)[keep or slice(None)]
        return AxisTaps(index[:, None].astype(np.int64), np.full((len(index), 1), 1 << PRECISION_BITS, np.int32))
    filter_fn, filter_support = FILTERS[interpolation]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filter_support * filterscale
    ksize = math.ceil(support) * 2 + 1
    inverse = 1.0 / filterscale  # Pillow multiplies by it (dividing would round otherwise)
    outputs = range(out_size)[keep or slice(None)]
    index = np.zeros((len(outputs), ksize), np.int64)
    weights = np.zeros((len(outputs), ksize), np.int32)
    for row, xx in enumerate(outputs):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero, as int() does
        xmax = min(int(center + support + 0.5), in_size) - xmin
        taps = [filter_fn((x + xmin - center + 0.5) * inverse) for x in range(xmax)]
        total = sum(taps)
        normalised = [w / total if total != 0.0 else w for w in taps]
        index[row, :] = xmin
        index[row, :xmax] = np.arange(xmin, xmin + xmax)
        weights[row, :xmax] = [_fixed(w) for w in normalised]
    return AxisTaps(index, weights)


def _fixed(weight: float) -> int:
    """Pillow's rounding of a weight to fixed point (half away from zero, then C's truncation)."""
    scaled = weight * (1 << PRECISION_BITS)
    return int(scaled - 0.5) if weight < 0 else int(scaled + 0.5)


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Which input pixel each output of a nearest resize copies, read off Pillow (mode I holds any index)."""
    from PIL import Image

    ramp = Image.fromarray(np.arange(in_size, dtype=np.int32)[None, :])
    return np.asarray(ramp.resize((out_size, 1), Image.Resampling.NEAREST), dtype=np.int64)[0]


def vertical_first(in_width: int, in_height: int, out_width: int, out_height: int) -> bool:
    """Whether the installed Pillow resizes ``in`` to ``out`` vertical pass first (see the module's docstring)."""
    from PIL import __version__

    if int(__version__.split(".")[0]) < 13:
        return False
    shrink_y, shrink_x = in_height - out_height, in_width - out_width
    return shrink_y > 0 and shrink_y > 2 * shrink_x
