"""Data-parallel training: sharding, rank 0's say, torchrun jobs of 1 and 2 Gloo processes on the CPU.

The jobs are real: ``torchrun`` (or ``resnet-deploy train --nproc``) starts the processes, which train
over Gloo. Each costs a few seconds of process start-up, so the runs are shared by module fixtures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_deploy.artifacts.naming import RUN_FILES
from resnet_deploy.data import Shard, open_dataset
from resnet_deploy.data.imagefolder import load_imagefolder
from resnet_deploy.errors import STOPPED_BY_PEER, TrainingError
from resnet_deploy.models.checkpoint import load_checkpoint, model_from_checkpoint
from resnet_deploy.models.resnet import ResNet
from resnet_deploy.training import distributed, launch
from resnet_deploy.training.distributed import World, model_digest
from resnet_deploy.training.metrics import evaluate
from resnet_deploy.training.recipes import get_recipe, make_plan
from resnet_deploy.training.torchrun import launched
from resnet_deploy.training.trainer import _check_split
from tests.cli_helpers import invoke
from tests.factories import write_tiny_cifar

ROOT = Path(__file__).resolve().parents[2]
RANKS_SCRIPT = Path(__file__).with_name("ddp_ranks.py")


def one_thread() -> dict[str, str]:
    """The environment of the processes a test starts: the same kernels in every process compared."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # read when called: conftest's settings included


CLI = [sys.executable, "-m", "resnet_deploy", "train"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=one_thread(), capture_output=True, text=True, timeout=timeout)


def rows(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "log.json").read_text())


TIMING = ("images_per_second", "epoch_seconds")


def figures(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in (*TIMING, "processes")}


# --- sharding: each process's part of a global batch ------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shard_parts_cover_every_batch_once_and_differ_by_at_most_one(count: int) -> None:
    for size in range(0, 23):
        parts = [Shard(rank, count).part(size) for rank in range(count)]
        assert [i for part in parts for i in range(size)[part]] == list(range(size))
        lengths = [len(range(size)[part]) for part in parts]
        assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("count", [2, 3])
def test_sharded_in_memory_batches_are_the_global_batches_cut_up(count: int) -> None:
    """Augmentation included: an image is cropped and flipped alike whatever the number of processes."""
    split = open_dataset("digits").train
    whole = list(split.batches(128, size=32, train=True, seed=7))
    parts = [list(split.batches(128, size=32, train=True, seed=7, shard=Shard(r, count))) for r in range(count)]
    assert all(len(p) == len(whole) for p in parts)
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([p[i].images for p in parts]), batch.images)
        assert torch.equal(torch.cat([p[i].labels for p in parts]), batch.labels)


def _folder(root: Path) -> Path:
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for label in range(2):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(9):
            pixels = torch.randint(0, 256, (30 + i, 40, 3), generator=rng, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / f"c{label}" / f"{i}.png")
    return root


def test_sharded_folder_batches_are_the_global_batches_cut_up(tmp_path: Path) -> None:
    split = load_imagefolder(_folder(tmp_path / "tree")).train
    whole = list(split.batches(5, size=16, train=True, seed=3))
    parts = [list(split.batches(5, size=16, train=True, seed=3, shard=Shard(r, 2))) for r in range(2)]
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([p[i].images for p in parts]), batch.images)
        assert torch.equal(torch.cat([p[i].labels for p in parts]), batch.labels)
    assert whole[0].images.dtype == torch.float32 and 0 <= whole[0].images.min() and whole[0].images.max() <= 1


