"""The cached ImageFolder index: the same classes, samples, order and errors as the uncached scan,
served from the cache only while no directory of the tree has changed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from resnet_deploy.data import file_index
from resnet_deploy.data.file_index import EXTENSIONS, cache_file, scan_folder
from resnet_deploy.errors import DatasetError


# The index as releases before the cache made it (rglob and a stat per file): the reference the
# cached walk must match exactly, order included, since the order feeds seeded shuffles.
def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
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
    index = {name: i for i, name in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    for name in found:
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        samples.extend((str(p), index[name]) for p in files)
    if not samples:
        raise DatasetError(f"{root} holds no images ({', '.join(EXTENSIONS)}) in its class folders")
    return classes, samples


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("RESNET_DEPLOY_CACHE_DIR", str(where))
    return where


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The roots walked from disk (a call served from the cache adds none)."""
    seen: list[Path] = []
    real = file_index._walk

    def counting(root: Path, found: list[str]) -> tuple[file_index._Index, bool]:
        seen.append(root)
        return real(root, found)

    monkeypatch.setattr(file_index, "_walk", counting)
    return seen


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # 0 bytes: the index never reads a file


def age(root: Path, seconds: float = 60) -> None:
    """Date every directory below ``root`` ``seconds`` back, out of the racy window."""
    past = time.time() - seconds
    for here, _, _ in os.walk(root):
        os.utime(here, (past, past))


def make_tree(base: Path) -> Path:
    root = base / "data"
    for rel in (
        "cat/a.jpg",
        "cat/B.JPG",
        "cat/a-b.jpg",  # "a-b.jpg" < "a/x.jpg" as strings, but after it as Path parts
        "cat/a/x.jpg",
        "cat/a/y.Jpeg",
        "cat/sub/deep/c.png",
        "cat/.hidden.jpg",  # hidden files below a class folder count, as rglob finds them
        "cat/.jpg",  # no suffix (Path(".jpg").suffix == "")
        "cat/notes.txt",
        "cat/x.jpg.bak",
        "cat/dir.jpg/inner.png",  # a folder named like an image is no sample, its contents are
        "dog/d.jpeg",
        "dog/e.PNG",
        "dog/f.tiff",
        "fox/g.webp",
        ".trash/h.jpg",  # hidden class folder: not a class
        "readme.txt",
    ):
        touch(root / rel)
    touch(base / "outside/real.jpg")
    touch(base / "outside/more/m.jpg")
    touch(base / "wolves/w.jpg")
    (root / "cat/link.jpg").symlink_to(base / "outside/real.jpg")
    (root / "cat/dangling.jpg").symlink_to(base / "outside/nowhere.jpg")
    (root / "cat/linkdir").symlink_to(base / "outside/more")  # rglob does not descend into it
    (root / "wolf").symlink_to(base / "wolves")  # a symlinked class folder counts, and is walked
    return root


def test_same_as_scan_and_served_from_cache(tmp_path: Path, walks: list[Path]) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    expected = _scan(root)
    assert scan_folder(root) == expected
    classes, samples = expected
    assert classes == ["cat", "dog", "fox", "wolf"]
    cat = [os.path.relpath(p, root) for p, label in samples if label == 0]
    assert cat == [
        "cat/.hidden.jpg",
        "cat/B.JPG",
        "cat/a/x.jpg",
        "cat/a/y.Jpeg",
        "cat/a-b.jpg",
        "cat/a.jpg",
        "cat/dir.jpg/inner.png",
        "cat/link.jpg",
        "cat/sub/deep/c.png",
    ]
    assert [os.path.relpath(p, root) for p, label in samples if label == 3] == ["wolf/w.jpg"]
    assert cache_file(root).is_file() and len(walks) == 1

    assert scan_folder(root) == expected  # from the cache
    val_classes = ["cat", "dog", "fox", "wolf", "zebra"]  # the val split passes the train split's classes
    assert scan_folder(root, val_classes) == _scan(root, val_classes)
    assert len(walks) == 1


