"""A process killed at any write boundary of a writer of several files: readers find the old files or the new
ones, never one of each, and the next run succeeds and leaves no temporary behind.

A write boundary (``resnet_deploy._io``) is each point where a kill leaves something different on disk: a
temporary created, a temporary synced, the journal of files renamed together created, synced and its
directory entry synced, each rename, the directory synced, the journal removed. A write of n files in one
directory has 3n + 1 of them, and 4 more for the journal when n > 1: 4 for one file, 11 for a pair.

Each sweep puts the old state in a fresh directory, runs the real writing code in a child process told to
die (``os._exit(137)``, no cleanup, as kill -9) just before its boundary 1, 2, ... until a child finishes,
and after each death reads the directory with the project's readers, then runs the write again.
The children are forks (``die_at_write_boundary``), except the engine's: real ``resnet-deploy
build-engine`` processes under ``RESNET_DEPLOY_FAULT_AT``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from resnet_deploy._io import _HOST, _JOURNAL, _TMP, die_at_write_boundary, finish_interrupted_writes

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked children")

KILLED = 137  # what the fault hook exits with, as a shell reports kill -9
CAL_ID = "0123456789abcdef01234567"


def forked(write: Callable[[], object], boundary: int = 0) -> int:
    """Run ``write`` in a child process that dies just before its ``boundary``-th write boundary (0: never);
    the child's exit status (0: it finished)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            if "torch" in sys.modules:  # one thread: the parent's OpenMP pool does not survive a fork
                sys.modules["torch"].set_num_threads(1)
            die_at_write_boundary(boundary)
            write()
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def leftovers(directory: Path) -> list[str]:
    """Temporaries and journals in ``directory``: what a dead writer can leave."""
    return sorted(p.name for p in directory.iterdir() if _TMP.match(p.name) or _JOURNAL.match(p.name))


@dataclass
class Writer:
    """A writer of several files: how to lay out its old state, run it, and read what it wrote."""

    old: Callable[[Path], None]  # the state before the write, in an empty directory
    write: Callable[[Path], object]  # the real writing code (run in a child)
    seen: Callable[[Path], str]  # what the project's readers find in the directory, e.g. "old" or "new"


def sweep(writer: Writer, root: Path, new: str = "new") -> list[str]:
    """What the readers see after a kill at boundary 1, 2, ... (one entry per boundary), each directory
    then written again by a normal run, which must reach the state ``new`` and leave nothing behind."""
    seen: list[str] = []
    for boundary in itertools.count(1):
        directory = root / f"killed-at-{boundary}"
        directory.mkdir(parents=True)
        writer.old(directory)
        status = forked(lambda: writer.write(directory), boundary)  # noqa: B023  (called at once)
        if status == 0:
            assert writer.seen(directory) == new and leftovers(directory) == []
            return seen
        assert status == KILLED, f"the write failed at boundary {boundary} (exit status {status})"
        seen.append(writer.seen(directory))
        assert forked(lambda: writer.write(directory)) == 0, f"the run after a kill at boundary {boundary} failed"  # noqa: B023
        assert writer.seen(directory) == new and leftovers(directory) == [], f"after a kill at {boundary}"
    raise AssertionError("unreachable")


# ---- one file: write_bytes_atomic --------------------------------------------------------------------------


def test_a_file_replaced_atomically_is_old_or_new_at_each_of_its_4_boundaries(tmp_path) -> None:
    from resnet_deploy._io import write_bytes_atomic

    def seen(directory: Path) -> str:
        return {b"old": "old", b"new": "new"}[(directory / "out.bin").read_bytes()]

    writer = Writer(
        old=lambda d: (d / "out.bin").write_bytes(b"old"),
        write=lambda d: write_bytes_atomic(d / "out.bin", b"new"),
        seen=seen,
    )
    # created, synced, renamed (the new file is there before the directory sync), directory synced
    assert sweep(writer, tmp_path) == ["old", "old", "old", "new"]


# ---- checkpoint + metadata ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models():
    import torch

    from resnet_deploy import build_model

    torch.manual_seed(0)
    old = build_model(20, input_size=8)
    new = build_model(20, input_size=8)
    return old, new


