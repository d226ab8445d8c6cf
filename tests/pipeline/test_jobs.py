"""Jobs from Python: planned as data (the steps, what each reads and writes), run exactly as planned, with
the CLI's defaults and the errors a Python caller can act on (its own parameter names)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from resnet_deploy import (
    BenchJob,
    BuildOptions,
    CalibrateJob,
    ConvertJob,
    DemoJob,
    EngineJob,
    ExportJob,
    Recorded,
    SensitivityJob,
    TrainJob,
    ValidateJob,
    plan,
    run,
)
from resnet_deploy.artifacts import naming
from resnet_deploy.cli import main
from resnet_deploy.errors import ArtifactError, BuildOptionError, OutputPathError, UnknownModelError
from resnet_deploy.pipeline.calibrate import Calibrate
from resnet_deploy.pipeline.export import Export
from resnet_deploy.quantize.options import CalibrationOptions
from tests.cli_helpers import assert_one_line_error, invoke


@pytest.fixture
def onnx(trained_resnet20, tmp_path):
    """The trained ResNet-20's FP32 ONNX, copied where the job may write beside it."""
    path = tmp_path / "r20.onnx"
    shutil.copy(trained_resnet20[1], path)
    return path


def test_a_plan_names_every_step_and_file_before_any_work(onnx, tmp_path) -> None:
    planned = plan(CalibrateJob(onnx, calibration=CalibrationOptions(count=32, cache_dir=None)))
    (step,) = planned.steps
    assert isinstance(step, Calibrate) and step.output == naming.int8_twin(onnx) == tmp_path / "r20.int8.onnx"
    assert planned.outputs() == [tmp_path / "r20.int8.onnx"]
    assert [i.path for i in step.inputs()] == [onnx]
    described = planned.describe()
    assert described[0].startswith("1. calibrate") and any(
        "writes" in line and "r20.int8.onnx" in line for line in described
    )
    assert json.loads(json.dumps(planned.to_dict()))["steps"][0]["step"] == "Calibrate"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r20.onnx"]  # planning wrote nothing


def test_running_a_plan_derives_no_path_again(onnx, tmp_path, monkeypatch) -> None:
    """The run writes exactly where the plan said, even if every naming rule changed in between."""
    planned = plan(ConvertJob(onnx, verify=False))
    for name in ("fp16_twin", "int8_twin", "engine_beside", "engine_twin", "exported", "export_beside"):
        monkeypatch.setattr(naming, name, lambda *a, **k: pytest.fail("a path was derived while running"))
    result = run(planned, Recorded())
    assert result.path == planned.outputs()[0] == tmp_path / "r20.fp16.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r20.fp16.onnx", "r20.onnx"]


def test_a_checkpoint_is_planned_through_its_export(trained_resnet20, tmp_path) -> None:
    checkpoint = tmp_path / "model.pt"
    shutil.copy(trained_resnet20[0], checkpoint)
    shutil.copy(f"{trained_resnet20[0]}.json", f"{checkpoint}.json")
    planned = plan(CalibrateJob(checkpoint, calibration=CalibrationOptions(count=32, cache_dir=None)))
    export, calibrate = planned.steps
    assert isinstance(export, Export) and export.output == tmp_path / "model.onnx"
    assert isinstance(calibrate, Calibrate) and calibrate.source == export.output
    # the export is the calibration's input, not the plan's: only the checkpoint (and its metadata) is read
    assert [i.path for i in calibrate.inputs()] == [export.output]