def test_cache_is_keyed_by_the_resolved_root_and_stores_relative_names(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    scan_folder(root)
    text = cache_file(root).read_text()
    assert text.count(str(root)) == 1  # the root once, names relative to it
    data = json.loads(text)
    assert data["version"] == file_index.FORMAT_VERSION and data["root"] == str(root.resolve())
    assert sorted(data["dirs"]["cat/a"][1]) == ["x.jpg", "y.Jpeg"]
    (tmp_path / "alias").symlink_to(root)
    assert cache_file(tmp_path / "alias") == cache_file(root)
    assert scan_folder(tmp_path / "alias") == _scan(tmp_path / "alias")  # paths under the root as given


@pytest.mark.parametrize(
    "change",
    ["add", "remove", "rename", "add-nested", "add-class", "remove-class", "symlink-target-gone"],
)
def test_a_change_is_seen_on_the_next_call(tmp_path: Path, walks: list[Path], change: str) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    before = scan_folder(root)
    assert scan_folder(root) == before and len(walks) == 1  # cached
    if change == "add":
        touch(root / "dog/new.jpg")
    elif change == "remove":
        (root / "dog/e.PNG").unlink()
    elif change == "rename":
        (root / "dog/e.PNG").rename(root / "dog/0.png")
    elif change == "add-nested":
        touch(root / "cat/sub/deep/d.png")
    elif change == "add-class":
        touch(root / "emu/e.jpg")
    elif change == "remove-class":
        for name in ("g.webp",):
            (root / "fox" / name).unlink()
        (root / "fox").rmdir()
    else:
        (tmp_path / "outside/real.jpg").unlink()  # no directory of the tree changes
    after = scan_folder(root)
    assert after == _scan(root) and after != before


def test_a_tree_changed_just_now_is_not_cached(tmp_path: Path, walks: list[Path]) -> None:
    root = make_tree(tmp_path)  # every directory dated now: inside the racy window
    assert scan_folder(root) == _scan(root)
    assert not cache_file(root).exists()
    age(root / "cat")  # one directory still recent is enough to refuse the cache
    scan_folder(root)
    assert not cache_file(root).exists() and len(walks) == 2
    age(tmp_path)
    scan_folder(root)
    assert cache_file(root).exists()
    assert scan_folder(root) == _scan(root) and len(walks) == 3


def test_a_recent_change_after_caching_is_seen_and_not_cached(tmp_path: Path, walks: list[Path]) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    scan_folder(root)
    written = cache_file(root).read_bytes()
    touch(root / "dog/new.jpg")
    assert scan_folder(root) == _scan(root)
    assert cache_file(root).read_bytes() == written  # dog/ is racy: the stale cache is left, and not trusted
    assert scan_folder(root) == _scan(root) and len(walks) == 3


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through chmod 0o500")
def test_a_read_only_cache_dir_still_gives_the_index(tmp_path: Path, cache_dir: Path) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    cache_dir.mkdir()
    cache_dir.chmod(0o500)
    try:
        assert scan_folder(root) == _scan(root)
        assert not cache_file(root).exists()
    finally:
        cache_dir.chmod(0o700)


def test_a_cache_dir_that_cannot_be_created_still_gives_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    touch(tmp_path / "a-file")
    monkeypatch.setenv("RESNET_DEPLOY_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # ENOTDIR, even for root
    assert scan_folder(root) == _scan(root)


@pytest.mark.parametrize(
    "damage",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"version": 1}',
        "wrong types",
        "a class missing",
        "another root",
    ],
)
def test_a_damaged_cache_is_replaced(tmp_path: Path, walks: list[Path], damage: bytes | str) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    expected = scan_folder(root)
    where = cache_file(root)
    good = where.read_bytes()
    data = json.loads(good)
    if damage == "wrong types":
        data["dirs"]["dog"][1] = [1, 2]
    elif damage == "a class missing":
        del data["dirs"]["dog"]
    elif damage == "another root":
        data["root"] = "/elsewhere"
    where.write_bytes(json.dumps(data).encode() if isinstance(damage, str) else damage)
    assert scan_folder(root) == expected and len(walks) == 2
    assert where.read_bytes() == good


def test_without_cache_nothing_is_written(tmp_path: Path, cache_dir: Path) -> None:
    root = make_tree(tmp_path)
    age(tmp_path)
    assert scan_folder(root, cache=False) == _scan(root)
    assert not cache_dir.exists()


def test_a_cache_dir_inside_the_tree_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path)
    monkeypatch.setenv("RESNET_DEPLOY_CACHE_DIR", str(root / ".cache"))
    age(tmp_path)
    assert scan_folder(root) == _scan(root)
    assert not (root / ".cache").exists()


def test_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNET_DEPLOY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_file(tmp_path).parent == tmp_path / "xdg/resnet-deploy/file-index"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    where = cache_file(tmp_path)
    assert where.parent == tmp_path / "home/.cache/resnet-deploy/file-index"
    assert len(where.stem) == 16 and int(where.stem, 16) >= 0


def same_error(root: Path, classes: list[str] | None = None) -> str:
    with pytest.raises(DatasetError) as old:
        _scan(root, classes)
    with pytest.raises(DatasetError) as new:
        scan_folder(root, classes)
    assert str(new.value) == str(old.value)
    return str(new.value)


