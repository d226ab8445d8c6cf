"""`resnet-deploy train` end to end: JSON summary, export of the result, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.cli_helpers import assert_one_line_error, invoke
from tests.factories import write_tiny_cifar


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"), train=40, test=20)


def test_train_json_then_export_takes_everything_from_the_checkpoint(cifar_dir, tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = invoke(
        "train",
        "--depth",
        "20",
        "--data",
        f"cifar10:{cifar_dir}",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "-o",
        str(run_dir),
        "--json",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["architecture"] == "resnet20" and summary["epochs"] == 2
    assert len(summary["history"]) == 2 and 0 <= summary["test_top1_error"] <= 100
    assert "epoch   2/2" in result.stderr  # human lines go to stderr under --json

    onnx_path = tmp_path / "r20.onnx"
    exported = invoke("export", "--checkpoint", summary["checkpoint"], "-o", str(onnx_path), "--json")
    assert exported.exit_code == 0, exported.output
    assert "randomly initialised" not in exported.stderr
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    assert props["dataset"] == f"cifar10:{cifar_dir.resolve()}" and props["pixel_mean"] == "true"
    assert json.loads(props["class_names"])[:2] == ["class0", "class1"]
    assert json.loads(props["mean"]) == [0.0, 0.0, 0.0]

    # The ONNX subtracts the mean image itself: [0, 1] images in, the checkpoint's logits out.
    from resnet_deploy.models.source import open_model

    model = open_model(summary["checkpoint"]).model
    x = torch.rand(3, 3, 32, 32)
    (logits,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(logits, model(x).detach().numpy(), atol=1e-4)


def test_resume_via_cli(cifar_dir, tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = ["--data", f"cifar10:{cifar_dir}", "--batch-size", "16", "--no-progress"]
    assert invoke("train", "--depth", "20", "--epochs", "1", "-o", str(run_dir), *args).exit_code == 0
    assert_one_line_error(invoke("train", "--depth", "20", "--epochs", "1", "-o", str(run_dir), *args), "--resume")
    assert_one_line_error(invoke("train", "--resume", str(run_dir), "--depth", "56"), "drop --depth")
    # --data digits given is data given, not "no --data": this run trained on CIFAR
    assert_one_line_error(invoke("train", "--resume", str(run_dir), "--data", "digits"), "not digits; drop --data")
    result = invoke("train", "--resume", str(run_dir), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "already finished its 1 epochs" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--depth", "20", "--data", "imagenet"], "unknown dataset 'imagenet'; use digits"),
        (["--depth", "20", "--data", "cifar10:/nonexistent/x"], "does not exist"),
        (["--depth", "21"], "unknown depth 21"),
        (["--depth", "20", "--num-classes", "3"], "has 10 classes, not 3; drop --num-classes"),
        (["--resume", "/nonexistent/run"], "nothing to resume"),
        (["--depth", "20", "--input-size", "0"], "'--input-size': 0 is not in the range x>=1"),
        (["--depth", "20", "--input-size", "2"], "input size 2 is too small for resnet20"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, needle) -> None:
    assert_one_line_error(invoke("train", *args, "-o", str(tmp_path / "r"), "--no-progress"), needle)
    assert not (tmp_path / "r" / "model.pt").exists()


def test_missing_cifar_file_is_named(cifar_dir, tmp_path) -> None:
    import shutil

    broken = tmp_path / "c"
    shutil.copytree(cifar_dir, broken)
    (broken / "batches.meta").unlink()
    result = invoke("train", "--depth", "20", "--data", f"cifar10:{broken}", "-o", str(tmp_path / "r"))
    assert_one_line_error(result, "is missing batches.meta")


def test_usage_errors() -> None:
    result = invoke("train")
    assert result.exit_code == 2 and "give --depth" in result.stderr
    assert "--new-head needs --checkpoint" in invoke("train", "--depth", "20", "--new-head").stderr


@pytest.mark.slow
def test_digits_resnet20_default_recipe_reaches_3_percent(tmp_path) -> None:
    """The README's number: default epochs on the embedded digits, test top-1 error <= 3%."""
    result = invoke("train", "--depth", "20", "-o", str(tmp_path / "r"), "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_top1_error"] <= 3.0
