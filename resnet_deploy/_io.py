"""Atomic file output: an artifact is either complete at its path or absent, never half-written.

Files that belong together (a checkpoint and its metadata, an engine and its sidecar) are renamed
under a journal: a process killed between their renames is finished by the next reader or writer
of that directory, so nobody sees one file of the new write beside one of the old.
"""

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


# The journal of files renamed together: ".FIRST.<host>-<pid>.<random>.commit", the JSON list of the
# temporaries to rename, in order; written (and synced) after all of them are, removed after the renames.
_JOURNAL = re.compile(r"^\.(?P<name>.+?)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.commit$")

_FAULT_ENV = "RESNET_DEPLOY_FAULT_AT"  # tests only: die (os._exit(137), as kill -9) just before write boundary N
_fault_at = int(os.environ.get(_FAULT_ENV, "0")) if os.environ.get(_FAULT_ENV, "").isdigit() else 0
_boundaries_passed = 0


def die_at_write_boundary(boundary: int) -> None:
    """Tests only (as ``RESNET_DEPLOY_FAULT_AT``): this process dies just before its ``boundary``-th
    write boundary from now (a temporary created, synced, a journal written, a rename, a directory synced)."""
    global _fault_at, _boundaries_passed
    _fault_at, _boundaries_passed = boundary, 0


def _write_boundary() -> None:
    global _boundaries_passed
    if _fault_at:
        _boundaries_passed += 1
        if _boundaries_passed >= _fault_at:
            os._exit(137)


def temporary_prefix(name: str) -> str:
    return f".{name}.{_HOST}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a pid no process can have
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _killed_here(host: str, pid: str) -> bool:
    """Whether the writer ``host``-``pid`` was on this host and is dead (never this process)."""
    return host == _HOST and int(pid) != os.getpid() and not _alive(int(pid))


def finish_interrupted_writes(directory: str | os.PathLike[str]) -> list[Path]:
    """Finish the renames of writers killed between them, as their journals in ``directory`` list, so
    a reader sees the files they wrote together whole (a journal cut short: no rename had begun, and
    nothing is done). Returns the files landed. Best effort: a directory that cannot be changed is left."""
    directory = Path(directory)
    landed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return landed
    for entry in entries:
        match = _JOURNAL.match(entry.name)
        if match and _killed_here(match["host"], match["pid"]):
            landed += _roll_forward(Path(entry.path), f"{match['host']}-{match['pid']}")
    if landed:
        sync_directory(directory)
    return landed


def _journal_renames(journal: Path, writer: str) -> list[tuple[str, str]]:
    """The renames ``journal`` lists, (temporary, target) in order: only ``writer``'s temporaries beside it
    onto their own names; [] for a journal cut short or one that lists anything else."""
    try:
        names = json.loads(journal.read_bytes())
    except (OSError, ValueError, RecursionError):
        return []
    renames: list[tuple[str, str]] = []
    for name in names if isinstance(names, list) else [None]:
        target = _target_of(name, writer)
        if target is None:
            return []
        renames.append((str(name), target))
    return renames


def _target_of(name: object, writer: str) -> str | None:
    """The file ``name`` is a temporary of, when it is a bare name of one of ``writer``'s temporaries."""
    if not isinstance(name, str) or not name.endswith(".tmp") or "\0" in name or Path(name).name != name:
        return None
    match = _TMP.match(name)
    return match["name"] if match and f"{match['host']}-{match['pid']}" == writer else None


def _roll_forward(journal: Path, writer: str) -> list[Path]:
    landed: list[Path] = []
    for temporary, target in _journal_renames(journal, writer):
        try:
            os.replace(journal.with_name(temporary), journal.with_name(target))
        except FileNotFoundError:
            continue  # renamed before the process died
        except OSError:
            return landed  # a directory we may not change: the journal stays for a writer
        landed.append(journal.with_name(target))
    with contextlib.suppress(OSError):
        journal.unlink()
    return landed


def remove_stale_temporaries(directory: Path, name: str | None = None) -> list[Path]:
    """Delete temporaries of killed writers in ``directory`` (of ``name`` only, when given), once the
    renames they had begun are finished (:func:`finish_interrupted_writes`)."""
    removed: list[Path] = []
    finish_interrupted_writes(directory)
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
    (an input that cannot be read inside the ``with`` block keeps its own error; ``renaming``: the error
    came from syncing or renaming our own temporaries, so it is about the output whatever it is)."""
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
    """Temporaries for files that belong together, renamed in the order given once all are written and synced.

    Put the described file first and its description (sidecar, metadata: naming the first one's
    sha256) last. Files in one directory are renamed under a journal: a process killed between the
    renames is finished by the next reader or writer there (:func:`finish_interrupted_writes`). A rename
    that fails with an error leaves a description that does not match, which readers refuse, never a
    description of bytes that did not land.
    """
    targets = [check_writable(p) for p in paths]
    temporaries: list[Path] = []
    try:
        for target in targets:
            remove_stale_temporaries(target.parent, target.name)
            _write_boundary()
            fd, name = tempfile.mkstemp(prefix=temporary_prefix(target.name), suffix=".tmp", dir=target.parent)
            os.close(fd)
            temporaries.append(Path(name))
        yield tuple(temporaries)
    except BaseException as exc:
        _discard(temporaries)
        failure = _write_error(targets[0] if len(targets) == 1 else targets, exc, landed=[])
        if failure is not None:
            raise failure from None
        raise
    _commit(targets, temporaries)


def _commit(targets: list[Path], temporaries: list[Path]) -> None:
    """Sync the temporaries, journal them (several files), rename them in order, sync their directories."""
    landed: list[Path] = []
    journal: Path | None = None
    try:
        for tmp in temporaries:
            _write_boundary()
            os.chmod(tmp, 0o644)
            _sync_file(tmp)
        journal = _write_journal(targets[0], temporaries)
        for tmp, target in zip(temporaries, targets, strict=True):
            _write_boundary()
            os.replace(tmp, target)
            landed.append(target)
    except BaseException as exc:
        _discard([*temporaries, *([journal] if journal else [])])
        failure = _write_error(targets[min(len(landed), len(targets) - 1)], exc, landed, renaming=True)
        if failure is not None:
            raise failure from None
        raise
    for directory in dict.fromkeys(target.parent for target in targets):
        _write_boundary()
        sync_directory(directory)
    if journal is not None:
        _write_boundary()
        with contextlib.suppress(OSError):
            journal.unlink()


def _write_journal(first: Path, temporaries: list[Path]) -> Path | None:
    """The journal of ``temporaries`` (synced, with its directory entry) before any is renamed; None for
    one file (its rename is atomic) or files in several directories (renamed in order, unjournalled)."""
    directory = temporaries[0].parent
    if len(temporaries) < 2 or any(tmp.parent != directory for tmp in temporaries):
        return None
    _write_boundary()
    fd, name = tempfile.mkstemp(prefix=temporary_prefix(first.name), suffix=".commit", dir=directory)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps([tmp.name for tmp in temporaries]).encode())
        fh.flush()
        _write_boundary()
        os.fsync(fh.fileno())
    _write_boundary()
    sync_directory(directory)
    return Path(name)


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)  # some systems sync only what is open for writing
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(directory: Path) -> None:
    """Make renames and new names in ``directory`` durable; best effort (some file systems refuse)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


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
