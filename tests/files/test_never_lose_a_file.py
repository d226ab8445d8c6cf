"""No command destroys a file the user owns: outputs are planned and checked before any work.

One test per command for "the output is an input", plus the rules of the plan itself: two outputs
at one path, an existing file that is not this command's output from the same inputs (refused
unless --overwrite), one that is (replaced, and said so), hard links, torn pairs, stale temporaries.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from resnet_deploy.errors import OutputPathError
from resnet_deploy.files.output_plan import OutputPlan
from tests.cli_helpers import assert_one_line_error, invoke


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def r20(tiny_onnx, tmp_path) -> Path:
    """A private copy of an exported ONNX: tests may try (and fail) to destroy it."""
    path = tmp_path / "r20.onnx"
    shutil.copy(tiny_onnx, path)
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    import torch

    from resnet_deploy import build_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(build_model(20, input_size=8), tmp_path / "model.pt", {})


# ---- the output is an input: refused by every command, the input untouched -------------------------------


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_calibrate_refuses_to_write_over_its_input(r20, target) -> None:
    before = digest(r20)
    result = invoke("calibrate", str(r20), "--target", target, "-o", str(r20), "--no-cache")
    assert_one_line_error(result, f"would be written over the model {r20}")
    assert digest(r20) == before


def test_convert_refuses_to_write_over_its_input(r20) -> None:
    before = digest(r20)
    assert_one_line_error(invoke("convert", str(r20), "--fp16", "-o", str(r20)), "would be written over the input ONNX")
    assert digest(r20) == before


def test_an_input_reached_through_a_hard_link_or_symlink_is_still_the_input(r20, tmp_path) -> None:
    before = digest(r20)
    os.link(r20, tmp_path / "hard.onnx")
    (tmp_path / "soft.onnx").symlink_to(r20)
    for alias in ("hard.onnx", "soft.onnx"):
        result = invoke("convert", str(r20), "--fp16", "-o", str(tmp_path / alias))
        assert_one_line_error(result, "are one file")
    assert digest(r20) == before


def test_calibrate_of_a_checkpoint_never_writes_over_it(checkpoint) -> None:
    before = digest(checkpoint)
    assert_one_line_error(invoke("calibrate", str(checkpoint), "-o", str(checkpoint)), "ending in .onnx")
    meta = Path(f"{checkpoint}.json")
    result = invoke("calibrate", str(checkpoint), "-o", str(meta.with_suffix(".onnx")), "--no-cache")
    assert result.exit_code != 0 or meta.is_file()  # model.pt.onnx is a legal name; the metadata is untouched
    assert digest(checkpoint) == before and meta.is_file()


def test_export_never_writes_over_its_checkpoint(checkpoint) -> None:
    before = digest(checkpoint)
    result = invoke("export", "--checkpoint", str(checkpoint), "-o", str(checkpoint))
    assert_one_line_error(result, "ending in .onnx")
    assert digest(checkpoint) == before


def test_build_engine_writes_the_fp16_twin_beside_never_over_the_given_onnx(r20) -> None:
    """The bug: the twin's path was the output with .onnx, i.e. r20.onnx for -o r20.engine."""
    from resnet_deploy.artifacts.naming import engine_twin as twin_path

    assert twin_path(r20.with_suffix(".engine"), "fp16") == r20.with_name("r20.fp16.onnx")
    assert twin_path(r20.with_name("r20.fp16.engine"), "fp16") == r20.with_name("r20.fp16.onnx")
    assert twin_path(r20.with_suffix(".engine"), "int8") == r20.with_name("r20.int8.onnx")
    assert twin_path(r20.with_name("r20.best.plan"), "best") == r20.with_name("r20.best.int8.onnx")


