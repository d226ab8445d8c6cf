"""The list of images in an ImageFolder tree, cached on disk between runs.

ImageNet's train split is 1.28 M files in 1,000 class folders. Listing it with ``Path.rglob`` and a
``stat`` per file takes tens of seconds on a network file system, every run and every DDP rank.
:func:`scan_folder` walks with :func:`os.scandir` instead (the entry type comes with the listing, no
``stat`` per file) and keeps what it found in
``$RESNET_DEPLOY_CACHE_DIR`` (else ``$XDG_CACHE_HOME/resnet-deploy``, else ``~/.cache/resnet-deploy``)
``/file-index/<first 16 hex of sha256(resolved root)>.json``: every directory walked, its ``st_mtime_ns``,
and its image names. Adding, removing or renaming an entry changes its directory's mtime, so a later
open trusts the cache when every recorded directory still has its mtime: one ``stat`` per directory
(1,000 to 20,000), not one per file. Nothing is ever written inside the data tree.

Racy timestamps (as git's "racy git"): a directory changed within the same timestamp tick as its
recorded mtime would look unchanged. A scan therefore writes no cache when any directory it walked
was modified less than :data:`RACY_SECONDS` before the scan began (or is dated in the future); the
next open scans again. A clock skew between a file server and this host beyond that margin defeats
the rule, as do file systems whose directory mtimes never change (some object-store mounts): pass
``cache=False`` there.

The cache is read as untrusted input: it must carry the sha256 of its directories as written (a byte
flipped in a name is another file, which the unchanged mtimes would not reveal); a directory key must be
``<class>/<name>/...`` below a class folder found now, every image entry a plain name of an image file
(a string, no separator, not ``.``/``..``, no NUL), and every directory below a class folder a real one,
not a symlink (the walk never descends into those). A cache that breaks any rule, or is not the JSON the
walk writes, is discarded without a message and the folder is scanned again (and the cache rewritten),
so no entry can point outside the data tree.

What counts is exactly what ``sorted(Path(root, cls).rglob("*"))`` filtered by suffix and
``is_file()`` gives: files at any depth, hidden ones included; a symlink to a file counts (its
target is checked again on every open, one ``stat`` per symlink, since the target's directory is
not watched); a symlinked sub-directory is not descended into, as ``rglob`` does not (Python
3.10-3.13; checked on 3.11.7); a class folder may itself be a symlink. Order: by path parts, as
``Path`` objects sort (``cat/a/x.jpg`` before ``cat/a-b.jpg``), so seeded shuffles stay put.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any, TypeGuard

from resnet_deploy._io import write_bytes_atomic
from resnet_deploy.errors import DatasetError, OutputPathError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
FORMAT_VERSION = 1
RACY_SECONDS = 2

_SUFFIXES = frozenset(EXTENSIONS)
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # what pathlib's is_dir/is_file read as False

# relative directory ("" the root, "cat", "cat/sub") -> (st_mtime_ns, image files, image-named symlinks)
_Index = dict[str, tuple[int, list[str], list[str]]]


def cache_file(root: Path) -> Path:
    """Where the index of ``root`` is kept."""
    base = os.environ.get("RESNET_DEPLOY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "resnet-deploy"
    )
    key = hashlib.sha256(os.fsencode(str(root.resolve()))).hexdigest()[:16]
    return Path(base, "file-index", f"{key}.json")


def scan_folder(
    root: Path, classes: list[str] | None = None, *, cache: bool = True
) -> tuple[list[str], list[tuple[str, int]]]:
    """The class names (``classes``, else the non-hidden sub-folders of ``root``, sorted) and the
    ``(path, label)`` of every image below them, in ``Path`` order within each class."""
    started = time.time_ns()
    root_mtime, found = _class_folders(root)
    if classes is None:
        classes = found
        if not classes:
            raise DatasetError(f"{root} has no class sub-folders; an ImageFolder tree is PATH/<class>/<image>.jpg")
        if len(classes) < 2:
            raise DatasetError(
                f"{root} has one class folder ({classes[0]}); a classifier needs at least two, one sub-folder per class"
            )
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DatasetError(
                f"{root} has class folders not in the training split: {', '.join(extra[:4])}; "
                "both splits must hold the same classes"
            )
    resolved = root.resolve()
    where = cache_file(root) if cache else None
    if where is not None and where.resolve().is_relative_to(resolved):
        where = None  # a cache inside the tree would change the mtimes it records
    index = _load(where, root, resolved, found) if where is not None else None
    if index is None:
        index, complete = _walk(root, found)
        index[""] = (root_mtime, [], [])
        newest = started - RACY_SECONDS * 1_000_000_000
        if where is not None and complete and all(0 < entry[0] <= newest for entry in index.values()):
            _save(where, {"version": FORMAT_VERSION, "root": str(resolved), "classes": found, "dirs": index})
    samples = _samples(root, found, {name: i for i, name in enumerate(classes)}, index)
    if not samples:
        raise DatasetError(f"{root} holds no images ({', '.join(EXTENSIONS)}) in its class folders")
    return classes, samples


def _is(entry: os.DirEntry[str], directory: bool) -> bool:
    try:
        return entry.is_dir() if directory else entry.is_file()
    except OSError as exc:
        if exc.errno in _MISSING:
            return False
        raise


def _is_file(path: str) -> bool:
    """``Path(path).is_file()``: follows symlinks; missing, dangling or looping is False."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        if exc.errno in _MISSING:
            return False
        raise