def test_the_same_errors(tmp_path: Path) -> None:
    root = tmp_path / "data"
    touch(root / "readme.txt")
    touch(root / ".hidden/a.jpg")
    assert "no class sub-folders" in same_error(root)
    touch(root / "cat/a.jpg")
    assert "one class folder (cat)" in same_error(root)
    touch(root / "dog/notes.txt")
    touch(root / "fox/b.jpg")
    assert "not in the training split: fox" in same_error(root, ["cat", "dog"])
    (root / "cat/a.jpg").unlink()
    (root / "fox/b.jpg").unlink()
    age(root)
    assert "holds no images" in same_error(root)
    assert "holds no images" in same_error(root)  # from the cache
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "absent")


def _stamp(path: Path) -> int:
    return os.stat(path).st_mtime_ns


# Each edits the cache the tool wrote for make_tree(tmp_path); tmp_path/outside.png is the file no
# entry may reach. A hostile directory carries the true mtime of where it points, so only the name
# check stands between it and the read.
HOSTILE = {
    "file-dotdot": lambda d, t: d["dirs"]["dog"][1].append("../../outside.png"),
    "file-dotdot-inside-a-path": lambda d, t: d["dirs"]["dog"][1].append("a/../../../outside.png"),
    "file-absolute": lambda d, t: d["dirs"]["dog"][1].append(str(t / "outside.png")),
    "file-with-separator": lambda d, t: d["dirs"]["dog"][1].append("sub/d.jpeg"),
    "file-dotdot-alone": lambda d, t: d["dirs"]["dog"][1].append(".."),
    "file-empty": lambda d, t: d["dirs"]["dog"][1].append(""),
    "file-nul": lambda d, t: d["dirs"]["dog"][1].append("a\x00.png"),
    "file-not-a-string": lambda d, t: d["dirs"]["dog"][1].append(["outside.png"]),
    "file-not-an-image-name": lambda d, t: d["dirs"]["dog"][1].append("notes.txt"),
    "file-twice": lambda d, t: d["dirs"]["dog"][1].append(d["dirs"]["dog"][1][0]),
    "link-dotdot": lambda d, t: d["dirs"]["cat"][2].append("../../outside.png"),
    "link-nul": lambda d, t: d["dirs"]["cat"][2].append("a\x00.png"),
    "dir-dotdot": lambda d, t: d["dirs"].update({"dog/../..": [_stamp(t), ["outside.png"], []]}),
    "dir-absolute": lambda d, t: d["dirs"].update({str(t): [_stamp(t), ["outside.png"], []]}),
    "dir-empty-part": lambda d, t: d["dirs"].update({"dog//x": [_stamp(t / "data/dog"), [], []]}),
    "dir-symlinked": lambda d, t: d["dirs"].update({"cat/linkdir": [_stamp(t / "outside/more"), ["m.jpg"], []]}),
    "dir-without-its-parent": lambda d, t: d["dirs"].pop("cat/sub"),
    "dirs-not-an-object": lambda d, t: d.update({"dirs": [["dog", 1, [], []]]}),
    "dirs-missing": lambda d, t: d.pop("dirs"),
    "classes-missing": lambda d, t: d.pop("classes"),
    "entry-too-short": lambda d, t: d["dirs"].update({"dog": d["dirs"]["dog"][:2]}),
    "mtime-a-string": lambda d, t: d["dirs"]["dog"].__setitem__(0, str(d["dirs"]["dog"][0])),
    "mtime-negative": lambda d, t: d["dirs"]["dog"].__setitem__(0, -1),
}


@pytest.mark.parametrize("hostile", [*HOSTILE, "truncated"])
def test_a_hostile_cache_entry_is_discarded_and_the_folder_rescanned(
    tmp_path: Path, walks: list[Path], hostile: str
) -> None:
    from resnet_deploy.data.folder_layout import read_layout

    root = make_tree(tmp_path)
    touch(tmp_path / "outside.png")
    age(tmp_path)
    expected = read_layout(root)  # the walk, cached
    where = cache_file(root)
    good = where.read_bytes()
    if hostile == "truncated":
        where.write_bytes(good[: len(good) // 2])
    else:
        data = json.loads(good)
        HOSTILE[hostile](data, tmp_path)
        where.write_text(json.dumps(data))

    layout = read_layout(root)

    assert layout == expected and len(walks) == 2  # the cache was not believed: a fresh scan
    outside = os.path.realpath(tmp_path / "outside.png")
    for path, _ in layout.train + layout.test:
        assert os.path.normpath(path).startswith(str(layout.root) + os.sep)
        assert "\x00" not in path and os.path.realpath(path) != outside
    assert where.read_bytes() == good  # and replaced by the scan's