@pytest.mark.rtx  # build-engine picks its backend first
def test_build_engine_plans_the_twin_and_refuses_a_collision(tmp_path, checkpoint) -> None:
    """A checkpoint e.fp16.pt exports to e.fp16.onnx, which is also the FP16 twin's path of e.fp16.engine."""
    odd = tmp_path / "e.fp16.pt"
    shutil.copy(checkpoint, odd)
    shutil.copy(f"{checkpoint}.json", f"{odd}.json")
    result = invoke(
        "build-engine", "--checkpoint", str(odd), "--fp16", "--target-cc", "8.9", "-o", str(tmp_path / "e.fp16.engine")
    )
    assert_one_line_error(result, "would both be written to")
    assert not (tmp_path / "e.fp16.onnx").exists()


@pytest.mark.rtx
def test_build_engine_fp16_keeps_the_given_onnx(r20) -> None:
    before = digest(r20)
    result = invoke(
        "build-engine", "--onnx", str(r20), "--fp16", "--target-cc", "8.9", "-o", str(r20.with_suffix(".engine"))
    )
    assert result.exit_code == 0, result.output
    assert digest(r20) == before
    assert r20.with_name("r20.fp16.onnx").is_file() and r20.with_suffix(".engine").is_file()
    # the same command again replaces its own outputs, and says so
    again = invoke(
        "build-engine", "--onnx", str(r20), "--fp16", "--target-cc", "8.9", "-o", str(r20.with_suffix(".engine"))
    )
    assert again.exit_code == 0, again.output
    assert f"replacing {r20.with_suffix('.engine')}" in again.stdout and digest(r20) == before


# ---- existing files ---------------------------------------------------------------------------------------