def test_a_checkpoint_killed_at_any_of_its_11_boundaries_loads_as_a_whole_pair(tmp_path, two_models) -> None:
    """The torn pair this guards against: new weights beside the old metadata (a kill between the renames)."""
    from resnet_deploy.models.checkpoint import load_checkpoint, save_checkpoint

    old_model, new_model = two_models
    template = tmp_path / "template"
    template.mkdir()
    save_checkpoint(old_model, template / "model.pt", {"written": "old"})

    def seen(directory: Path) -> str:
        checkpoint = load_checkpoint(directory / "model.pt")
        assert checkpoint.meta is not None and checkpoint.meta.sha256 == checkpoint.sha256
        assert not [name for name in leftovers(directory) if _JOURNAL.match(name)]  # finished by the reader
        return str(checkpoint.metadata["written"])

    writer = Writer(
        old=lambda d: [shutil.copy(p, d) for p in template.iterdir()],
        write=lambda d: save_checkpoint(new_model, d / "model.pt", {"written": "new"}),
        seen=seen,
    )
    # old until the journal is written (boundary 6: before it is synced); from then on the write is
    # committed, and load_checkpoint finishes a save killed before or between its renames
    assert sweep(writer, tmp_path / "sweep") == ["old"] * 5 + ["new"] * 6


def test_the_fault_variable_kills_a_real_process_and_the_reader_finishes_its_renames(tmp_path) -> None:
    """RESNET_DEPLOY_FAULT_AT=9: a separate Python process dies between the two renames of a cache entry."""
    from resnet_deploy.quantize.cache import read_cached

    code = (
        "from pathlib import Path; from resnet_deploy.quantize.cache import write_cache; "
        f"write_cache(Path({str(tmp_path)!r}), {CAL_ID!r}, {{'input': (-1.0, 1.0)}}, {{}}, "
        "symmetric=True, method='minmax')"
    )
    env = {**os.environ, "RESNET_DEPLOY_FAULT_AT": "9"}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == KILLED
    landed = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert landed == [f"{CAL_ID}.calib.cache"]  # the first file renamed, the index not yet
    assert len([n for n in leftovers(tmp_path) if _JOURNAL.match(n)]) == 1
    assert read_cached(tmp_path, CAL_ID) == {"input": (-1.0, 1.0)}  # finished by the reader: a whole entry
    assert leftovers(tmp_path) == []


# ---- calibration cache entries -----------------------------------------------------------------------------


@pytest.mark.parametrize(("symmetric", "boundaries"), [(True, 11), (False, 4)], ids=["tensorrt", "cpu"])
def test_a_calibration_cache_entry_killed_at_any_boundary_is_a_miss_or_whole(tmp_path, symmetric, boundaries) -> None:
    from resnet_deploy.quantize.cache import read_cached, write_cache

    ranges = {"input": (-1.0, 1.0), "relu": (0.0, 6.0)}

    def seen(directory: Path) -> str:
        found = read_cached(directory, CAL_ID)
        assert found in (None, ranges)
        return "miss" if found is None else "hit"

    writer = Writer(
        old=lambda d: None,
        write=lambda d: write_cache(d, CAL_ID, ranges, {}, symmetric=symmetric, method="minmax"),
        seen=seen,
    )
    expected = ["miss"] * 5 + ["hit"] * 6 if symmetric else ["miss"] * 3 + ["hit"]
    assert sweep(writer, tmp_path, new="hit") == expected and len(expected) == boundaries


# ---- a training run directory ------------------------------------------------------------------------------


@dataclass
class RunFiles:
    model: int  # epochs of model.pt (its metadata's, the pair read whole)
    log_json: int  # epochs in log.json
    log_csv: int  # epochs in log.csv
    state: int  # epochs of train_state.pt

    def __str__(self) -> str:
        return f"{self.model}{self.log_csv}{self.log_json}{self.state}"


