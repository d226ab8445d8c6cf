"""A model's activation ranges over calibration images: which tensors, measured how, cached by content.

Shared by ``calibrate`` (one calibration), the accuracy budget (one per method tried) and the
sensitivity scan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import sha256_file
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import QuantizationError, ResnetDeployError
from resnet_deploy.messages import Messages
from resnet_deploy.quantize.cache import cache_dir_problem, calibration_id, read_cached, write_cache
from resnet_deploy.quantize.calib_data import CalibrationSet, load_calibration_set
from resnet_deploy.quantize.cpu_qdq import cpu_calibration_tensors
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors
from resnet_deploy.quantize.ranges import compute_ranges

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")

Ranges = dict[str, tuple[float, float]]

# 1: ORT's collectors and signed entropy; 2: TensorRT-style |x| histograms (ranges.py); 3: their chunks sized by
# activation bytes (a histogram's bins start from its first chunk's largest value)
RANGES_ALGORITHM = 3


@dataclass
class CacheEntry:
    """Where one calibration's ranges are cached: its content id, and the directory (None: no cache)."""

    cal_id: str
    model_sha256: str  # of the FP32 ONNX calibrated
    directory: Path | None
    writable: bool  # False: the directory was found unusable before calibrating
    description: dict[str, Any]  # written beside the ranges

    def read(self) -> Ranges | None:
        """The cached ranges; None when there are none (or no cache)."""
        return read_cached(self.directory, self.cal_id) if self.directory is not None else None

    def store(self, ranges: Ranges, cache_hit: bool, *, symmetric: bool, method: str, out: Messages) -> list[Path]:
        """Write freshly measured ranges (a failure only warns); the cache files there now."""
        if self.directory is None:
            return []
        if not cache_hit and self.writable:
            try:
                write_cache(self.directory, self.cal_id, ranges, self.description, symmetric=symmetric, method=method)
            except (OSError, ResnetDeployError) as exc:
                out.warn(f"the calibration cache was not written ({exc}); the INT8 model is written anyway")
        if read_cached(self.directory, self.cal_id) is None:
            return []  # what a failed write left is no entry: the next run measures again
        names = (f"{self.cal_id}.json", f"{self.cal_id}.calib.cache")
        return [p for p in (self.directory / name for name in names) if p.exists()]


@dataclass
class MeasuredRanges:
    """One calibration's ranges, and where they came from."""

    ranges: Ranges
    cache: CacheEntry
    cache_hit: bool
    cache_files: list[Path]
    seconds: float  # measuring them (0 on a cache hit)


def measured_ranges(
    model: Any,
    onnx_path: str | Path,
    calib: CalibrationSet,
    options: CalibrationOptions,
    target: str,
    writable_cache: bool,
    out: Messages,
) -> MeasuredRanges:
    """The ranges of what ``target``'s placement quantizes: from the cache, else measured and cached."""
    tensors, aliases = _tensors_to_measure(model, target)
    cache = _cache_entry(onnx_path, calib, options, target, writable_cache)
    ranges = cache.read()
    cache_hit = ranges is not None
    cal_start = time.perf_counter()
    if ranges is None:
        ranges = _measure(model, calib, options, target, tensors, aliases)
    seconds = time.perf_counter() - cal_start
    cache_files = cache.store(ranges, cache_hit, symmetric=target == "tensorrt", method=options.method, out=out)
    return MeasuredRanges(ranges, cache, cache_hit, cache_files, seconds)


def tensorrt_amax(ranges: Ranges) -> dict[str, float]:
    """Symmetric ranges as the one |x| bound TensorRT placement scales by."""
    return {name: max(abs(low), abs(high)) for name, (low, high) in ranges.items()}


def cache_dir_usable(cache_dir: str | Path | None, out: Messages) -> bool:
    """Whether the cache can be written: found now, not after minutes of calibration (the output matters more)."""
    if cache_dir is None:
        return False
    if problem := cache_dir_problem(Path(cache_dir)):
        out.warn(f"the calibration cache will not be written: {problem} (`cache_dir` chooses another)")
        return False
    return True


def calibration_images(
    metadata: ArtifactMetadata, onnx_path: str | Path, options: CalibrationOptions, out: Messages
) -> CalibrationSet:
    """The images to calibrate on, from the dataset ``metadata`` records unless ``options.data`` names one."""
    calib = load_calibration_set(metadata, options.data, options.count)
    if calib.fallback:
        out.warn(
            f"{onnx_path} records no training dataset (random weights?): calibrating on the embedded {calib.spec} "
            "images; calibration data should match what the model will see in deployment (`calibration.data`)"
        )
    return calib


def check_fp32_export(model: Any, onnx_path: str | Path, doing: str = "calibrate") -> ArtifactMetadata:
    """Refuse a quantized or FP16 graph: ``doing`` (calibrate, rank) needs the FP32 export."""
    metadata = check_graph_matches_metadata(model, source=str(onnx_path))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise QuantizationError(f"{onnx_path} is already quantized; {doing} the FP32 export instead")
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise QuantizationError(f"{onnx_path} is FP16; {doing} the FP32 export instead")
    return metadata


def _cache_entry(
    onnx_path: str | Path, calib: CalibrationSet, options: CalibrationOptions, target: str, writable: bool
) -> CacheEntry:
    """The content id of this calibration: anything that changes the ranges changes it."""
    params = {
        "algorithm": RANGES_ALGORITHM,  # a new algorithm must not reuse the old one's cached ranges
        "symmetric": target == "tensorrt",
        "tensors": "qdq" if target == "tensorrt" else "ort-qdq",
        **({"percentile": options.percentile} if options.method == "percentile" else {}),
    }
    model_sha256 = sha256_file(onnx_path)
    description = {
        "model_sha256": model_sha256,
        "model": Path(onnx_path).name,
        "data_sha256": calib.sha256,
        "dataset": calib.spec,
        "images": calib.count,
        "method": options.method,
        **params,
    }
    directory = Path(options.cache_dir) if options.cache_dir is not None else None
    cal_id = calibration_id(model_sha256, calib.sha256, options.method, params)
    return CacheEntry(cal_id, model_sha256, directory, writable, description)


def _tensors_to_measure(model: Any, target: str) -> tuple[list[str], dict[str, str]]:
    """What ``target``'s quantizer reads, and the tensors that take another one's range (alias -> source)."""
    if target == "tensorrt":
        return qdq_tensors(model), {}  # only what gets a Q/DQ pair
    return cpu_calibration_tensors(model)  # what ORT's quantizer reads


def _measure(
    model: Any,
    calib: CalibrationSet,
    options: CalibrationOptions,
    target: str,
    tensors: list[str],
    aliases: dict[str, str],
) -> Ranges:
    """The ranges of ``tensors`` over the calibration images; each alias gets its source's range."""
    ranges = compute_ranges(
        model,
        calib.batches,
        method=options.method,
        symmetric=target == "tensorrt",
        percentile=options.percentile,
        tensors=tensors,
    )
    ranges.update({alias: ranges[source] for alias, source in aliases.items() if source in ranges})
    return ranges