def test_an_existing_file_that_is_not_ours_needs_overwrite(r20, tmp_path) -> None:
    mine = tmp_path / "notes.onnx"
    mine.write_text("my notes")
    result = invoke("convert", str(r20), "--fp16", "-o", str(mine), "--no-verify")
    assert_one_line_error(result, "pass --overwrite to replace it")
    assert mine.read_text() == "my notes"
    forced = invoke("convert", str(r20), "--fp16", "-o", str(mine), "--no-verify", "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert mine.read_bytes()[:4] != b"my n"


def test_our_own_output_from_the_same_input_is_replaced_and_said_so(r20, tmp_path) -> None:
    out = tmp_path / "r20.fp16.onnx"
    assert invoke("convert", str(r20), "--fp16", "-o", str(out), "--no-verify").exit_code == 0
    again = invoke("convert", str(r20), "--fp16", "-o", str(out), "--no-verify")
    assert again.exit_code == 0 and f"replacing {out}" in again.stdout
    other = tmp_path / "other.onnx"  # another input: the same output name is not ours for it
    shutil.copy(out, other)
    assert_one_line_error(invoke("convert", str(other), "--fp16", "-o", str(out), "--no-verify"), "--overwrite")


def test_export_of_random_weights_is_seeded_and_replaces_only_the_same_model(tmp_path) -> None:
    first = tmp_path / "a.onnx"
    assert invoke("export", "--depth", "20", "--input-size", "8", "-o", str(first), "--no-verify").exit_code == 0
    second = tmp_path / "b.onnx"
    assert invoke("export", "--depth", "20", "--input-size", "8", "-o", str(second), "--no-verify").exit_code == 0
    assert digest(first) == digest(second)  # seeded: the same model, the same bytes, the same calibration id
    again = invoke("export", "--depth", "20", "--input-size", "8", "-o", str(first), "--no-verify")
    assert again.exit_code == 0 and f"replacing {first}" in again.stdout
    assert_one_line_error(invoke("export", "--depth", "32", "--input-size", "8", "-o", str(first)), "--overwrite")


def test_plan_rules_without_a_command(tmp_path) -> None:
    a = tmp_path / "a.onnx"
    a.write_text("x")
    plan = OutputPlan("test")
    plan.write(tmp_path / "o.onnx", "first")
    plan.write(tmp_path / "sub" / ".." / "o.onnx", "second")
    with pytest.raises(OutputPathError, match="the first and the second would both be written to"):
        plan.check()
    plan = OutputPlan("test")
    plan.read(tmp_path / "m.pt", "checkpoint")
    plan.write(tmp_path / "m.pt.json", "report")
    with pytest.raises(OutputPathError, match="over the checkpoint's metadata"):
        plan.check()
    plan = OutputPlan("test")
    plan.write(tmp_path / "e.engine", "engine")
    (tmp_path / "e.engine.json").write_text("{}")  # a sidecar without its engine: not ours to replace
    with pytest.raises(OutputPathError, match=r"e\.engine\.json exists"):
        plan.check()
    plan = OutputPlan("test")
    plan.write(a, "cache", existing_ok=True)
    plan.check()  # a file updated in place may exist


# ---- torn pairs, temporaries, failed writes ---------------------------------------------------------------


def test_a_crash_between_the_two_renames_never_leaves_metadata_of_weights_that_did_not_land(
    tmp_path, monkeypatch
) -> None:
    import torch

    from resnet_deploy import build_model, save_checkpoint
    from resnet_deploy.errors import CheckpointError
    from resnet_deploy.models.checkpoint import load_checkpoint

    torch.manual_seed(0)
    model = build_model(20, input_size=8)
    path = save_checkpoint(model, tmp_path / "model.pt", {"dataset": "digits"})
    (tmp_path / "train_state.pt").write_bytes(b"state")
    real_replace, calls = os.replace, []

    def crash_on_second(src, dst):
        calls.append(Path(dst).name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between the renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with torch.no_grad():
        model.fc.weight.add_(1)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, path, {"dataset": "digits"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert calls == ["model.pt", "model.pt.json"]  # the weights land first, their description last
    with pytest.raises(CheckpointError, match=f"resuming that run \\(train's `resume={tmp_path}`\\) rewrites both"):
        load_checkpoint(path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path) -> None:
    from resnet_deploy._io import _HOST, write_bytes_atomic

    dead = tmp_path / f".out.bin.{_HOST}-999999999.abcdefgh.tmp"  # no such pid on this host
    alive = tmp_path / f".out.bin.{_HOST}-{os.getppid()}.abcdefgh.tmp"  # a concurrent writer: kept
    elsewhere = tmp_path / ".out.bin.0f0f0f-999999999.abcdefgh.tmp"  # another host's (NFS): never judged
    other = tmp_path / f".other.bin.{_HOST}-999999999.abcdefgh.tmp"  # another file's: not this write's business
    users = tmp_path / ".out.bin.backup1.tmp"  # a user's own hidden file: not our name pattern
    for p in (dead, alive, elsewhere, other, users):
        p.write_bytes(b"partial")
        os.utime(p, (0, 0))  # ancient: age alone never condemns a pid-named temporary
    write_bytes_atomic(tmp_path / "out.bin", b"data")
    assert not dead.exists() and alive.exists() and elsewhere.exists() and other.exists() and users.exists()
    assert (tmp_path / "out.bin").read_bytes() == b"data"


def test_the_same_weights_save_to_the_same_bytes(tmp_path) -> None:
    """torch.save to a path names its zip folder after the (random) temporary; through a file object
    it is always "archive", so a re-made checkpoint is recognised as the same input."""
    import torch

    from resnet_deploy import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model(20, input_size=8)
    a = save_checkpoint(model, tmp_path / "a.pt", {})
    b = save_checkpoint(model, tmp_path / "b.pt", {})
    assert digest(a) == digest(b)


@pytest.mark.parametrize(
    ("error", "needle"),
    [
        (OSError(28, "No space left on device"), "No space left on device (the disk is full"),
        (RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0"), "cut short (disk full?)"),
    ],
)
def test_a_full_disk_is_one_line_naming_the_file(r20, tmp_path, monkeypatch, error, needle) -> None:
    import onnx

    def full(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(onnx, "save", full)
    out = tmp_path / "r20.fp16.onnx"
    result = invoke("convert", str(r20), "--fp16", "-o", str(out), "--no-verify")
    assert_one_line_error(result, f"cannot write {out}")
    assert needle in result.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_unwritable_cache_dir_is_a_warning_found_before_calibrating(r20, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "r20.int8.onnx"
    result = invoke(
        "calibrate",
        str(r20),
        "--cache-dir",
        str(blocker / "cache"),
        "--calib-images",
        "8",
        "--method",
        "minmax",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "warning: the calibration cache will not be written" in result.stderr
    assert out.is_file()


# ---- options ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "--depth", "20", "--tolerance", "nan", "-o", "{tmp}/m.onnx"], "'nan' is not a finite number"),
        (["export", "--depth", "51", "-o", "{tmp}/m.onnx"], "51"),
        (["calibrate", "{onnx}", "--percentile", "nan"], "'nan' is not a finite number"),
        (["train", "--depth", "20", "--lr", "nan", "-o", "{tmp}/run"], "--lr must be a positive number, got nan"),
        (["train", "--depth", "20", "--seed", "9" * 30, "-o", "{tmp}/run"], "--seed"),
        (["train", "--depth", "20", "--max-bad-fraction", "nan", "-o", "{tmp}/run"], "--max-bad-fraction must be"),
    ],
)
def test_nan_and_out_of_range_options_are_bad_options(r20, tmp_path, args, needle) -> None:
    result = invoke(*(a.format(tmp=tmp_path, onnx=r20) for a in args))
    assert_one_line_error(result, needle)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "run").exists()


def test_a_wrong_depth_is_refused_before_torch_is_imported(tmp_path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from resnet_deploy.cli import main;"
        f"r = CliRunner().invoke(main, ['export', '--depth', '51', '-o', {str(tmp_path / 'm.onnx')!r}]);"
        "print(r.exit_code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "False"]


# ---- train ------------------------------------------------------------------------------------------------


def test_train_never_replaces_a_model_pt_that_belongs_to_no_run(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"my only trained model")
    result = invoke("train", "--depth", "20", "--epochs", "1", "-o", str(run))
    assert_one_line_error(result, "model.pt exists")
    assert (run / "model.pt").read_bytes() == b"my only trained model"
    assert sorted(p.name for p in run.iterdir()) == ["model.pt"]  # refused before the run took the directory


def test_a_second_train_on_the_same_directory_is_refused_while_the_first_runs(tmp_path) -> None:
    import fcntl

    from resnet_deploy.errors import TrainingError
    from resnet_deploy.training.run_state import run_lock

    run = tmp_path / "run"
    with run_lock(run):
        with open(run / ".train.lock") as other:  # what a second process sees: the lock is held
            with pytest.raises(BlockingIOError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("train", "--depth", "20", "--epochs", "1", "-o", str(run))
        assert_one_line_error(result, f"is writing to {run}; wait for it to finish")
        with pytest.raises(TrainingError, match=f"pid {os.getpid()}"):
            with run_lock(run):
                pass
    assert not run.exists()  # made for a run that never started: removed again


def test_train_from_a_checkpoint_into_its_own_directory_is_refused(checkpoint) -> None:
    result = invoke("train", "--checkpoint", str(checkpoint), "--epochs", "1", "-o", str(checkpoint.parent))
    assert_one_line_error(result, "would be written over the starting checkpoint")


def test_sigterm_is_handled_like_ctrl_c_exit_143_nothing_left(tmp_path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r50.onnx"
    process = subprocess.Popen(
        [sys.executable, "-m", "resnet_deploy", "export", "--depth", "50", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # the random-weights warning: printed just before the export starts
    assert "randomly initialised" in line, line
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 143, rest
    assert "terminated; no partial output was kept" in rest and "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda s: s["model"].pop("fc.weight"), "missing keys: fc.weight"),
        (lambda s: s["model"].__setitem__("fc.weight", s["model"]["fc.weight"][:3]), "shape mismatch: fc.weight"),
        (lambda s: s.__setitem__("optimizer", [1, 2]), "its optimizer is a list"),
        (lambda s: s.__setitem__("epoch", "3"), "its epoch is a str"),
    ],
)
def test_resume_from_a_damaged_state_is_one_line(trained_resnet20, tmp_path, damage, needle) -> None:
    import torch

    run = tmp_path / "run"
    shutil.copytree(Path(trained_resnet20[0]).parent, run)
    state = torch.load(run / "train_state.pt", weights_only=True)
    damage(state)
    torch.save(state, run / "train_state.pt")
    before = digest(run / "model.pt")
    assert_one_line_error(invoke("train", "--resume", str(run)), needle)
    assert digest(run / "model.pt") == before


# ---- validate ---------------------------------------------------------------------------------------------


def test_validate_never_writes_its_report_over_a_file_it_did_not_write(trained_resnet20, tmp_path) -> None:
    checkpoint, onnx_path = (str(p) for p in trained_resnet20)
    args = ("validate", "--checkpoint", checkpoint, onnx_path, "--limit", "16")
    before = digest(Path(checkpoint))
    assert_one_line_error(invoke(*args, "--report", checkpoint), "the report is Markdown: give a path ending in .md")
    assert_one_line_error(invoke(*args, "--report", onnx_path), "the report is Markdown")
    assert digest(Path(checkpoint)) == before
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    assert_one_line_error(invoke(*args, "--report", str(notes)), "pass --overwrite")
    assert notes.read_text() == "# my notes\n"
    report = tmp_path / "validation.md"
    first = invoke(*args, "--report", str(report))
    assert first.exit_code == 0, first.output
    again = invoke(*args, "--report", str(report))  # the same inputs: its own report, replaced
    assert again.exit_code == 0 and f"replacing {report}" in again.stdout
    other = invoke("validate", "--checkpoint", checkpoint, onnx_path, "--limit", "8", "--report", str(report))
    assert_one_line_error(other, "pass --overwrite")  # other inputs: not this report's
    assert_one_line_error(invoke(*args, "--max-top1-drop", "nan"), "'nan' is not a finite number")


# ---- bench ------------------------------------------------------------------------------------------------


def test_bench_plot_is_planned_like_every_output(r20, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    args = ("bench", str(r20), "--batch", "1", "--warmup", "0", "--iters", "2")
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"\x89PNG my chart")
    assert_one_line_error(invoke(*args, "--plot", str(mine)), "pass --overwrite")
    assert mine.read_bytes() == b"\x89PNG my chart"
    chart = tmp_path / "chart.png"
    assert invoke(*args, "--plot", str(chart)).exit_code == 0
    again = invoke(*args, "--plot", str(chart))  # its own chart of the same artifacts: replaced
    assert again.exit_code == 0 and f"replacing {chart}" in again.stdout


def test_resume_into_another_directory_never_replaces_files_there(trained_resnet20, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(Path(trained_resnet20[0]).parent, run)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "log.csv").write_text("my log")
    result = invoke("train", "--resume", str(run), "-o", str(mine))
    assert_one_line_error(result, "log.csv exists")
    assert (mine / "log.csv").read_text() == "my log"


def test_a_calibration_made_another_way_is_not_ours_to_redo(r20, tmp_path) -> None:
    out = tmp_path / "r20.int8.onnx"
    base = ("calibrate", str(r20), "--calib-images", "8", "--no-cache", "-o", str(out))
    assert invoke(*base, "--method", "minmax").exit_code == 0
    before = digest(out)
    assert_one_line_error(invoke(*base, "--method", "percentile"), "pass --overwrite")
    assert digest(out) == before
    again = invoke(*base, "--method", "minmax")  # the same settings: its own output, replaced
    assert again.exit_code == 0 and f"replacing {out}" in again.stdout
