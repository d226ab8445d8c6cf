"""Activation ranges from ONNX Runtime's calibrators (entropy, percentile, minmax).

The model runs in ONNX Runtime on the CPU with every float tensor made an output; ORT's collectors
accumulate histograms (entropy, percentile) or extrema (minmax) chunk by chunk, so memory stays at
one chunk of activations whatever the image count. Symmetric mode (TensorRT) histograms |x| and
returns +-amax; asymmetric mode (ONNX Runtime CPU, uint8 activations) returns (min, max).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from resnet_deploy.errors import ResnetDeployError

METHODS = ("entropy", "percentile", "minmax")
TENSORRT_HISTOGRAM_BINS = 2048  # what TensorRT's EntropyCalibration2 uses
QUANTIZED_BINS = 128  # int8 magnitudes 0..127


class _OneChunk:
    """An ORT CalibrationDataReader over a single chunk (ORT keeps a whole reader's outputs in memory)."""

    def __init__(self, input_name: str, chunk: np.ndarray) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter([{input_name: chunk}])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def compute_ranges(
    onnx_path: str | Path,
    batches: list[np.ndarray],
    *,
    method: str = "entropy",
    symmetric: bool = True,
    percentile: float = 99.99,
    input_name: str = "input",
) -> dict[str, tuple[float, float]]:
    """Calibrate every float activation of the model: tensor name -> (low, high)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if method not in METHODS:
        raise ResnetDeployError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < percentile <= 100:
        raise ResnetDeployError(f"--percentile must be in (0, 100], got {percentile}")
    ort_method = {
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
    }[method]
    options: dict[str, object] = {"symmetric": symmetric}
    if method in ("entropy", "percentile"):
        options.update(num_bins=TENSORRT_HISTOGRAM_BINS, num_quantized_bins=QUANTIZED_BINS, percentile=percentile)
    with tempfile.TemporaryDirectory(prefix="resnet-deploy-calib.") as tmp:
        calibrator = create_calibrator(
            Path(onnx_path),
            None,  # all float tensors: the TensorRT cache wants every activation's scale
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method,
            providers=["CPUExecutionProvider"],
            extra_options=options,
        )
        if method == "entropy":  # same thresholds as ORT's, computed ~5x faster (see fast_entropy.py)
            from resnet_deploy.quantize.fast_entropy import FastEntropyCollector

            calibrator.collector = FastEntropyCollector(
                method="entropy",
                symmetric=symmetric,
                num_bins=TENSORRT_HISTOGRAM_BINS,
                num_quantized_bins=QUANTIZED_BINS,
                percentile=percentile,
                scenario="same",
            )
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints progress lines per tensor
            for chunk in batches:
                calibrator.collect_data(_OneChunk(input_name, chunk))
            data = calibrator.compute_data()
    ranges = {}
    for name, tensor in data.data.items():
        low, high = (float(np.asarray(v).reshape(-1)[0]) for v in tensor.range_value)
        ranges[name] = (low, high)
    return ranges