def test_the_python_defaults_are_the_command_lines(onnx) -> None:
    def defaults(command: str) -> dict[str, object]:
        return {p.name: p.default for p in main.commands[command].params if p.name}

    calibration = CalibrationOptions()
    for command in ("calibrate", "build-engine", "sensitivity"):
        given = defaults(command)
        assert (given["calib_images"], given["method"], given["percentile"]) == (
            calibration.count,
            calibration.method,
            calibration.percentile,
        )
        assert given["cache_dir"] == str(calibration.cache_dir)
    scan = SensitivityJob(onnx)
    assert (defaults("sensitivity")["images"], defaults("sensitivity")["keep_out_precision"]) == (
        scan.images,
        scan.keep_out_precision,
    )
    validate = defaults("validate")
    assert (validate["batch_size"], validate["backend"]) == (ValidateJob("m.pt", ()).batch_size, "auto")
    bench = defaults("bench")
    assert (bench["batches"], bench["warmup"], bench["iters"]) == ("1,8,32", BenchJob(()).warmup, None)
    demo = defaults("demo")
    assert (demo["depth"], demo["calib_images"], demo["directory"]) == (20, DemoJob().calib_images, "demo-out")
    train = defaults("train")
    options = TrainJob().options
    assert (train["device"], train["max_bad_fraction"], train["workers"]) == ("auto", options.max_bad_fraction, None)
    assert options.decoding_workers >= 1  # None: one decoding process per core, up to 8, in Python too


def test_errors_name_the_parameter_for_python_and_the_flag_for_the_cli(tmp_path) -> None:
    with pytest.raises(UnknownModelError) as info:
        plan(ExportJob.of(depth=51))
    assert info.value.field == "depth" and "--" not in str(info.value)
    assert_one_line_error(invoke("export", "--depth", "51"), "unknown depth 51")

    options = BuildOptions(gpu_fallback=True, target_cc=("8.9",))
    with pytest.raises(BuildOptionError) as refused:
        plan(EngineJob.of(depth=20, build=options, backend="tensorrt-rtx", output=tmp_path / "m.engine"))
    assert refused.value.field == "gpu_fallback"
    assert str(refused.value) == "`gpu_fallback` only applies with `dla_core=N`"
    result = invoke(
        "build-engine", "--depth", "20", "--gpu-fallback", "--target-cc", "8.9", "-o", str(tmp_path / "m.engine")
    )
    assert_one_line_error(result, "--gpu-fallback only applies with --dla-core N")

    with pytest.raises(ArtifactError) as missing:
        plan(CalibrateJob(tmp_path / "absent.onnx"))
    assert missing.value.field == "model"
    with pytest.raises(OutputPathError, match=r"give a path ending in \.onnx \(`output`\)") as wrong:
        plan(ExportJob.of(depth=20, output=tmp_path / "m.txt"))
    assert wrong.value.field == "output"
    assert list(tmp_path.iterdir()) == []