def run_files(directory: Path) -> RunFiles:
    from resnet_deploy.models.checkpoint import load_checkpoint
    from resnet_deploy.training.run_state import load_state

    with open(directory / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    found = RunFiles(
        model=int(load_checkpoint(directory / "model.pt").metadata["epochs"]),
        log_json=len(json.loads((directory / "log.json").read_text())),
        log_csv=len(rows),
        state=load_state(directory).epoch,
    )
    assert found.state <= min(found.model, found.log_json, found.log_csv), "the state is written last"
    return found


_OWN_PROCESS = "RESNET_DEPLOY_CRASH_TEST_OWN_PROCESS"


def test_a_run_killed_at_any_boundary_of_an_epoch_resumes_to_the_same_weights(tmp_path) -> None:
    """Epoch 2 of 2 killed at each of the 23 boundaries of its save: model.pt and its metadata (11), log.csv,
    log.json and train_state.pt (4 each); every file whole, the state never ahead of the others, and every
    resumed run ending with the weights of the run never killed.

    Run in a pytest process of its own: autograd refuses to train in a child forked from a process that has
    trained already (as the rest of the suite has)."""
    if os.environ.get(_OWN_PROCESS) != "1":
        test = f"{Path(__file__).resolve()}::test_a_run_killed_at_any_boundary_of_an_epoch_resumes_to_the_same_weights"
        child = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
            env={**os.environ, _OWN_PROCESS: "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
        return
    from resnet_deploy._io import sha256_file
    from resnet_deploy.training.trainer import Trainer, TrainOptions
    from tests.factories import write_tiny_cifar

    data = write_tiny_cifar(tmp_path / "cifar", train=16, test=8)
    base = tmp_path / "base"

    def first_epoch() -> None:
        def stop(row: Any) -> None:
            if row.epoch == 1:
                raise KeyboardInterrupt

        options = TrainOptions.of(depth=20, data=f"cifar10:{data}", epochs=2, batch_size=16, eval_batch_size=8)
        with pytest.raises(KeyboardInterrupt):
            Trainer(options, base, on_epoch=stop).run()

    first_epoch()  # here: the children forked later start with everything it imported
    weights: set[str] = set()

    def resume(directory: Path) -> None:
        Trainer(TrainOptions.of(), directory, resume=directory).run()

    def seen(directory: Path) -> str:
        files = run_files(directory)
        if files.state == 2:  # finished: the weights it ends with
            weights.add(sha256_file(directory / "model.pt"))
        return str(files)

    writer = Writer(old=lambda d: shutil.copytree(base, d, dirs_exist_ok=True), write=resume, seen=seen)
    states = sweep(writer, tmp_path / "sweep", new="2222")
    # model.pt, log.csv, log.json, train_state.pt: the epochs each holds (the state's written last)
    assert states == ["1111"] * 5 + ["2111"] * 9 + ["2211"] * 4 + ["2221"] * 4 + ["2222"]
    assert len(weights) == 1  # every resumed run ends with the same weights as the run never killed


# ---- an engine, its sidecar and its FP16 twin (real build-engine processes) -----------------------------------


@dataclass
class EngineSeen:
    plain: str  # what the engine readers see as they are: "old", "new", or "refused: ..."
    finished: str  # what they see once the directory's interrupted writes are finished


def read_engine(engine: Path) -> str:
    """``old``/``new`` (by its batch profile) when the engine, its sidecar and the graph it was built from
    (when it is there) are whole and of one build, else the reader's refusal."""
    from resnet_deploy.artifacts.engine_sidecar import EngineSidecar
    from resnet_deploy.artifacts.onnx_io import read_lineage
    from resnet_deploy.errors import ResnetDeployError
    from resnet_deploy.runtime.tensorrt_backend import check_engine_file

    try:
        sidecar = EngineSidecar.read(engine)
        check_engine_file(engine, sidecar)
    except ResnetDeployError as exc:
        assert "\n" not in str(exc)
        return f"refused: {type(exc).__name__}"
    record = json.loads(sidecar.to_text())
    twin = Path(record["source_onnx"])
    if twin.name.endswith(".fp16.onnx"):
        assert read_lineage(twin).graph_precision == "fp16"
        assert record["source_onnx_sha256"] == hashlib.sha256(twin.read_bytes()).hexdigest()
    return {4: "old", 32: "new"}[record["profile"]["max"][0]]


def build_engine_process(onnx: Path, engine: Path, *options: str, boundary: int = 0) -> int:
    command = ["build-engine", "--onnx", str(onnx), "--target-cc", "8.9", *options, "-o", str(engine)]
    env = {**os.environ, "RESNET_DEPLOY_FAULT_AT": str(boundary)}
    return subprocess.run(
        [sys.executable, "-m", "resnet_deploy", *command], env=env, capture_output=True, check=False
    ).returncode


def old_engine_copy(root: Path, directory: Path) -> Path:
    """``directory`` holding a copy of the old build in ``root`` (its ONNX, its twin if any, engine, sidecar)."""
    shutil.copytree(root / "old", directory)
    sidecar = directory / "e.engine.json"
    record = json.loads(sidecar.read_text())  # the build names its graph by absolute path: this copy's
    record["source_onnx"] = str(directory / Path(record["source_onnx"]).name)
    sidecar.write_text(json.dumps(record))
    return directory / "e.engine"


def old_engine(tiny_onnx: Path, root: Path, *options: str) -> None:
    (root / "old").mkdir(parents=True)
    shutil.copy(tiny_onnx, root / "old" / "tiny.onnx")
    old = root / "old" / "e.engine"
    assert build_engine_process(old.with_name("tiny.onnx"), old, *options, "--batch", "1:2:4") == 0


@pytest.mark.rtx
def test_an_engine_killed_between_its_renames_is_read_whole(tiny_onnx, tmp_path) -> None:
    """The new engine landed beside the old sidecar when the build died: the engine reader finishes the build's
    renames first (the journal says which), so it reads the new pair, never one of each."""
    old_engine(tiny_onnx, tmp_path)
    engine = old_engine_copy(tmp_path, tmp_path / "killed")
    assert build_engine_process(tmp_path / "killed" / "tiny.onnx", engine, boundary=9) == KILLED
    assert read_engine(engine) == "new" and leftovers(engine.parent) == []
    assert finish_interrupted_writes(engine.parent) == []  # nothing left to finish


@pytest.fixture(scope="module")
def engine_sweep(tiny_onnx, tmp_path_factory) -> list[EngineSeen]:
    """build-engine --fp16 over an older FP16 build (batch 1:2:4) killed at each of its 15 boundaries (its
    twin ONNX: 4, the engine and its sidecar: 11), two processes at a time; after each kill the next build
    must succeed and leave nothing behind."""
    root = tmp_path_factory.mktemp("engine-sweep")
    old_engine(tiny_onnx, root, "--fp16")

    def killed_at(boundary: int) -> EngineSeen | None:
        engine = old_engine_copy(root, root / f"killed-at-{boundary}")
        status = build_engine_process(engine.with_name("tiny.onnx"), engine, "--fp16", boundary=boundary)
        if status == 0:
            assert read_engine(engine) == "new" and leftovers(engine.parent) == []
            return None
        assert status == KILLED, f"build-engine failed at boundary {boundary} (exit status {status})"
        plain = read_engine(engine)
        finish_interrupted_writes(engine.parent)  # what the next reader or writer of the directory does first
        finished = read_engine(engine)
        assert build_engine_process(engine.with_name("tiny.onnx"), engine, "--fp16") == 0, f"after {boundary}"
        assert read_engine(engine) == "new" and leftovers(engine.parent) == []
        return EngineSeen(plain, finished)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(killed_at, range(1, 17)))
    assert results[-1] is None and None not in results[:-1]  # 15 boundaries, the 16th run finishes
    return [r for r in results if r is not None]


@pytest.mark.rtx
@pytest.mark.crash
def test_an_engine_with_its_twin_killed_at_any_of_its_15_boundaries_is_old_or_new_once_finished(engine_sweep) -> None:
    assert [s.finished for s in engine_sweep] == ["old"] * 9 + ["new"] * 6


@pytest.mark.rtx
@pytest.mark.crash
def test_engine_readers_finish_a_build_killed_between_its_renames(engine_sweep) -> None:
    assert [s.plain for s in engine_sweep] == [s.finished for s in engine_sweep]


# ---- the journal, syncing ----------------------------------------------------------------------------------


def _temporary(directory: Path, name: str, pid: int, data: bytes, host: str = _HOST) -> str:
    path = directory / f".{name}.{host}-{pid}.abcdefgh.tmp"
    path.write_bytes(data)
    return path.name


def _journal(directory: Path, pid: int, text: str, host: str = _HOST) -> Path:
    path = directory / f".a.bin.{host}-{pid}.abcdefgh.commit"
    path.write_text(text)
    return path


DEAD = 999_999_999  # no such pid


def test_a_dead_writers_journal_is_finished_in_order_and_removed(tmp_path) -> None:
    names = [_temporary(tmp_path, "a.bin", DEAD, b"A2"), _temporary(tmp_path, "b.json", DEAD, b"B2")]
    (tmp_path / "b.json").write_bytes(b"B1")
    journal = _journal(tmp_path, DEAD, json.dumps(names))
    assert finish_interrupted_writes(tmp_path) == [tmp_path / "a.bin", tmp_path / "b.json"]
    assert (tmp_path / "a.bin").read_bytes() == b"A2" and (tmp_path / "b.json").read_bytes() == b"B2"
    assert not journal.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "listed",
    [
        lambda names: json.dumps(names)[:-3],  # cut short: no rename had begun
        lambda names: json.dumps([*names, "../escape.tmp"]),  # a path, not a name beside it
        lambda names: json.dumps([*names, f".c.bin.{_HOST}-12345.abcdefgh.tmp"]),  # another writer's
        lambda names: json.dumps([*names, "passwd"]),  # not a temporary
        lambda names: json.dumps({"a": names}),
    ],
    ids=["cut", "path", "other-writer", "not-a-temporary", "not-a-list"],
)
def test_a_journal_cut_short_or_naming_anything_else_renames_nothing(tmp_path, listed) -> None:
    names = [_temporary(tmp_path, "a.bin", DEAD, b"A2"), _temporary(tmp_path, "b.json", DEAD, b"B2")]
    (tmp_path / "passwd").write_bytes(b"keep")
    journal = _journal(tmp_path, DEAD, listed(names))
    assert finish_interrupted_writes(tmp_path) == []
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "b.json").exists() and not journal.exists()
    assert (tmp_path / "passwd").read_bytes() == b"keep"
    from resnet_deploy._io import write_bytes_atomic

    write_bytes_atomic(tmp_path / "a.bin", b"A3")
    write_bytes_atomic(tmp_path / "b.json", b"B3")
    assert leftovers(tmp_path) == []  # the dead writer's temporaries go with the next write of their files


