"""Content-addressed calibration cache: ``<dir>/<id>.json`` (ranges) and ``<id>.calib.cache`` (TensorRT).

The id hashes (source ONNX sha256, calibration pixels sha256, method, its parameters, symmetry),
so a rerun with the same model and data costs no calibration time, and anything that changes the
result changes the id. The TensorRT file is the text format of ``IInt8Calibrator::writeCalibrationCache``
(header line, then ``tensor: <float32 scale as big-endian hex>``), so TensorRT <= 10 can build an
implicit-INT8 engine (e.g. for DLA on Jetson) from the FP32 ONNX and this file, without the images.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

from resnet_deploy._io import check_writable, write_bytes_atomic
from resnet_deploy.errors import OutputPathError

FORMAT = "resnet-deploy-calibration/1"
QMAX = 127


def calibration_id(model_sha256: str, data_sha256: str, method: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"model": model_sha256, "data": data_sha256, "method": method, **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def trt_version_tag(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION: 8.6.1 -> 8601 (8.x), 10.3.0 -> 100300 (10.x and later)."""
    major, minor, patch = (int(p) for p in [*version.split("."), "0", "0"][:3])
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def cache_header(trt_version: str, algorithm: str) -> str:
    """First line of a TensorRT calibration cache: TensorRT checks the version tag and the calibrator."""
    return f"TRT-{trt_version_tag(trt_version)}-{algorithm}"


def tensorrt_cache_text(ranges: dict[str, tuple[float, float]], method: str, trt_version: str = "10.3.0") -> str:
    algorithm = "EntropyCalibration2" if method == "entropy" else "MinMaxCalibration"
    lines = [cache_header(trt_version, algorithm)]
    for name in sorted(ranges):
        amax = max(abs(ranges[name][0]), abs(ranges[name][1]))
        scale = max(amax, 1e-8) / QMAX
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def read_cached(directory: Path, cal_id: str) -> dict[str, tuple[float, float]] | None:
    path = directory / f"{cal_id}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            return None
        return {k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # a damaged cache entry is recomputed and rewritten


def cache_dir_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot hold cache entries (checked before calibrating), or None."""
    if directory.exists() and not directory.is_dir():
        return f"{directory} is a file, not a directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        check_writable(directory / "probe")
    except OutputPathError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot create {directory} ({exc.strerror})"
    return None


def write_cache(
    directory: Path,
    cal_id: str,
    ranges: dict[str, tuple[float, float]],
    description: dict[str, Any],
    *,
    symmetric: bool,
    method: str,
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "id": cal_id,
        **description,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ranges": {k: [v[0], v[1]] for k, v in sorted(ranges.items())},
    }
    written = [write_bytes_atomic(directory / f"{cal_id}.json", json.dumps(payload, indent=1).encode())]
    if symmetric:
        text = tensorrt_cache_text(ranges, method)
        written.append(write_bytes_atomic(directory / f"{cal_id}.calib.cache", text.encode()))
    return written
