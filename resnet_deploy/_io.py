"""Atomic file output: an artifact is either complete at its path or absent, never half-written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from resnet_deploy.errors import OutputPathError


def check_writable(path: str | os.PathLike[str], field: str = "output") -> Path:
    """Fail early, before any expensive work, when ``path`` cannot be written (``field``: the parameter that
    names it, for the message)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(
            f"output path {path} is a directory; give a file name, e.g. {path}/model.onnx", field=field
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputPathError(
            f"output directory {parent} does not exist; create it first (mkdir -p {parent})", field=field
        )
    _check_directory(parent, f"cannot write {path}", field)
    return path


def check_creatable(path: str | os.PathLike[str], field: str = "output") -> Path:
    """Fail early when ``path``, in a directory the work will make (a run directory), cannot be written:
    its nearest existing ancestor must be a directory we can write in."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"output path {path} is a directory; give another name", field=field)
    ancestor = path.parent if str(path.parent) else Path(".")
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    _check_directory(ancestor, f"cannot create {path.parent}", field)
    return path


def _check_directory(directory: Path, doing: str, field: str) -> None:
    if not directory.is_dir():
        raise OutputPathError(f"{doing}: {directory} is not a directory; choose another `{field}`", field=field)
    try:  # a real probe: os.access is wrong for root, read-only mounts and pseudo file systems
        fd, probe = tempfile.mkstemp(prefix=temporary_prefix("write-check"), suffix=".probe", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(
            f"{doing}: directory {directory} is not writable ({exc.strerror}); choose another `{field}`", field=field
        ) from None


# Temporary files are ".NAME.<host>-<pid>.<random>.tmp" beside their target: on the same host, the
# pid tells a later run whether the writer is still alive (a concurrent write: kept) or was killed
# (-9, power loss: its leftovers are removed). Writers on other hosts (NFS) are never judged. Names
# of older versions (".NAME.<8 random>.tmp") are removed once a day old.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TMP = re.compile(
    r"^\.(?P<name>.+?)\.(?:(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[A-Za-z0-9_]{8}|(?P<old>[A-Za-z0-9_]{8}))\.(?:tmp|probe)$"
)
_OLD_TMP_SECONDS = 24 * 3600


def temporary_prefix(name: str) -> str:
    return f".{name}.{_HOST}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temporaries(directory: Path, name: str | None = None) -> list[Path]:
    """Delete temporaries of killed writers in ``directory`` (of ``name`` only, when given)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TMP.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        pid = match["pid"]
        if pid is not None and (match["host"] != _HOST or int(pid) == os.getpid()):
            continue  # another host's writer, or our own
        try:
            stale = (not _alive(int(pid))) if pid else now - entry.stat().st_mtime > _OLD_TMP_SECONDS
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)  # about the output, wherever raised


def _write_error(
    path: Path | list[Path], exc: BaseException, landed: list[Path], renaming: bool = False
) -> OutputPathError | None:
    """A failed write as one line naming the file(s), or None for errors that are not about writing
    (an input that cannot be read inside the ``with`` block keeps its own error)."""
    where = " / ".join(str(p) for p in path) if isinstance(path, list) else str(path)
    if isinstance(exc, OSError) and not renaming and exc.errno not in _WRITE_ERRNOS:
        return None
    outcome = (
        f"{', '.join(map(str, landed))} was replaced without it (readers refuse the pair: write it again)"
        if landed
        else "nothing was written there"
    )
    if isinstance(exc, OSError) and exc.errno is not None:
        hint = {
            errno.ENOSPC: "the disk is full; free space or choose another output path",
            errno.EDQUOT: "the disk quota is exhausted; free space or choose another output path",
            errno.EROFS: "the file system is read-only; choose another output path",
            errno.EACCES: "permission denied; choose another output path",
        }.get(exc.errno, "choose another output path")
        return OutputPathError(f"cannot write {where}: {exc.strerror or exc} ({hint}); {outcome}")
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("unexpected pos" in text or "PytorchStreamWriter failed" in text):
        # torch.save's zip writer reports a short write (disk full, quota) this way
        return OutputPathError(
            f"cannot write {where}: the write was cut short (disk full?); free space or choose another output path; "
            f"{outcome}"
        )
    return None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    A write that fails for lack of space or permission is an :class:`OutputPathError` naming ``path``.
    """
    with atomic_outputs(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Temporaries for files that belong together, renamed in the order given once all are written.

    Put the described file first and its description (sidecar, metadata: naming the first one's
    sha256) last: a crash between the renames leaves a description that does not match, which
    readers refuse, never a description of bytes that did not land.
    """
    targets = [check_writable(p) for p in paths]
    temporaries: list[Path] = []
    try:
        for target in targets:
            remove_stale_temporaries(target.parent, target.name)
            fd, name = tempfile.mkstemp(prefix=temporary_prefix(target.name), suffix=".tmp", dir=target.parent)
            os.close(fd)
            temporaries.append(Path(name))
        yield tuple(temporaries)
    except BaseException as exc:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        failure = _write_error(targets[0] if len(targets) == 1 else targets, exc, landed=[])
        if failure is not None:
            raise failure from None
        raise
    landed: list[Path] = []
    try:
        for tmp, target in zip(temporaries, targets, strict=True):
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            landed.append(target)
    except BaseException as exc:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        failure = _write_error(targets[len(landed)], exc, landed, renaming=True)
        if failure is not None:
            raise failure from None
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_report(stem: str | os.PathLike[str], result: object, text: str) -> tuple[Path, Path]:
    """A benchmark's result as ``STEM.json`` and its text report as ``STEM.txt``, each atomically."""

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path = write_bytes_atomic(stem.with_suffix(".json"), (json.dumps(result, indent=2) + "\n").encode())
    text_path = write_bytes_atomic(stem.with_suffix(".txt"), (text + "\n").encode())
    return json_path, text_path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_SHA256: dict[tuple[str, int, int, int], str] = {}  # (real path, inode, size, mtime ns) -> digest
_MEMO_BYTES = 16 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The file's sha256, read once per process while the file is unchanged: a command checks one
    checkpoint's identity in several places (plan, export, load), and a ResNet-152 is 230 MB."""
    info = os.stat(path)
    key = (os.path.realpath(path), info.st_ino, info.st_size, info.st_mtime_ns)
    if key in _SHA256:
        return _SHA256[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if info.st_size >= _MEMO_BYTES:  # small files are cheap to re-read, and could be rewritten within a timestamp tick
        _SHA256[key] = digest.hexdigest()
    return digest.hexdigest()


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
