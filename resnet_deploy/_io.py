"""Atomic file output: an artifact is either complete at its path or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from resnet_deploy.errors import OutputPathError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any expensive work, when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"output path {path} is a directory; give a file name, e.g. {path}/model.onnx")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputPathError(f"output directory {parent} does not exist; create it first (mkdir -p {parent})")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {path}: {parent} is not a directory")
    try:  # a real probe: os.access is wrong for root, read-only mounts and pseudo file systems
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(
            f"cannot write {path}: directory {parent} is not writable ({exc.strerror}); choose another -o/--output"
        ) from None
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it."""
    path = check_writable(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
