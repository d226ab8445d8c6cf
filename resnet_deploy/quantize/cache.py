"""Content-addressed calibration cache: ``<dir>/<id>.json`` (ranges) and ``<id>.calib.cache`` (TensorRT).

The id hashes (source ONNX sha256, calibration pixels sha256, method, its parameters, symmetry),
so a rerun with the same model and data costs no calibration time, and anything that changes the
result changes the id. The TensorRT file is the text format of ``IInt8Calibrator::writeCalibrationCache``
(header line, then ``tensor: <float32 scale as big-endian hex>``), so TensorRT <= 10 can build an
implicit-INT8 engine (e.g. for DLA on Jetson) from the FP32 ONNX and this file, without the images.

The ``.json`` is the entry's index: it records the ``.calib.cache`` it belongs to (``calib_cache``: its
``sha256`` and ``bytes``, or null for an asymmetric, CPU-target entry that has none) and is renamed into
place after it (a writer killed between the two renames is finished by the next read:
``_io.finish_interrupted_writes``). An entry is a hit only when the ``.json`` is whole (it carries the
sha256 of its own fields, so a bit flipped in a range is caught), of this id, and its ``.calib.cache`` is
there with exactly the recorded bytes; anything less (half an entry left by a full disk, a truncated or
foreign file, an entry that records no ``calib_cache``) is a miss, and the next calibration writes the
entry again, whole.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

from resnet_deploy._io import atomic_outputs, check_writable, finish_interrupted_writes
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
    """The ranges of entry ``cal_id`` when it is whole; None (a miss: recomputed and rewritten) otherwise."""
    finish_interrupted_writes(directory)  # an entry whose writer was killed between its renames: landed whole
    try:
        data = json.loads((directory / f"{cal_id}.json").read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("id") != cal_id:
        return None
    if data.get("sha256") != _entry_digest(data):  # a bit flipped in a range (6.0 read back as 7.0) is a miss
        return None
    ranges = data.get("ranges")
    if not isinstance(ranges, dict) or not all(_is_range(v) for v in ranges.values()):
        return None
    if "calib_cache" not in data or not _companion_matches(directory / f"{cal_id}.calib.cache", data):
        return None
    return {k: (float(v[0]), float(v[1])) for k, v in ranges.items()}


def _entry_digest(entry: dict[str, Any]) -> str:
    """The sha256 of the entry as written, its own ``sha256`` aside (floats round-trip exactly through JSON)."""
    fields = {k: v for k, v in entry.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _is_range(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    )


def _companion_matches(path: Path, data: dict[str, Any]) -> bool:
    """Whether the ``.calib.cache`` the entry records is there, byte for byte (or, recorded as none, expected)."""
    record = data["calib_cache"]
    if record is None:
        return data.get("symmetric") is False  # a TensorRT (symmetric) entry always has one
    if not isinstance(record, dict):
        return False
    size, digest = record.get("bytes"), record.get("sha256")
    if type(size) is not int or not isinstance(digest, str):
        return False
    try:
        blob = path.read_bytes()
    except OSError:
        return False
    return len(blob) == size and hashlib.sha256(blob).hexdigest() == digest


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
    """Write entry ``cal_id``: the ``.calib.cache`` (symmetric ranges only) lands first, its ``.json`` last."""
    directory.mkdir(parents=True, exist_ok=True)
    trt = tensorrt_cache_text(ranges, method).encode() if symmetric else None
    payload = {
        "format": FORMAT,
        "id": cal_id,
        **description,
        "symmetric": symmetric,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "calib_cache": None if trt is None else {"sha256": hashlib.sha256(trt).hexdigest(), "bytes": len(trt)},
        "ranges": {k: [v[0], v[1]] for k, v in sorted(ranges.items())},
    }
    payload["sha256"] = _entry_digest(payload)
    files = {directory / f"{cal_id}.calib.cache": trt} if trt is not None else {}
    files[directory / f"{cal_id}.json"] = json.dumps(payload, indent=1).encode()
    with atomic_outputs(*files) as temporaries:  # renamed in order: the index last
        for tmp, blob in zip(temporaries, files.values(), strict=True):
            tmp.write_bytes(blob)
    return list(files)
