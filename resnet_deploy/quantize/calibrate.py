"""``calibrate``: FP32 ONNX + calibration images -> INT8 Q/DQ ONNX for TensorRT or ONNX Runtime CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import atomic_output, check_writable, sha256_file
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import QuantizationError, ResnetDeployError
from resnet_deploy.onnx_io import check_graph_matches_metadata, load_onnx, onnx_props
from resnet_deploy.quantize.cache import cache_dir_problem, calibration_id, read_cached, write_cache
from resnet_deploy.quantize.calib_data import CalibrationSet, load_calibration_set
from resnet_deploy.quantize.cpu_qdq import cpu_calibration_tensors, quantize_for_cpu
from resnet_deploy.quantize.options import TARGETS, CalibrationOptions
from resnet_deploy.quantize.qdq_tensorrt import insert_tensorrt_qdq, qdq_tensors
from resnet_deploy.quantize.ranges import compute_ranges

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")

RANGES_ALGORITHM = 2  # 1: ORT's collectors and signed entropy; 2: TensorRT-style |x| histograms (ranges.py)

Ranges = dict[str, tuple[float, float]]
Warn = Callable[[str], None]


@dataclass
class CalibrateResult:
    path: Path
    target: str
    method: str
    calibration_id: str
    images: int
    dataset: str
    cache_hit: bool
    cache_files: list[Path]
    calibrate_seconds: float
    total_seconds: float
    placement: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["path"] = str(self.path)
        out["cache_files"] = [str(p) for p in self.cache_files]
        return out


@dataclass
class _CacheEntry:
    """Where one calibration's ranges are cached: its content id, and the directory (None: no cache)."""

    cal_id: str
    model_sha256: str  # of the FP32 ONNX calibrated
    directory: Path | None
    writable: bool  # False: the directory was found unusable before calibrating
    description: dict[str, Any]  # written beside the ranges

    def read(self) -> Ranges | None:
        """The cached ranges; None when there are none (or no cache)."""
        return read_cached(self.directory, self.cal_id) if self.directory is not None else None

    def store(self, ranges: Ranges, cache_hit: bool, *, symmetric: bool, method: str, warn: Warn) -> list[Path]:
        """Write freshly measured ranges (a failure only warns); the cache files there now."""
        if self.directory is None:
            return []
        if not cache_hit and self.writable:
            try:
                write_cache(self.directory, self.cal_id, ranges, self.description, symmetric=symmetric, method=method)
            except (OSError, ResnetDeployError) as exc:
                warn(f"the calibration cache was not written ({exc}); the INT8 model is written anyway")
        names = (f"{self.cal_id}.json", f"{self.cal_id}.calib.cache")
        return [p for p in (self.directory / name for name in names) if p.exists()]


def calibrate_onnx(
    onnx_path: str | Path,
    output: str | Path,
    options: CalibrationOptions | None = None,
    *,
    target: str = "tensorrt",
    warn: Warn = lambda message: None,
    **fields: Any,
) -> CalibrateResult:
    """Calibrate ``onnx_path`` and write its INT8 form for ``target`` to ``output``.

    ``options`` (or its fields as keywords: ``method="minmax", count=64``) say how.
    """
    options = CalibrationOptions.of(options, **fields)
    start = time.perf_counter()
    if target not in TARGETS:
        raise QuantizationError(f"unknown target {target!r}; choose tensorrt or cpu")
    output = check_writable(output)
    writable_cache = _cache_dir_usable(options.cache_dir, warn)
    model = load_onnx(onnx_path)  # loaded once: metadata, checks, ranges and the Q/DQ graph all use it
    calib = _calibration_images(model, onnx_path, options, warn)
    tensors, aliases = _tensors_to_measure(model, target)
    cache = _cache_entry(onnx_path, calib, options, target, writable_cache)
    ranges = cache.read()
    cache_hit = ranges is not None
    cal_start = time.perf_counter()
    if ranges is None:
        ranges = _measure(model, calib, options, target, tensors, aliases)
    cal_seconds = time.perf_counter() - cal_start
    cache_files = cache.store(ranges, cache_hit, symmetric=target == "tensorrt", method=options.method, warn=warn)
    quantized, placement = _quantize(model, onnx_path, ranges, target)
    _replace_props(quantized, {**onnx_props(model), **_int8_props(target, options.method, cache, calib)})
    _save_checked(quantized, output)
    return CalibrateResult(
        path=output,
        target=target,
        method=options.method,
        calibration_id=cache.cal_id,
        images=calib.count,
        dataset=calib.spec,
        cache_hit=cache_hit,
        cache_files=cache_files,
        calibrate_seconds=cal_seconds,
        total_seconds=time.perf_counter() - start,
        placement=placement,
    )


def _cache_dir_usable(cache_dir: str | Path | None, warn: Warn) -> bool:
    """Whether the cache can be written: found now, not after minutes of calibration (the output matters more)."""
    if cache_dir is None:
        return False
    if problem := cache_dir_problem(Path(cache_dir)):
        warn(f"the calibration cache will not be written: {problem} (--cache-dir DIR chooses another)")
        return False
    return True


def _calibration_images(model: Any, onnx_path: str | Path, options: CalibrationOptions, warn: Warn) -> CalibrationSet:
    """The images to calibrate ``model`` on, once it is checked to be a resnet-deploy FP32 export."""
    metadata = _check_fp32_export(model, onnx_path)
    calib = load_calibration_set(metadata, options.data, options.count)
    if calib.fallback:
        warn(
            f"{onnx_path} records no training dataset (random weights?): calibrating on the embedded {calib.spec} "
            "images; calibration data should match what the model will see in deployment (--data SPEC)"
        )
    return calib


def _check_fp32_export(model: Any, onnx_path: str | Path) -> ArtifactMetadata:
    metadata = check_graph_matches_metadata(model, source=str(onnx_path))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise QuantizationError(f"{onnx_path} is already quantized; calibrate the FP32 export instead")
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise QuantizationError(f"{onnx_path} is FP16; calibrate the FP32 export instead")
    return metadata


def _cache_entry(
    onnx_path: str | Path, calib: CalibrationSet, options: CalibrationOptions, target: str, writable: bool
) -> _CacheEntry:
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
    return _CacheEntry(cal_id, model_sha256, directory, writable, description)


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


def _quantize(model: Any, onnx_path: str | Path, ranges: Ranges, target: str) -> tuple[Any, dict[str, int]]:
    """The INT8 model (``model`` itself, rewritten, for TensorRT) and the Q/DQ placement counts."""
    if target == "tensorrt":
        amax = {name: max(abs(low), abs(high)) for name, (low, high) in ranges.items()}
        return model, insert_tensorrt_qdq(model, amax).to_dict()
    return quantize_for_cpu(onnx_path, ranges), {}


def _int8_props(target: str, method: str, cache: _CacheEntry, calib: CalibrationSet) -> dict[str, str]:
    """What the INT8 model records on top of its source's metadata."""
    return {
        "precision": "int8",
        "quantization": "qdq-tensorrt" if target == "tensorrt" else "qdq-onnxruntime-cpu",
        "calibration_id": cache.cal_id,
        "calibration_method": method,
        "calibration_images": str(calib.count),
        "calibration_dataset": calib.spec,
        "source_onnx_sha256": cache.model_sha256,
    }


def _replace_props(model: Any, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _save_checked(model: Any, output: Path) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise QuantizationError(f"the quantized graph failed onnx.checker ({str(exc).splitlines()[0]})") from exc
    with atomic_output(output) as tmp:
        onnx.save(model, str(tmp))
