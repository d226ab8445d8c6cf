"""``calibrate``: FP32 ONNX + calibration images -> INT8 Q/DQ ONNX for TensorRT or ONNX Runtime CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy._io import atomic_output, check_writable, sha256_file
from resnet_deploy.errors import QuantizationError, ResnetDeployError

TARGETS = ("tensorrt", "cpu")
RANGES_ALGORITHM = 2  # 1: ORT's collectors and signed entropy; 2: TensorRT-style |x| histograms (ranges.py)


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


def calibrate_onnx(
    onnx_path: str | Path,
    output: str | Path,
    *,
    target: str = "tensorrt",
    method: str = "entropy",
    percentile: float = 99.99,
    data: str | None = None,
    count: int = 512,
    cache_dir: str | Path | None = "calibration",
    warn: Callable[[str], None] = lambda message: None,
) -> CalibrateResult:
    import onnx

    from resnet_deploy.metadata import check_graph_matches_metadata, load_onnx, onnx_props
    from resnet_deploy.quantize.cache import cache_dir_problem, calibration_id, read_cached, write_cache
    from resnet_deploy.quantize.calib_data import load_calibration_set
    from resnet_deploy.quantize.ranges import METHODS, compute_ranges

    start = time.perf_counter()
    if target not in TARGETS:
        raise QuantizationError(f"unknown target {target!r}; choose tensorrt or cpu")
    if method not in METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    output = check_writable(output)
    writable_cache = cache_dir is not None
    if cache_dir is not None and (problem := cache_dir_problem(Path(cache_dir))):
        # found now, not after minutes of calibration; the output matters more than the cache
        warn(f"the calibration cache will not be written: {problem} (--cache-dir DIR chooses another)")
        writable_cache = False
    model = load_onnx(onnx_path)  # loaded once: metadata, checks, ranges and the Q/DQ graph all use it
    metadata = check_graph_matches_metadata(model, source=str(onnx_path))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise QuantizationError(f"{onnx_path} is already quantized; calibrate the FP32 export instead")
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise QuantizationError(f"{onnx_path} is FP16; calibrate the FP32 export instead")
    calib = load_calibration_set(metadata, data, count)
    if calib.fallback:
        warn(
            f"{onnx_path} records no training dataset (random weights?): calibrating on the embedded {calib.spec} "
            "images; calibration data should match what the model will see in deployment (--data SPEC)"
        )
    symmetric = target == "tensorrt"
    if target == "tensorrt":
        from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors

        tensors: list[str] = qdq_tensors(model)  # only what gets a Q/DQ pair
        aliases: dict[str, str] = {}
    else:
        from resnet_deploy.quantize.cpu_qdq import cpu_calibration_tensors

        tensors, aliases = cpu_calibration_tensors(model)  # what ORT's quantizer reads
    params = {
        "algorithm": RANGES_ALGORITHM,  # a new algorithm must not reuse the old one's cached ranges
        "symmetric": symmetric,
        "tensors": "qdq" if target == "tensorrt" else "ort-qdq",
        **({"percentile": percentile} if method == "percentile" else {}),
    }
    model_sha256 = sha256_file(onnx_path)
    cal_id = calibration_id(model_sha256, calib.sha256, method, params)
    directory = Path(cache_dir) if cache_dir is not None else None
    ranges = read_cached(directory, cal_id) if directory is not None else None
    cache_hit = ranges is not None
    cal_start = time.perf_counter()
    if ranges is None:
        ranges = compute_ranges(
            model, calib.batches, method=method, symmetric=symmetric, percentile=percentile, tensors=tensors
        )
        ranges.update({alias: ranges[source] for alias, source in aliases.items() if source in ranges})
    cal_seconds = time.perf_counter() - cal_start
    cache_files: list[Path] = []
    if directory is not None:
        description = {
            "model_sha256": model_sha256,
            "model": Path(onnx_path).name,
            "data_sha256": calib.sha256,
            "dataset": calib.spec,
            "images": calib.count,
            "method": method,
            **params,
        }
        if not cache_hit and writable_cache:
            try:
                write_cache(directory, cal_id, ranges, description, symmetric=symmetric, method=method)
            except (OSError, ResnetDeployError) as exc:
                warn(f"the calibration cache was not written ({exc}); the INT8 model is written anyway")
        cache_files = [p for p in (directory / f"{cal_id}.json", directory / f"{cal_id}.calib.cache") if p.exists()]

    placement: dict[str, int] = {}
    if target == "tensorrt":
        from resnet_deploy.quantize.qdq_tensorrt import insert_tensorrt_qdq

        amax = {name: max(abs(low), abs(high)) for name, (low, high) in ranges.items()}
        placement = insert_tensorrt_qdq(model, amax).to_dict()
        quantized = model
    else:
        from resnet_deploy.quantize.cpu_qdq import quantize_for_cpu

        quantized = quantize_for_cpu(onnx_path, ranges)
    props = onnx_props(model)
    props.update(
        {
            "precision": "int8",
            "quantization": "qdq-tensorrt" if target == "tensorrt" else "qdq-onnxruntime-cpu",
            "calibration_id": cal_id,
            "calibration_method": method,
            "calibration_images": str(calib.count),
            "calibration_dataset": calib.spec,
            "source_onnx_sha256": model_sha256,
        }
    )
    del quantized.metadata_props[:]
    for key, value in props.items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(quantized, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise QuantizationError(f"the quantized graph failed onnx.checker ({str(exc).splitlines()[0]})") from exc
    with atomic_output(output) as tmp:
        onnx.save(quantized, str(tmp))
    return CalibrateResult(
        path=output,
        target=target,
        method=method,
        calibration_id=cal_id,
        images=calib.count,
        dataset=calib.spec,
        cache_hit=cache_hit,
        cache_files=cache_files,
        calibrate_seconds=cal_seconds,
        total_seconds=time.perf_counter() - start,
        placement=placement,
    )
