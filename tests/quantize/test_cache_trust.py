"""A calibration-cache entry is a hit only when whole: its ``.json`` of this id and the exact
``.calib.cache`` it records. Half an entry (a full disk, a crash between the two files, a truncated
or foreign file) is a miss, and the next calibration writes the entry again, whole."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from resnet_deploy import _io
from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.quantize.cache import read_cached, write_cache
from resnet_deploy.quantize.calibrate import calibrate_onnx

CAL_ID = "0123456789abcdef01234567"
RANGES = {"conv1": (-1.5, 2.0), "fc": (-0.25, 0.5)}


def write(directory: Path, symmetric: bool = True, ranges: dict[str, tuple[float, float]] = RANGES) -> None:
    write_cache(directory, CAL_ID, ranges, {"method": "minmax"}, symmetric=symmetric, method="minmax")


def index_of(directory: Path) -> Path:
    return directory / f"{CAL_ID}.json"


def trt_of(directory: Path) -> Path:
    return directory / f"{CAL_ID}.calib.cache"


def edit_index(directory: Path, change) -> None:
    data = json.loads(index_of(directory).read_text())
    change(data)
    index_of(directory).write_text(json.dumps(data))


@pytest.mark.parametrize("symmetric", [True, False], ids=["tensorrt", "cpu"])
def test_a_whole_entry_is_a_hit(tmp_path: Path, symmetric: bool) -> None:
    write(tmp_path, symmetric)
    assert read_cached(tmp_path, CAL_ID) == RANGES
    assert trt_of(tmp_path).exists() == symmetric


def _replace_with_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _set(key: str, value: object):
    return lambda data: data.__setitem__(key, value)


DAMAGE = {
    "json-without-calib-cache": lambda d: trt_of(d).unlink(),
    "calib-cache-without-json": lambda d: index_of(d).unlink(),
    "json-truncated": lambda d: index_of(d).write_bytes(index_of(d).read_bytes()[:40]),
    "json-empty": lambda d: index_of(d).write_bytes(b""),
    "json-not-an-object": lambda d: index_of(d).write_text("[1, 2]"),
    "calib-cache-truncated": lambda d: trt_of(d).write_bytes(trt_of(d).read_bytes()[:-5]),
    "calib-cache-empty": lambda d: trt_of(d).write_bytes(b""),
    "calib-cache-same-size-other-bytes": lambda d: trt_of(d).write_bytes(
        trt_of(d).read_bytes().replace(b"conv1", b"convX")
    ),
    "calib-cache-a-directory": lambda d: _replace_with_directory(trt_of(d)),
    "record-missing": lambda d: edit_index(d, lambda data: data.pop("calib_cache")),
    "record-says-none-for-tensorrt": lambda d: edit_index(d, _set("calib_cache", None)),
    "record-wrong-size": lambda d: edit_index(d, lambda data: data["calib_cache"].__setitem__("bytes", 3)),
    "record-wrong-sha256": lambda d: edit_index(d, lambda data: data["calib_cache"].__setitem__("sha256", "0" * 64)),
    "record-wrong-type": lambda d: edit_index(d, _set("calib_cache", "yes")),
    "another-id": lambda d: edit_index(d, _set("id", "f" * 24)),
    "ranges-wrong-types": lambda d: edit_index(d, _set("ranges", {"conv1": ["-1", "2"]})),
    "ranges-missing": lambda d: edit_index(d, lambda data: data.pop("ranges")),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_half_or_damaged_entry_is_a_miss(tmp_path: Path, damage: str) -> None:
    write(tmp_path)
    DAMAGE[damage](tmp_path)
    assert read_cached(tmp_path, CAL_ID) is None


def test_a_cpu_entry_with_a_stray_record_of_a_calib_cache_is_a_miss(tmp_path: Path) -> None:
    write(tmp_path, symmetric=False)
    edit_index(tmp_path, _set("calib_cache", {"sha256": "0" * 64, "bytes": 0}))
    assert read_cached(tmp_path, CAL_ID) is None


def test_the_json_lands_after_the_calib_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    landed: list[str] = []
    real = os.replace

    def recording(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real(src, dst)
        landed.append(Path(dst).name)

    monkeypatch.setattr(_io.os, "replace", recording)
    write(tmp_path)
    assert landed == [f"{CAL_ID}.calib.cache", f"{CAL_ID}.json"]


@pytest.mark.parametrize("stale_json", [False, True], ids=["fresh", "over-a-stale-json"])
def test_a_crash_between_the_two_renames_leaves_no_hit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stale_json: bool
) -> None:
    if stale_json:  # an older, mismatched entry of the same id is being replaced
        write(tmp_path, ranges={"conv1": (-9.0, 9.0)})
        trt_of(tmp_path).unlink()
    real = os.replace

    def failing_on_the_index(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith(".json"):
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(_io.os, "replace", failing_on_the_index)
    with pytest.raises(ResnetDeployError, match="cannot write"):
        write(tmp_path)
    assert trt_of(tmp_path).exists()  # the first file landed, its index did not
    assert read_cached(tmp_path, CAL_ID) is None
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_while_writing_the_json_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.write_bytes

    def full_on_the_second(self: Path, data: bytes) -> int:
        if self.name.startswith(f".{CAL_ID}.json."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_on_the_second)
    with pytest.raises(ResnetDeployError, match="disk is full"):
        write(tmp_path)
    assert read_cached(tmp_path, CAL_ID) is None
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def export(resnet20_export) -> Path:
    return resnet20_export[1].path


def calibrate(export: Path, tmp_path: Path, name: str):
    return calibrate_onnx(export, tmp_path / name, method="minmax", count=16, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("damage", ["json-without-calib-cache", "calib-cache-without-json", "calib-cache-truncated"])
def test_a_half_entry_is_recalibrated_and_rewritten_whole(export: Path, tmp_path: Path, damage: str) -> None:
    first = calibrate(export, tmp_path, "a.onnx")
    directory = tmp_path / "c"
    whole = {p.name: p.read_bytes() for p in directory.iterdir()}
    json_name, trt_name = f"{first.calibration_id}.json", f"{first.calibration_id}.calib.cache"
    assert sorted(whole) == sorted([json_name, trt_name])
    {
        "json-without-calib-cache": lambda: (directory / trt_name).unlink(),
        "calib-cache-without-json": lambda: (directory / json_name).unlink(),
        "calib-cache-truncated": lambda: (directory / trt_name).write_bytes(whole[trt_name][:-3]),
    }[damage]()
    again = calibrate(export, tmp_path, "b.onnx")
    assert not again.cache_hit and again.calibration_id == first.calibration_id
    assert (directory / trt_name).read_bytes() == whole[trt_name]
    rewritten = json.loads((directory / json_name).read_text())
    assert rewritten["ranges"] == json.loads(whole[json_name])["ranges"]
    assert rewritten["calib_cache"]["bytes"] == len(whole[trt_name])
    assert calibrate(export, tmp_path, "c.onnx").cache_hit
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_a_calibration_whose_index_write_fails_leaves_no_hit(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.replace

    def failing_on_the_index(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith(".json") and Path(dst).parent == tmp_path / "c":
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(_io.os, "replace", failing_on_the_index)
        first = calibrate(export, tmp_path, "a.onnx")  # the cache failure only warns
    assert (tmp_path / "a.onnx").exists() and not first.cache_hit
    assert not (tmp_path / "c" / f"{first.calibration_id}.json").exists()
    second = calibrate(export, tmp_path, "b.onnx")
    assert not second.cache_hit
    assert calibrate(export, tmp_path, "c.onnx").cache_hit
