"""Implicit INT8 on TensorRT 8.6-10.x from a calibration cache (what DLA on JetPack 5/6 still uses).

The cache is the ``<id>.calib.cache`` that ``resnet-deploy calibrate`` writes: TensorRT reads the
scales through a calibrator that has no images (``get_batch`` returns None at once). The header is
rewritten for the installed TensorRT version; the scales themselves do not depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_deploy.engine.backends import Backend
from resnet_deploy.engine.options import BuildOptionError


def cache_calibrator(backend: Backend, cache_path: Path) -> Any:
    from resnet_deploy.quantize.cache import cache_header

    trt = backend.module
    if backend.strongly_typed_only:  # TensorRT 11 and TensorRT-RTX: no INT8 flag, no calibrators
        raise BuildOptionError(
            f"--implicit needs TensorRT 8.6-10.x; {backend.name} {backend.version} builds explicit INT8 only "
            "(drop --implicit: --int8 builds from the Q/DQ ONNX)"
        )
    if not cache_path.is_file():
        raise BuildOptionError(f"--calib-cache {cache_path} not found (written by `resnet-deploy calibrate`)")
    lines = cache_path.read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-") or lines[0].count("-") < 2:
        raise BuildOptionError(f"{cache_path} is not a TensorRT calibration cache (first line {lines[:1]})")
    algorithm = lines[0].split("-", 2)[2]
    header = cache_header(backend.version, algorithm)  # retagged for the TensorRT that builds
    data = "\n".join([header, *lines[1:]]).encode() + b"\n"
    base = trt.IInt8EntropyCalibrator2 if algorithm == "EntropyCalibration2" else trt.IInt8MinMaxCalibrator

    class FromCache(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            base.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None  # no images: everything comes from the cache

        def read_calibration_cache(self) -> bytes:
            return data

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return FromCache()