def test_folder_workers_persist_across_epochs_and_an_abandoned_pass_leaves_no_trace(tmp_path: Path) -> None:
    split = load_imagefolder(_folder(tmp_path / "tree"), workers=2).train
    first = [b.images for b in split.batches(4, size=16, train=True, seed=1)]
    loader = next(iter(split._loaders.values()))[0]
    workers = loader._iterator._workers  # type: ignore[union-attr]
    pids = [w.pid for w in workers]
    partial = split.batches(4, size=16, train=True, seed=2)
    next(partial)  # a pass left half-way (calibration stops early, Ctrl-C...)
    del partial
    again = [b.images for b in split.batches(4, size=16, train=True, seed=1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert [w.pid for w in loader._iterator._workers] == pids and all(w.is_alive() for w in workers)  # type: ignore[union-attr]


# --- one process: every collective is the identity ---------------------------------------------------


def test_a_plain_world_is_one_process_without_collectives() -> None:
    world = World()
    assert not world.distributed and world.is_main and world.shard is None
    assert world.sum([3, 0.25]) == [3, 0.25] and world.min(5) == 5 and world.gather("x") == ["x"]
    assert world.decide(lambda: 42) == 42
    with pytest.raises(TrainingError, match="boom"):
        world.decide(lambda: (_ for _ in ()).throw(TrainingError("boom")))


def test_model_digest_tells_replicas_apart_to_the_last_bit() -> None:
    from resnet_deploy.artifacts.model_spec import ModelSpec, model_config

    torch.manual_seed(0)
    model = ResNet(model_config(ModelSpec(20, num_classes=10, input_size=32)))
    twin = ResNet(model.config)
    twin.load_state_dict(model.state_dict())
    assert model_digest(model) == model_digest(twin)
    twin.layer1[0].bn1.running_var[0] = torch.nextafter(twin.layer1[0].bn1.running_var[0], torch.tensor(2.0))
    assert model_digest(model) != model_digest(twin)


def test_the_global_batch_must_split_evenly() -> None:
    plan = make_plan(get_recipe(None, "cifar"), train_images=100, depth=20, epochs=1, on_digits=False, batch_size=127)
    with pytest.raises(TrainingError, match=r"batch of 127 does not split evenly over 2 processes.*one process"):
        _check_split(plan, World(0, 2, 0, "gloo"))
    even = make_plan(get_recipe(None, "cifar"), train_images=100, depth=20, epochs=1, on_digits=False, batch_size=12)
    _check_split(even, World(0, 4, 0, "gloo"))
    with pytest.raises(TrainingError, match=r"multiple of 5.*start 2, 3, 4, 6, 12 processes"):
        _check_split(even, World(0, 5, 0, "gloo"))


def test_joining_needs_torchruns_whole_environment() -> None:
    with pytest.raises(TrainingError, match="MASTER_ADDR, MASTER_PORT is not; launch with torchrun"):
        distributed.join("cpu", {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    bad = {"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    with pytest.raises(TrainingError, match="must be integers"):
        distributed.join("cpu", bad)
    assert not launched({}) and launched({"RANK": "0", "WORLD_SIZE": "1"})


# --- the launcher's one line -------------------------------------------------------------------------


def test_the_failure_reported_is_the_cause_not_the_processes_stopped_after_it() -> None:
    stopped = launch.Failure(0, 2, "rank 0 of 2: lost contact with another process (it failed or was killed)")
    cleaned_up = launch.Failure(2, 143, "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html")
    killed = launch.Failure(1, -9, "Signal 9 (SIGKILL) received by PID 7")
    cause = launch.root_cause([stopped, cleaned_up, killed])
    assert cause is killed and cause.shell_code == 137
    assert launch.describe(killed) == "rank 1 was killed by SIGKILL (out of memory? killed by hand?)"
    said = launch.Failure(1, 2, "rank 1 of 2: ImageFolder directory /x does not exist or is not a directory")
    peer = launch.Failure(0, 2, f"rank 0 of 2: {STOPPED_BY_PEER} (...)")
    assert launch.root_cause([peer, said]) is said and launch.describe(said) == said.message
    # rank 0 said why, then torchrun's agent terminated it (its peer had already stopped): its code stands
    refused = launch.Failure(0, 143, "rank 0 of 2: the batch of 15 does not split evenly", intended=2)
    stopped_by_it = launch.Failure(1, 2, f"rank 1 of 2: {STOPPED_BY_PEER} (...)", intended=2)
    assert launch.root_cause([stopped_by_it, refused]) is refused and refused.shell_code == 2
    silent = launch.Failure(3, 1, "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html")
    assert launch.describe(silent) == "rank 3 failed with exit code 1, leaving no message (see its output above)"


def test_each_process_gets_its_share_of_the_cores() -> None:
    assert launch.threads_per_process(2, {"OMP_NUM_THREADS": "3"}) == 3  # the user's choice stands
    cores = len(os.sched_getaffinity(0))
    assert launch.threads_per_process(2, {}) == max(1, cores // 2)
    assert launch.threads_per_process(10_000, {}) == 1


def test_nproc_hands_the_processes_the_options_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    monkeypatch.setattr(launch, "launch", lambda nproc, args: calls.append((nproc, args)))
    result = invoke("train", "--depth", "20", "--epochs", "3", "--nproc", "4", "--sync-bn", "-o", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert calls == [(4, ["--depth", "20", "--epochs", "3", "--sync-bn", "--output", str(tmp_path / "r")])]
    assert not (tmp_path / "r").exists()  # the launcher itself writes nothing


# --- real jobs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"), train=48, test=20)


def test_torchrun_with_one_process_equals_a_plain_run_bit_for_bit(cifar: Path, tmp_path: Path) -> None:
    common = ["--depth", "20", "--data", f"cifar10:{cifar}", "--epochs", "2", "--batch-size", "16", "--no-progress"]
    plain = run([*CLI, *common, "-o", "plain"], tmp_path)
    ddp = run([*TORCHRUN, "--nproc_per_node", "1", "-m", "resnet_deploy", "train", *common, "-o", "ddp"], tmp_path)
    assert plain.returncode == 0 and ddp.returncode == 0, plain.stderr + ddp.stderr
    assert "on 1 cpu process (gloo, batch 16 each)" in ddp.stdout  # it did train through DDP
    assert (tmp_path / "plain/model.pt").read_bytes() == (tmp_path / "ddp/model.pt").read_bytes()
    assert [figures(r) for r in rows(tmp_path / "plain")] == [figures(r) for r in rows(tmp_path / "ddp")]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """CI's 2-process Gloo job: digits, 1 epoch, by torchrun, each rank reporting its own model."""
    work = tmp_path_factory.mktemp("two-ranks")
    args = [*TORCHRUN, "--nproc_per_node", "2", str(RANKS_SCRIPT), "run", "out", json.dumps({"depth": 20, "epochs": 1})]
    (work / "out").mkdir()
    done = run(args, work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "run", work / "out"


def test_every_rank_holds_the_model_rank_0_saved(two_ranks: tuple[Path, Path]) -> None:
    run_dir, out = two_ranks
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["size"], r["epochs"]) for r in reports] == [(0, 2, [1]), (1, 2, [1])]
    saved = model_from_checkpoint(load_checkpoint(run_dir / "model.pt"))
    assert reports[0]["digest"] == reports[1]["digest"] == model_digest(saved)


def test_only_rank_0_writes_and_its_metrics_cover_every_image(two_ranks: tuple[Path, Path]) -> None:
    run_dir, _ = two_ranks
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)  # no second log, no temporaries
    (row,) = rows(run_dir)
    assert row["processes"] == 2
    digits = open_dataset("digits")
    correct = (1 - row["train_top1_error"] / 100) * len(digits.train)  # summed over both halves
    assert correct == pytest.approx(round(correct), abs=1e-6)
    saved = model_from_checkpoint(load_checkpoint(run_dir / "model.pt"))
    alone = evaluate(saved, digits.test, size=32, normalize=lambda x: x, device=torch.device("cpu"))
    assert alone.images == len(digits.test) == 360
    assert (row["test_top1_error"], row["test_top5_error"]) == (alone.top1_error, alone.top5_error)
    assert row["test_loss"] == pytest.approx(alone.loss, rel=1e-5)


def test_nproc_two_reproduces_torchrun_two_and_reports_once(two_ranks: tuple[Path, Path], tmp_path: Path) -> None:
    """Same world size, same run: ``--nproc 2`` and torchrun's 2 ranks train the same model bit for bit."""
    done = run([*CLI, "--depth", "20", "--epochs", "1", "--nproc", "2", "--json", "-o", "run"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # one JSON object: rank 0's
    assert summary["ok"] and summary["processes"] == 2 and summary["epochs"] == 1
    assert (tmp_path / "run/model.pt").read_bytes() == (two_ranks[0] / "model.pt").read_bytes()
    assert not [line for line in done.stderr.splitlines() if line.startswith(("warning:", "error:"))]


def test_a_refusal_is_one_line_from_rank_0(cifar: Path, tmp_path: Path) -> None:
    done = run([*CLI, "--depth", "20", "--data", f"cifar10:{cifar}", "--batch-size", "15", "--nproc", "2"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: rank 0 of 2: the batch of 15 does not split evenly over 2 processes; give --batch-size a multiple of "
        "2 (the global batch), or start 3, 5, 15 processes"
    ]
    assert not (tmp_path / "runs" / "resnet20-cifar10").exists()


def _pid_of_rank(rank: int, run_dir: Path) -> int | None:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run_dir).encode() in cmdline and f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


NEEDS_PROC = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds a rank through /proc")


def _killed_in_epoch_2(tmp_path: Path) -> tuple[Path, subprocess.Popen[str], str]:
    """A 3-epoch, 2-process digits run whose rank 1 is killed with SIGKILL once epoch 1 is saved."""
    run_dir = tmp_path / "run"
    job = subprocess.Popen(
        [*CLI, "--depth", "20", "--epochs", "3", "--nproc", "2", "--no-progress", "-o", str(run_dir)],
        cwd=tmp_path,
        env=one_thread(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "train_state.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = _pid_of_rank(1, run_dir)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # mid-epoch 2: the OOM killer's way
    _, stderr = job.communicate(timeout=120)
    return run_dir, job, stderr


@NEEDS_PROC
def test_a_killed_rank_is_named_and_the_run_resumes_on_another_number_of_processes(tmp_path: Path) -> None:
    run_dir, job, stderr = _killed_in_epoch_2(tmp_path)
    assert job.returncode == 137, stderr
    assert stderr.strip().splitlines() == [
        "error: rank 1 was killed by SIGKILL (out of memory? killed by hand?); "
        f"continue with: resnet-deploy train --resume {run_dir} --nproc 2"
    ]
    (epoch_1,) = rows(run_dir)
    resumed = subprocess.run(  # on one process now, with both cores: nothing here is compared bit for bit
        [*CLI, "--resume", str(run_dir), "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming on 1 process a run that ran on 2: the same global batch of 128" in resumed.stdout
    history = rows(run_dir)
    assert [r["processes"] for r in history] == [2, 1, 1] and history[0] == epoch_1
    assert [r["lr"] for r in history] == pytest.approx([0.1, 0.01, 0.001])  # the schedule went on where it stopped


@NEEDS_PROC
@pytest.mark.slow
def test_a_killed_run_resumed_on_as_many_processes_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    run_dir, job, stderr = _killed_in_epoch_2(tmp_path)
    assert job.returncode == 137, stderr
    again = run([*CLI, "--resume", str(run_dir), "--nproc", "2", "--no-progress"], tmp_path)
    whole = run([*CLI, "--depth", "20", "--epochs", "3", "--nproc", "2", "--no-progress", "-o", "whole"], tmp_path)
    assert again.returncode == 0 and whole.returncode == 0, again.stderr + whole.stderr
    assert (run_dir / "model.pt").read_bytes() == (tmp_path / "whole/model.pt").read_bytes()  # bit for bit


def test_sync_bn_is_refused_on_cpus(cifar: Path, tmp_path: Path) -> None:
    args = ["--depth", "20", "--data", f"cifar10:{cifar}", "--batch-size", "16", "--sync-bn", "-o", "r"]
    done = run([*TORCHRUN, "--nproc_per_node", "2", "-m", "resnet_deploy", "train", *args], tmp_path)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    refusal = "rank 0 of 2: --sync-bn needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel); drop --sync-bn"
    assert errors == [f"error: {refusal}"], done.stderr[-3000:]
    assert "[rank0]: Traceback" not in done.stderr and "[rank1]: Traceback" not in done.stderr  # torchrun's aside
    assert "traceback : rank 0 of 2: --sync-bn needs GPUs" in done.stderr  # torchrun's report names rank and cause


def test_the_process_whose_error_ends_the_job_prints_it_before_torchruns_sigterm(monkeypatch) -> None:
    """Rank 1 stops at once on rank 0's refusal; torchrun's agent then SIGTERMs rank 0, which still has to
    leave the group and print why: its CLI handler waits for that, an application's is left alone."""
    from resnet_deploy.errors import raise_terminated
    from resnet_deploy.pipeline.train import _one_of_many

    world = World(0, 2, 0, "gloo")  # not initialised: leaving is a no-op
    monkeypatch.delenv(launch.LAUNCHED_BY_US, raising=False)
    for handler, after in (
        (raise_terminated, signal.SIG_IGN),
        (signal.default_int_handler, signal.default_int_handler),
    ):
        monkeypatch.setattr(signal, "getsignal", lambda _s, h=handler: h)
        installed: list = []
        monkeypatch.setattr(signal, "signal", lambda _s, h, into=installed: into.append(h))
        with pytest.raises(TrainingError, match=r"^rank 0 of 2: refused$"), _one_of_many(world):
            raise TrainingError("refused")
        assert installed == ([after] if after is signal.SIG_IGN else [])


def test_cpu_tests_and_the_processes_they_start_see_no_gpu(tmp_path: Path) -> None:
    """On a GPU machine, `device=auto` in a CPU test (and in its torchrun jobs) would train on the GPU
    and over NCCL, and fail there on what only the CPU does: conftest hides the GPU from tests not
    marked `gpu`, in this process and in every one it starts."""
    assert not torch.cuda.is_available() and torch.cuda.device_count() == 0
    code = "import os, torch; print(repr(os.environ['CUDA_VISIBLE_DEVICES']), torch.cuda.device_count())"
    done = run([sys.executable, "-c", code], tmp_path)
    assert done.stdout.split() == ["''", "0"], done.stderr


@pytest.mark.parametrize(("rank", "size", "local"), [(2, 2, 0), (-1, 2, 0), (0, 0, 0), (0, 2, -1)])
def test_a_rank_outside_its_world_is_refused_before_any_rendezvous(monkeypatch, rank, size, local) -> None:
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: pytest.fail("rendezvous started"))
    environ = {
        "RANK": str(rank),
        "WORLD_SIZE": str(size),
        "LOCAL_RANK": str(local),
        "MASTER_ADDR": "x",
        "MASTER_PORT": "1",
    }
    with pytest.raises(TrainingError, match=rf"^RANK {rank} is not a process of a group of WORLD_SIZE {size}"):
        distributed.join("cpu", environ)


@pytest.mark.parametrize(("device", "backend", "bound"), [("cuda", "nccl", "cuda:1"), ("cpu", "gloo", None)])
def test_nccl_starts_bound_to_the_processs_gpu(monkeypatch, device: str, backend: str, bound: str | None) -> None:
    started: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda b, **kw: started.append((b, kw["device_id"])))
    environ = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}
    world, chosen = distributed.join(device, environ)
    assert (world.backend, chosen) == (backend, bound or "cpu")
    assert started == [(backend, torch.device(bound) if bound else None)]


# --- on a GPU (skipped without one) ------------------------------------------------------------------


@pytest.mark.gpu
def test_torchrun_on_one_gpu_equals_a_plain_gpu_run_bit_for_bit(cifar: Path, tmp_path: Path) -> None:
    common = ["--depth", "20", "--data", f"cifar10:{cifar}", "--epochs", "2", "--batch-size", "16", "--no-progress"]
    plain = run([*CLI, *common, "--device", "cuda", "-o", "plain"], tmp_path)
    ddp = run([*TORCHRUN, "--nproc_per_node", "1", "-m", "resnet_deploy", "train", *common, "-o", "ddp"], tmp_path)
    assert plain.returncode == 0 and ddp.returncode == 0, plain.stderr + ddp.stderr
    assert "on 1 cuda process (nccl, batch 16 each)" in ddp.stdout
    assert (tmp_path / "plain/model.pt").read_bytes() == (tmp_path / "ddp/model.pt").read_bytes()


@pytest.mark.gpu
def test_sync_bn_trains_on_gpus(cifar: Path, tmp_path: Path) -> None:
    gpus = min(torch.cuda.device_count(), 2)
    args = ["--depth", "20", "--data", f"cifar10:{cifar}", "--epochs", "1", "--batch-size", "16", "--sync-bn"]
    done = run([*CLI, *args, "--nproc", str(gpus), "--json", "-o", "r"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["processes"] == gpus
    assert "SyncBatchNorm" in done.stderr or gpus == 1


def test_nproc_on_gpus_this_machine_lacks_is_one_line_before_any_process_starts(tmp_path, monkeypatch) -> None:
    """Not the same error once per process and then the launcher's line."""
    from tests.cli_helpers import assert_one_line_error

    monkeypatch.setattr(launch, "launch", lambda *a, **k: pytest.fail("processes started"))
    done = invoke("train", "--depth", "20", "--nproc", "2", "--device", "cuda", "-o", str(tmp_path / "r"))
    assert_one_line_error(done, "--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu (Gloo)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    done = invoke("train", "--depth", "20", "--nproc", "2", "--device", "cuda", "-o", str(tmp_path / "r"))
    assert_one_line_error(done, "2 processes on --device cuda need 2 GPUs, and this node has 1; use --nproc 1")
