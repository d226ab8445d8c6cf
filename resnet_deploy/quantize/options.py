"""How to calibrate: one typed record from the CLI (or Python) to ``calibrate_onnx``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_deploy.errors import QuantizationError

METHODS = ("entropy", "percentile", "minmax")
TARGETS = ("tensorrt", "cpu")


@dataclass(frozen=True)
class CalibrationOptions:
    method: str = "entropy"  # entropy (TensorRT's KL), percentile, or minmax
    percentile: float = 99.99  # with method "percentile": the |x| percentile kept
    data: str | None = None  # a dataset spec; None: the one the model records, else the embedded digits
    count: int = 512  # calibration images
    cache_dir: str | Path | None = "calibration"  # ranges cached by content id; None: no cache

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizationError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise QuantizationError(f"the number of calibration images must be at least 1, got {self.count!r}")

    @classmethod
    def of(cls, options: CalibrationOptions | None = None, **fields: Any) -> CalibrationOptions:
        """``options``, with ``fields`` replaced (``CalibrationOptions.of(method="minmax", count=64)``)."""
        try:
            return dataclasses.replace(options or cls(), **fields)
        except TypeError:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise QuantizationError(
                f"unknown calibration option among {sorted(fields)}; the options are {known}"
            ) from None