def _is_image_name(name: str) -> bool:
    """``Path(name).suffix.lower() in EXTENSIONS`` (``.jpg`` alone has no suffix, ``..jpg`` has)."""
    dot = name.rfind(".")
    return 0 < dot < len(name) - 1 and name[dot:].lower() in _SUFFIXES


def _class_folders(root: Path) -> tuple[int, list[str]]:
    """The root's mtime (taken before listing it) and its non-hidden sub-folders (symlinks followed)."""
    mtime = os.stat(root).st_mtime_ns
    with os.scandir(root) as entries:
        return mtime, sorted(e.name for e in entries if not e.name.startswith(".") and _is(e, directory=True))


def _walk(root: Path, found: list[str]) -> tuple[_Index, bool]:
    """Every directory below the class folders; False when one could not be read (permissions change
    no mtime, so such a walk is not cached). A directory's mtime is taken before it is listed: a change
    in between shows as a newer mtime on the next open, never as a stale listing under a current one."""
    index: _Index = {}
    complete = True
    pending = list(found)
    while pending:
        rel = pending.pop()
        path = os.path.join(root, rel)
        try:
            mtime = os.stat(path).st_mtime_ns
            with os.scandir(path) as listing:
                entries = list(listing)
        except PermissionError:  # rglob skips unreadable directories silently
            complete = False
            continue
        files, links = [], []
        for entry in entries:
            if entry.is_symlink():  # never descended into; a file's target is checked on every use
                if _is_image_name(entry.name):
                    links.append(entry.name)
            elif _is(entry, directory=True):
                pending.append(f"{rel}/{entry.name}")
            elif _is_image_name(entry.name) and _is(entry, directory=False):
                files.append(entry.name)
        index[rel] = (mtime, sorted(files), sorted(links))
    return index, complete


def _samples(root: Path, found: list[str], labels: dict[str, int], index: _Index) -> list[tuple[str, int]]:
    below: dict[str, list[str]] = {name: [] for name in found}
    for rel in index:
        if rel:
            below[rel.partition("/")[0]].append(rel)
    samples: list[tuple[str, int]] = []
    for name in found:
        prefix, label = str(root / name), labels[name]
        keyed: list[tuple[tuple[str, ...], str]] = []
        for rel in below[name]:
            _, files, links = index[rel]
            parts = tuple(rel.split("/")[1:])
            base = "/".join((prefix, *parts))
            names = files + [n for n in links if _is_file(f"{base}/{n}")] if links else files
            if len(below[name]) == 1:  # a flat class folder, ImageNet's layout: names alone sort it
                samples.extend((f"{base}/{n}", label) for n in sorted(names))
            else:
                keyed.extend(((*parts, n), f"{base}/{n}") for n in names)
        keyed.sort(key=lambda item: item[0])  # Path order: by parts, so "a/x.jpg" < "a-b.jpg"
        samples.extend((path, label) for _, path in keyed)
    return samples


def _load(where: Path, root: Path, resolved: Path, found: list[str]) -> _Index | None:
    """The cached index when it is whole, of this root and these class folders, and no recorded
    directory has changed; else None."""
    try:
        data = json.loads(where.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    index = _parse(data, resolved, found)
    if index is None:
        return None
    for rel, (mtime, _, _) in index.items():
        path = os.path.join(root, rel)
        try:
            if "/" not in rel:  # the root and the class folders, which may be symlinks
                info = os.stat(path)
            else:  # deeper: the walk only descends into real directories
                info = os.lstat(path)
                if not stat.S_ISDIR(info.st_mode):
                    return None
        except OSError:
            return None
        if info.st_mtime_ns != mtime:
            return None
    return index


def _digest(dirs: Any) -> str:
    """The sha256 of the index's directories as written: a byte flipped in a name (``1.png`` read back as
    ``3.png``) would otherwise pass every other check, since the directory's mtime is unchanged."""
    return hashlib.sha256(json.dumps(dirs, separators=(",", ":"), sort_keys=True).encode()).hexdigest()


def _parse(data: Any, resolved: Path, found: list[str]) -> _Index | None:
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or data.get("root") != str(resolved):
        return None
    dirs = data.get("dirs")
    if data.get("classes") != found or not isinstance(dirs, dict) or "" not in dirs:
        return None
    if data.get("sha256") != _digest(dirs):
        return None
    index: _Index = {}
    classes = set(found)
    for rel, entry in dirs.items():
        if rel and not (rel.partition("/")[0] in classes and all(map(_is_plain_name, rel.split("/")))):
            return None
        if not (isinstance(entry, list) and len(entry) == 3):
            return None
        mtime, files, links = entry
        if type(mtime) is not int or mtime <= 0 or not isinstance(files, list) or not isinstance(links, list):
            return None
        names = files + links
        if not all(_is_image_entry(n) for n in names) or len(set(names)) != len(names):
            return None
        index[rel] = (mtime, files, links)
    if any(name not in index for name in found):
        return None
    if any(rel.rpartition("/")[0] not in index for rel in index if "/" in rel):
        return None  # a walk records every directory on the way down
    return index


def _is_plain_name(name: object) -> TypeGuard[str]:
    """A single path component naming an entry of its directory: nothing that leaves it."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(sep in name for sep in ("/", os.sep, os.altsep or "/", "\x00"))
    )


def _is_image_entry(name: object) -> bool:
    return _is_plain_name(name) and _is_image_name(name)


def _save(where: Path, data: dict[str, Any]) -> None:
    """Write the cache; an optimisation, so a cache directory that cannot be written is passed over."""
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        data = {**data, "sha256": _digest(data["dirs"])}
        write_bytes_atomic(where, json.dumps(data, separators=(",", ":")).encode())
    except (OSError, OutputPathError):
        pass
