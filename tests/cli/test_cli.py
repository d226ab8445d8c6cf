import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from tests.cli_helpers import assert_one_line_error, invoke

COMMANDS = ["info", "train", "export", "convert", "calibrate", "build-engine", "validate", "bench", "demo"]


def test_info_prints_the_published_figures():
    result = invoke("info", "--depth", "50")
    assert result.exit_code == 0
    assert "25,557,032" in result.stdout and "4.09 G" in result.stdout and "2048x7x7" in result.stdout
    data = json.loads(invoke("info", "--depth", "20", "--json").stdout)
    assert data["parameters"] == 269_722 and data["weighted_layers"] == 20 and data["config"]["shortcut"] == "A"


def test_unknown_depth_is_one_line_listing_valid_depths():
    assert_one_line_error(invoke("info", "--depth", "51"), "valid depths: 18, 34, 50, 101, 152 (ImageNet)")
    assert_one_line_error(invoke("export", "--depth", "7"), "unknown depth 7")


def test_export_json_and_outputs_run_at_batch_1_and_5(tmp_path):
    out = tmp_path / "r20.onnx"
    result = invoke("export", "--depth", "20", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert data["ok"] and data["path"] == str(out) and data["verification"]["passed"]
    assert [b["batch"] for b in data["verification"]["batches"]] == [1, 5]
    assert "randomly initialised" in result.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        (logits,) = session.run(None, {"input": torch.randn(batch, 3, 32, 32).numpy()})
        assert logits.shape == (batch, 10)


def test_export_from_our_checkpoint_needs_no_architecture_flags(tmp_path):
    from resnet_deploy.models import build_model
    from resnet_deploy.models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(build_model(20, num_classes=3), tmp_path / "m.pt", {"class_names": ["a", "b", "c"]})
    result = invoke("export", "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.onnx"))
    assert result.exit_code == 0, result.output
    assert "randomly initialised" not in result.stderr and "top-1 agreement 100%" in result.stdout


def test_export_bad_inputs_are_one_line_and_leave_nothing(tmp_path):
    assert_one_line_error(invoke("export", "--depth", "20", "-o", str(tmp_path / "no" / "m.onnx")), "does not exist")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(invoke("export", "--depth", "20", "-o", str(tmp_path / "file" / "m.onnx")), "not a directory")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    assert_one_line_error(invoke("export", "--checkpoint", str(tmp_path / "module.pt")), "not a plain state dict")
    assert_one_line_error(
        invoke("export", "--depth", "20", "--opset", "5", "-o", str(tmp_path / "m.onnx")), "--opset 5"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "module.pt"]


def test_errors_under_json_are_json_too():
    result = invoke("info", "--depth", "51", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout) == {
        "ok": False,
        "error": result.stderr.split("error: ")[1].strip(),
    }


def test_demo_runs_the_pipeline_and_validates_every_artifact(tmp_path):
    args = ["demo", "--epochs", "2", "--calib-images", "64", "--out", str(tmp_path), "--no-progress"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "resnet20" and data["epochs"] == 2
    validation = data["validation"]
    assert validation["dataset"] == "digits" and validation["images"] == 360
    rows = {a["artifact"]: a for a in validation["artifacts"]}
    assert sorted(rows) == sorted(
        ["resnet20.onnx", "resnet20.int8.onnx", "resnet20.cpu.int8.onnx", "resnet20.fp16.onnx"]
    )
    assert rows["resnet20.onnx"]["top1_agreement"] == 1.0 and rows["resnet20.onnx"]["max_abs_logit_error"] < 1e-3
    assert rows["resnet20.int8.onnx"]["precision"] == "int8" and rows["resnet20.fp16.onnx"]["precision"] == "fp16"
    assert (tmp_path / "validation.md").is_file() and (tmp_path / "train" / "model.pt.json").is_file()
    assert list((tmp_path / "calibration").glob("*.calib.cache"))
    from resnet_deploy.trt.flavours import installed

    if installed():  # engines are built (TensorRT-RTX ahead of time here); they run only on a GPU
        assert sorted(Path(e).name for e in data["engines"]) == ["resnet20.fp16.engine", "resnet20.int8.engine"]
        assert all(Path(e + ".json").is_file() for e in data["engines"])
    bench = data["bench"]["rows"]
    assert {(r["artifact"], r["batch"]) for r in bench} >= {("model.pt", 1), ("resnet20.cpu.int8.onnx", 32)}
    assert all(r["p50_ms"] > 0 for r in bench) and (tmp_path / "bench.json").is_file()
    again = invoke(*args[:2], "1", *args[3:])  # reruns start fresh
    assert again.exit_code == 0, again.output


# Blocks tensorrt (and friends) the way a machine without them behaves.
_BLOCKER = """
import sys
for name in ("tensorrt", "tensorrt_rtx", "pycuda", "cuda"):
    sys.modules[name] = None
"""


def test_package_and_every_help_work_without_tensorrt_and_without_importing_torch():
    code = (
        _BLOCKER
        + """
import resnet_deploy, resnet_deploy.cli
assert "torch" not in sys.modules and "onnx" not in sys.modules, "import must stay light"
from click.testing import CliRunner
for cmd in [[]] + [[c] for c in COMMANDS]:
    result = CliRunner().invoke(resnet_deploy.cli.main, cmd + ["--help"])
    assert result.exit_code == 0, (cmd, result.output)
print("ok")
""".replace("COMMANDS", repr(COMMANDS))
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_python_dash_m_and_missing_dependency_message():
    run = subprocess.run(
        [sys.executable, "-m", "resnet_deploy", "--version"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and "resnet-deploy" in run.stdout
    code = (
        _BLOCKER
        + """
from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import MissingDependencyError
trt = lazy_import("tensorrt", extra="tensorrt")
try:
    trt.Builder
except MissingDependencyError as exc:
    print(exc)
"""
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "tensorrt is not installed" in run.stdout and "JetPack" in run.stdout


def test_a_command_whose_extra_is_missing_says_which_to_install():
    """Without torch (an install without the [train] extra), a command that needs it is one line."""
    code = """
import sys
sys.modules["torch"] = None  # what `import torch` meets where torch is not installed
from click.testing import CliRunner
import resnet_deploy.cli
result = CliRunner().invoke(resnet_deploy.cli.main, ["info", "--depth", "20"], prog_name="resnet-deploy")
print(result.exit_code)
print(result.output)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    code_line, *output = run.stdout.strip().splitlines()
    assert code_line == "2" and len(output) == 1, run.stdout + run.stderr
    assert output[0] == (
        'error: `resnet-deploy info` needs torch, which is not installed: pip install "resnet-deploy[train]"'
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_accepts_json(command):
    assert "--json" in invoke(command, "--help").stdout


def test_usage_errors_are_one_line_too() -> None:
    from tests.cli_helpers import assert_one_line_error, invoke

    assert_one_line_error(invoke("export", "--depth", "20", "--bogus"), "No such option")
    assert_one_line_error(invoke("bench", "x.onnx", "--batch", "1,x"), "bench --help`")
    assert_one_line_error(invoke("nonsense"), "No such command 'nonsense'")
