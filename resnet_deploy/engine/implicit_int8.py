"""Implicit INT8 on TensorRT 8.6-10.x from a calibration cache (what DLA on JetPack 5/6 still uses).

The cache is the ``<id>.calib.cache`` that ``resnet-deploy calibrate`` writes: TensorRT reads the
scales through a calibrator that has no images (``get_batch`` returns None at once). The header is
rewritten for the installed TensorRT version; the scales themselves do not depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_deploy.errors import BuildOptionError
from resnet_deploy.quantize.cache import cache_header
from resnet_deploy.trt.flavours import EngineBackend

CALIBRATORS = {"EntropyCalibration2": "IInt8EntropyCalibrator2", "MinMaxCalibration": "IInt8MinMaxCalibrator"}


def read_cache(cache_path: Path, *, dla: bool = False) -> tuple[str, list[str]]:
    """(algorithm, scale lines) of a calibration cache ``resnet-deploy calibrate`` wrote; refused with one
    line when it is not one, names an algorithm we did not write, or (``dla``) is not EntropyCalibration2."""
    if not cache_path.is_file():
        raise BuildOptionError(
            f"`calib_cache={cache_path}` not found (written by `resnet-deploy calibrate`)", field="calib_cache"
        )
    lines = cache_path.read_text(errors="replace").splitlines()
    if not lines or not lines[0].startswith("TRT-") or lines[0].count("-") < 2:
        raise BuildOptionError(f"{cache_path} is not a TensorRT calibration cache (first line {lines[:1]})")
    algorithm = lines[0].split("-", 2)[2]
    if algorithm not in CALIBRATORS:
        raise BuildOptionError(
            f"{cache_path} is a {algorithm} cache; `implicit` reads the EntropyCalibration2 or MinMaxCalibration "
            "caches that `resnet-deploy calibrate` writes: recalibrate with it",
            field="implicit",
        )
    if dla and algorithm != "EntropyCalibration2":
        raise BuildOptionError(
            f"{cache_path} is a {algorithm} cache, but DLA takes EntropyCalibration2 scales only: "
            "recalibrate with calibrate's `calibration.method=entropy` (its default)",
            field="calibration.method",
        )
    return algorithm, lines[1:]


def cache_calibrator(backend: EngineBackend, cache_path: Path, *, dla: bool = False) -> Any:
    """A calibrator of the cache's own algorithm that hands TensorRT the cache and no images
    (``check_combination`` has made sure the release has calibrators)."""

    trt = backend.module
    algorithm, scales = read_cache(cache_path, dla=dla)
    header = cache_header(backend.version, algorithm)  # retagged for the TensorRT that builds
    data = "\n".join([header, *scales]).encode() + b"\n"
    base = getattr(trt, CALIBRATORS[algorithm])

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
