"""Mistakes a newcomer makes are refused in one line, before any work, and leave nothing behind."""

from __future__ import annotations

import sys

import pytest
import torch

from resnet_deploy import build_model, save_checkpoint
from tests.cli_helpers import assert_one_line_error, invoke


@pytest.fixture(scope="module")
def trained_like_onnx(tmp_path_factory):
    """A ResNet-20 exported from a checkpoint: its metadata records the checkpoint's sha256."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    save_checkpoint(build_model(20), root / "model.pt", {})
    result = invoke("export", "--checkpoint", str(root / "model.pt"), "-o", str(root / "resnet20.onnx"), "--no-verify")
    assert result.exit_code == 0, result.output
    return root / "resnet20.onnx"


def test_a_refused_demo_leaves_the_previous_demo_intact(tmp_path) -> None:
    previous = tmp_path / "demo-out" / "train"
    previous.mkdir(parents=True)
    (previous / "train_state.pt").write_bytes(b"state")
    (previous / "model.pt").write_bytes(b"model")
    out = str(tmp_path / "demo-out")
    assert_one_line_error(invoke("demo", "--out", out, "--epochs", "0"), "--epochs")
    assert_one_line_error(invoke("demo", "--out", out, "--depth", "50"), "choose one of 20, 32, 44, 56, 110, 1202")
    assert_one_line_error(invoke("demo", "--out", out, "--depth", "21"), "not 21")
    assert sorted(p.name for p in previous.iterdir()) == ["model.pt", "train_state.pt"]
    assert not (tmp_path / "fresh").exists()


def test_random_weights_never_replace_an_export_of_a_checkpoint(trained_like_onnx) -> None:
    before = trained_like_onnx.read_bytes()
    result = invoke("export", "--depth", "20", "-o", str(trained_like_onnx))
    assert_one_line_error(result, "exists and is not `resnet-deploy export`'s ONNX export from these inputs")
    assert "warning" not in result.stderr  # refused before the random-weights warning
    result = invoke(
        "build-engine", "--depth", "20", "--target-cc", "8.9", "-o", str(trained_like_onnx.with_suffix(".engine"))
    )
    assert_one_line_error(result, "exists and is not `resnet-deploy build-engine`'s ONNX export")
    assert trained_like_onnx.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "--depth", "20", "-o", "{tmp}/m.txt"], "ending in .onnx"),
        (["export", "--depth", "20", "--tolerance", "-1", "-o", "{tmp}/m.onnx"], "--tolerance"),
        (["export", "--depth", "20", "--static-batch", "0", "-o", "{tmp}/m.onnx"], "--static-batch"),
        (
            ["build-engine", "--depth", "20", "--target-cc", "8.9", "-o", "{tmp}/m.onnx"],
            "an engine file (the runner goes by the suffix): give a path ending in .engine",
        ),
        (["build-engine", "--depth", "20", "--int8", "--calib-images", "0", "-o", "{tmp}/m.engine"], "--calib-images"),
        (["bench", "{onnx}", "--plot", "{tmp}/chart.txt"], "give a path ending in .png"),
        (["bench", "{onnx}", "--iters", "0"], "--iters"),
        (["validate", "--checkpoint", "{tmp}/m.txt", "{onnx}"], "the reference is the original model (a .pt/.pth"),
        (["validate", "--checkpoint", "{onnx}", "--max-top1-drop", "1"], "name at least one in --artifacts"),
        (["validate", "--checkpoint", "{tmp}/m.pt", "{onnx}", "--gate-on", "upper-bound"], "give --max-top1-drop too"),
        (["validate", "--checkpoint", "{tmp}/m.pt", "{onnx}", "--gate-on", "upper"], "'upper' is not one of"),
        (["convert", "{onnx}", "--fp16", "--keep-fp32", "Foo", "-o", "{tmp}/m.fp16.onnx"], "has no such op"),
    ],
)
def test_refused_before_any_work(trained_like_onnx, tmp_path, args, needle) -> None:
    filled = [a.format(tmp=tmp_path, onnx=trained_like_onnx) for a in args]
    assert_one_line_error(invoke(*filled), needle)
    assert list(tmp_path.iterdir()) == []


def test_an_fp16_model_is_not_calibrated(trained_like_onnx, tmp_path) -> None:
    half = tmp_path / "m.fp16.onnx"
    assert invoke("convert", str(trained_like_onnx), "--fp16", "-o", str(half)).exit_code == 0
    assert_one_line_error(invoke("calibrate", str(half), "-o", str(tmp_path / "q.onnx")), "is FP16; calibrate the FP32")
    assert not (tmp_path / "q.onnx").exists()


def test_a_text_file_is_not_a_checkpoint(tmp_path) -> None:
    (tmp_path / "fake.pt").write_text("hello\n")
    assert_one_line_error(
        invoke("export", "--checkpoint", str(tmp_path / "fake.pt")), "neither a zip archive nor a pickle"
    )


def test_plot_without_matplotlib_is_refused_before_timing(trained_like_onnx, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = invoke("bench", str(trained_like_onnx), "--plot", str(tmp_path / "chart.png"))
    assert_one_line_error(result, 'pip install "resnet-deploy[plot]"')
    assert "p50" not in result.output and list(tmp_path.iterdir()) == []


def test_the_demo_never_takes_over_a_directory_it_did_not_write(tmp_path) -> None:
    mine = tmp_path / "work"
    (mine / "train").mkdir(parents=True)
    (mine / "train" / "train_state.pt").write_bytes(b"my run")
    (mine / "resnet20.onnx").write_bytes(b"my export")
    result = invoke("demo", "--out", str(mine), "--epochs", "1")
    assert_one_line_error(result, "holds files a demo did not write")
    assert (mine / "train" / "train_state.pt").read_bytes() == b"my run"
    assert (mine / "resnet20.onnx").read_bytes() == b"my export"