def test_dry_run_prints_the_plan_and_writes_nothing(onnx, tmp_path) -> None:
    result = invoke("calibrate", str(onnx), "--calib-images", "16", "--no-cache", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["dry_run"] and described["command"] == "calibrate"
    (step,) = described["steps"]
    assert step["step"] == "Calibrate" and step["writes"] == [
        {"path": str(tmp_path / "r20.int8.onnx"), "what": "INT8 ONNX"}
    ]
    assert "1. calibrate" in result.stderr  # the plan in words, for the human
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r20.onnx"]
    human = invoke("build-engine", "--onnx", str(onnx), "--fp16", "--target-cc", "8.9", "--dry-run")
    assert human.exit_code == 0, human.output
    assert "1. convert" in human.stdout and "2. build" in human.stdout and "r20.fp16.engine" in human.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r20.onnx"]


def test_the_demo_is_the_other_jobs_steps_in_one_checked_plan(tmp_path) -> None:
    planned = plan(DemoJob(directory=tmp_path / "demo", epochs=1, calib_images=16))
    kinds = [type(step).__name__ for step in planned.steps]
    assert kinds[:6] == ["Claim", "Train", "Export", "Calibrate", "Calibrate", "ConvertFp16"]
    assert kinds[-3:] == ["Score", "Time", "Seal"]  # sealed last: the marker records what the demo wrote
    files = naming.demo_files(tmp_path / "demo", "resnet20")
    assert {files[k] for k in ("onnx", "int8", "cpu_int8", "fp16", "validation", "bench")} <= set(planned.outputs())
    assert not (tmp_path / "demo").exists()  # planned, not started
    with pytest.raises(UnknownModelError) as info:
        plan(DemoJob(directory=tmp_path / "demo", depth=50))
    assert info.value.field == "depth"


def test_jobs_are_frozen_records_with_flat_constructors() -> None:
    job = ExportJob.of(depth=50, num_classes=10, output="r50.onnx")
    assert job.model.depth == 50 and job.model.num_classes == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.output = "other.onnx"  # type: ignore[misc]
    train = TrainJob.of(depth=20, epochs=3, output="runs/r20")
    assert train.options.model.depth == 20 and train.options.epochs == 3 and str(train.run_dir()) == "runs/r20"
    assert train.arguments() == ["--depth", "20", "--epochs", "3", "--output", "runs/r20"]
    assert TrainJob.of(depth=56, plain=True, data="cifar10:/d").run_dir() == naming.RUNS_DIR / "plain56-cifar10"


def test_what_a_refusal_does_not_name_the_command_line_adds(tmp_path) -> None:
    result = invoke("build-engine", "--onnx", str(tmp_path / "missing.onnx"), "--target-cc", "8.9")
    assert_one_line_error(result, f"ONNX {tmp_path / 'missing.onnx'} not found (--onnx)")
    assert_one_line_error(invoke("bench", str(tmp_path / "m.onnx"), "--backend", "tensorrt"), "is not a runtime")
    unwritable = tmp_path / "file"
    unwritable.write_text("not a directory")
    result = invoke("demo", "--out", str(unwritable / "demo"), "--epochs", "1")
    assert_one_line_error(result, "is not a directory; choose another --out")


def test_one_path_is_one_artifact_and_the_demo_plan_reads_as_it_runs(tmp_path) -> None:
    assert ValidateJob("m.pt", "r20.onnx").artifacts == ("r20.onnx",)
    assert BenchJob("r20.onnx").artifacts == ("r20.onnx",)
    described = plan(DemoJob(directory=tmp_path / "demo", epochs=1)).describe()
    assert described[0].startswith("== 1. train resnet20") and described[1].startswith("1. claim")
    assert any(line.startswith("== 7. benchmark") for line in described)
    if any(". build the int8 engine" in line for line in described):  # where a TensorRT is installed
        assert any(line.endswith("resnet20.int8.engine.json  (engine's sidecar)") for line in described)


def test_what_the_nproc_processes_cannot_be_told_is_refused(tmp_path) -> None:
    from resnet_deploy.errors import TrainingError

    job = TrainJob.of(depth=20, eval_batch_size=64, nproc=2, output=tmp_path / "r")
    with pytest.raises(TrainingError) as info:
        plan(job)
    assert info.value.field == "eval_batch_size" and not (tmp_path / "r").exists()


def test_a_later_demo_replaces_only_what_the_last_demo_wrote(tmp_path) -> None:
    """The finished demo records each file it wrote by sha256: a file the user saved there since under a
    name the demo uses, or beside them, is refused in one line, never replaced."""
    from resnet_deploy.artifacts import naming
    from resnet_deploy.errors import OutputPathError
    from resnet_deploy.messages import SILENT
    from resnet_deploy.pipeline.demo import Claim, Seal, check_directory

    demo = tmp_path / "demo"
    Claim(demo, demo / "train").run(SILENT, [])
    (demo / "resnet20.onnx").write_bytes(b"the demo's export")
    (demo / "train").mkdir()
    (demo / "train" / "model.pt").write_bytes(b"weights")
    check_directory(demo, overwrite=False)  # an unfinished demo's files are its own
    Seal(demo).run(SILENT, [])
    assert json.loads((demo / naming.DEMO_MARKER).read_text())["complete"] is True
    check_directory(demo, overwrite=False)  # as the demo left it: replaced by the next
    (demo / "resnet20.onnx").write_bytes(b"the user's own model")
    (demo / "notes.md").write_text("mine")
    with pytest.raises(OutputPathError, match=r"holds notes\.md, resnet20\.onnx, which the last demo there did not"):
        check_directory(demo, overwrite=False)
    check_directory(demo, overwrite=True)  # asked for