def test_a_live_or_foreign_writers_journal_is_left_alone(tmp_path) -> None:
    for pid, host in ((os.getppid(), _HOST), (os.getpid(), _HOST), (DEAD, "0f0f0f")):
        names = [_temporary(tmp_path, "a.bin", pid, b"A2", host), _temporary(tmp_path, "b.json", pid, b"B2", host)]
        _journal(tmp_path, pid, json.dumps(names), host)
    before = leftovers(tmp_path)
    assert finish_interrupted_writes(tmp_path) == [] and leftovers(tmp_path) == before and len(before) == 9


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")
def test_temporaries_are_synced_before_their_renames_and_the_directory_after(tmp_path, monkeypatch) -> None:
    from resnet_deploy.quantize.cache import write_cache

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def name(path: str) -> str:
        return "dir" if Path(path) == tmp_path else ("journal" if path.endswith(".commit") else Path(path).name)

    def fsync(fd: int) -> None:
        events.append(f"sync {name(_fd_path(fd))}")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(f"rename {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_cache(tmp_path, CAL_ID, {"input": (-1.0, 1.0)}, {}, symmetric=True, method="minmax")
    tmps = [e for e in events[:2] if e.startswith("sync .")]
    assert len(tmps) == 2 and all(e.endswith(".tmp") for e in tmps)
    assert events[2:] == [
        "sync journal",
        "sync dir",  # the journal's name is durable before any rename
        f"rename {CAL_ID}.calib.cache",
        f"rename {CAL_ID}.json",  # the index last
        "sync dir",
    ]


def test_a_directory_that_refuses_fsync_still_gets_its_file(tmp_path, monkeypatch) -> None:
    import errno

    from resnet_deploy._io import write_bytes_atomic

    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if Path(_fd_path(fd)).is_dir():
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_bytes_atomic(tmp_path / "out.bin", b"data")
    assert (tmp_path / "out.bin").read_bytes() == b"data" and leftovers(tmp_path) == []


def test_a_failed_sync_of_a_temporary_is_one_line_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    import errno

    from resnet_deploy._io import write_bytes_atomic
    from resnet_deploy.errors import OutputPathError

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    (tmp_path / "out.bin").write_bytes(b"old")
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OutputPathError, match=r"cannot write .*out\.bin: Input/output error .*nothing was written"):
        write_bytes_atomic(tmp_path / "out.bin", b"new")
    assert (tmp_path / "out.bin").read_bytes() == b"old" and leftovers(tmp_path) == []
