"""INT8 within an accuracy budget: a planted culprit is found, kept out, and the budget met; a clean
model keeps every layer in INT8; a budget out of reach is one line naming the best drop reached."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from resnet_deploy.errors import QuantizationError
from resnet_deploy.quantize.budget import BudgetOptions
from resnet_deploy.quantize.calibrate import calibrate_onnx
from resnet_deploy.quantize.layers import quantizable_layers
from tests.conftest import CULPRIT_MODULE

FAST = {"count": 128, "cache_dir": None}  # calibration images: the search, not the ranges, is under test


def culprit_node(path) -> str:
    layers = quantizable_layers(onnx.load(str(path)))
    return next(layer.node for layer in layers if layer.module == CULPRIT_MODULE)


@pytest.fixture(scope="module")
def culprit_within_budget(culprit_resnet20, tmp_path_factory):
    out = tmp_path_factory.mktemp("budget") / "culprit.int8.onnx"
    said: list[str] = []
    result = calibrate_onnx(culprit_resnet20, out, budget=BudgetOptions(1.0, images=128), say=said.append, **FAST)
    return result, said


def test_the_planted_culprit_hurts_int8_and_is_the_one_kept_out(culprit_resnet20, culprit_within_budget) -> None:
    result, said = culprit_within_budget
    budget = result.budget
    everything = budget["all_int8_top1_change"]
    assert everything["delta_pp"] > 5 and everything["significant"]  # per-tensor INT8 measurably hurts
    assert [k["node"] for k in budget["kept_out"]] == [culprit_node(culprit_resnet20)]
    assert budget["kept_out"][0]["module"] == CULPRIT_MODULE
    assert budget["met"] and budget["top1_change"]["delta_pp"] <= 1.0
    assert len(budget["steps"]) == 1  # found first: the ranking put it on top
    assert 0.94 < budget["int8_mac_share"] < 0.95  # one 3x3 conv of ResNet-20's 40.5 M MACs (5.8%)
    assert any("over the budget" in line for line in said)


def test_the_mixed_graph_records_what_was_kept_out_and_computes_it_in_fp16(culprit_resnet20, culprit_within_budget):
    result, _ = culprit_within_budget
    model = onnx.load(str(result.path))
    props = {p.key: p.value for p in model.metadata_props}
    node = culprit_node(culprit_resnet20)
    (kept,) = json.loads(props["int8_kept_out"])
    assert kept["node"] == node and kept["module"] == CULPRIT_MODULE
    assert kept["why"].startswith("Δtop-1 (estimate) +") and "over the 1 pp budget" in kept["why"]
    assert props["int8_kept_out_precision"] == "fp16" and props["precision"] == "int8"
    recorded = json.loads(props["accuracy_budget"])
    assert recorded["max_top1_drop_pp"] == 1.0 and recorded["gate"] == "estimate" and recorded["held_out_images"] == 128
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    kept = next(n for n in model.graph.node if n.name == node)
    assert producers[kept.input[0]].op_type == "Cast"  # no Q/DQ: its input cast down to fp16
    assert inits[kept.input[1]].data_type == onnx.TensorProto.FLOAT16
    quantized = [n for n in model.graph.node if n.op_type == "Conv" and n.name != node]
    assert all(producers[n.input[0]].op_type == "DequantizeLinear" for n in quantized)  # the rest stay INT8


def test_the_mixed_graph_validates_on_the_test_split(trained_resnet20, culprit_within_budget) -> None:
    """The budget was met on 128 held-out images; the whole test split (360) agrees within noise."""
    from contextlib import ExitStack

    from resnet_deploy.runtime import open_backend
    from resnet_deploy.validate import validate

    checkpoint, _ = trained_resnet20
    result, _ = culprit_within_budget
    with ExitStack() as stack:
        reference = stack.enter_context(open_backend(checkpoint))
        mixed = stack.enter_context(open_backend(result.path))
        report = validate(reference, [mixed])
    assert report.images == 360
    assert abs(report.artifacts[0].delta_top1_pp) <= 2.0
    assert report.artifacts[0].top1_agreement > 0.95


def test_a_clean_model_keeps_every_layer_in_int8(trained_resnet20, tmp_path) -> None:
    _, clean = trained_resnet20
    result = calibrate_onnx(clean, tmp_path / "clean.int8.onnx", budget=BudgetOptions(1.0, images=128), **FAST)
    assert result.budget["kept_out"] == [] and result.budget["int8_mac_share"] == 1.0
    assert result.budget["steps"] == []  # scored once: no scan when the all-INT8 model is within budget
    assert result.placement["kept_out"] == 0 and result.placement["weight_dq"] == 20


def test_a_budget_the_images_cannot_bound_is_refused_before_any_work() -> None:
    """With 32 images even perfect agreement has an upper bound of 10.7 pp: 1 pp on the bound is unreachable."""
    with pytest.raises(QuantizationError) as caught:
        BudgetOptions(1.0, gate="upper-bound", images=32)
    message = str(caught.value)
    assert "\n" not in message and "below 10.72 pp" in message and "at least 381 --held-out-images" in message
    BudgetOptions(1.0, gate="upper-bound", images=381)  # and 381 can
    with pytest.raises(QuantizationError, match="never 0"):
        BudgetOptions(0.0, gate="upper-bound", images=10_000)


class AlwaysWorse:
    """A judge that scores every variant 10 worse / 0 better of 100 images: no mix meets a 1 pp budget."""

    images = 100
    held_out = type("HeldOut", (), {"spec": "digits"})()

    def score(self, model):
        from resnet_deploy.paired_stats import change_from_counts
        from resnet_deploy.quantize.judge import VariantScore

        return VariantScore(0.9, 0.1, 1.0, 0.1, change_from_counts(100, 10, 0))


def test_an_unmet_budget_is_one_line_naming_the_best_drop_reached(trained_resnet20) -> None:
    from resnet_deploy.quantize.budget import search
    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors

    _, clean = trained_resnet20
    model = onnx.load(str(clean))
    layers = quantizable_layers(model)
    outcome = search(
        model, dict.fromkeys(qdq_tensors(model), 4.0), layers, AlwaysWorse(), BudgetOptions(1.0), method="minmax"
    )
    assert not outcome.met and len(outcome.steps) == len(layers)  # every layer tried, in rank order
    message = outcome.unmet_message()
    assert "\n" not in message and "cannot be met: the best reached was +10.00 pp" in message
    assert "method minmax" in message and "--try-methods" in message


def test_keeping_a_layer_out_in_fp32_leaves_it_untouched(trained_resnet20, tmp_path) -> None:
    from resnet_deploy.quantize.qdq_tensorrt import insert_tensorrt_qdq, qdq_tensors

    _, clean = trained_resnet20
    model = onnx.load(str(clean))
    first = quantizable_layers(model)[1]
    insert_tensorrt_qdq(model, dict.fromkeys(qdq_tensors(model), 4.0), keep_out=[first.node], keep_out_precision="fp32")
    node = next(n for n in model.graph.node if n.name == first.node)
    inits = {i.name: i for i in model.graph.initializer}
    assert node.input[1] == f"{first.module}.weight" and inits[node.input[1]].data_type == onnx.TensorProto.FLOAT
    assert not any(n.op_type == "Cast" for n in model.graph.node)


def test_an_unknown_layer_to_keep_out_is_refused(trained_resnet20) -> None:
    from resnet_deploy.quantize.qdq_tensorrt import insert_tensorrt_qdq

    _, clean = trained_resnet20
    with pytest.raises(QuantizationError, match="no quantized layer is named nope"):
        insert_tensorrt_qdq(onnx.load(str(clean)), {}, keep_out=["nope"])


def test_layers_are_named_for_pytorch_and_counted_in_macs(trained_resnet20) -> None:
    _, clean = trained_resnet20
    layers = quantizable_layers(onnx.load(str(clean)))
    ops = [layer.op for layer in layers]
    assert ops.count("Conv") == 19 and ops.count("Gemm") == 1 and ops.count("Add") == 9
    modules = [layer.module for layer in layers]
    assert modules[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0 (residual add)"]
    assert modules[-1] == "fc"
    assert sum(layer.macs for layer in layers) == 40_551_040  # ResNet-20 at 32x32: 40.55 M MACs (the paper's ~41 M)
    assert len({layer.node for layer in layers}) == len(layers)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"max_top1_drop": -1}, "pp >= 0"),
        ({"max_top1_drop": float("nan")}, "pp >= 0"),
        ({"max_top1_drop": 1, "gate": "median"}, "unknown gate"),
        ({"max_top1_drop": 1, "precision": "int4"}, "fp16 or fp32"),
        ({"max_top1_drop": 1, "images": 0}, "at least 1"),
    ],
)
def test_bad_budget_options_are_refused(fields, message) -> None:
    with pytest.raises(QuantizationError, match=message):
        BudgetOptions(**fields)


def test_the_budget_needs_the_tensorrt_placement(trained_resnet20, tmp_path) -> None:
    _, clean = trained_resnet20
    with pytest.raises(QuantizationError, match="--target tensorrt"):
        calibrate_onnx(clean, tmp_path / "x.onnx", target="cpu", budget=BudgetOptions(1.0), **FAST)


def test_mixed_graph_runs_in_onnxruntime_and_agrees_with_fp32(culprit_resnet20, culprit_within_budget) -> None:
    """On test images the model never calibrated on: the all-INT8 graph disagreed on a sixth of them."""
    from resnet_deploy.onnx_io import read_onnx_metadata
    from resnet_deploy.quantize.calib_data import load_held_out_set
    from resnet_deploy.quantize.judge import run_model

    result, _ = culprit_within_budget
    images = load_held_out_set(read_onnx_metadata(culprit_resnet20), None, 64, seed=1).images
    fp32 = run_model(onnx.load(str(culprit_resnet20)), images)
    mixed = run_model(onnx.load(str(result.path)), images)
    assert mixed.shape == fp32.shape == (64, 10) and np.isfinite(mixed).all()
    assert (mixed.argmax(1) == fp32.argmax(1)).mean() >= 0.95


def test_budget_options_without_a_budget_are_refused(trained_resnet20, tmp_path) -> None:
    from tests.cli_helpers import assert_one_line_error, invoke

    _, clean = trained_resnet20
    out = str(tmp_path / "q.onnx")
    assert_one_line_error(invoke("calibrate", str(clean), "-o", out, "--gate-on", "upper-bound"), "add --max-top1-drop")
    assert_one_line_error(
        invoke("calibrate", str(clean), "-o", out, "--target", "cpu", "--max-top1-drop", "1"), "--target tensorrt"
    )
    assert_one_line_error(invoke("calibrate", str(clean), "-o", out, "--max-top1-drop", "nan"), "nan")


@pytest.mark.rtx
def test_build_engine_keeps_the_culprit_out_and_records_it_in_the_sidecar(culprit_resnet20, tmp_path) -> None:
    import shutil

    from tests.cli_helpers import assert_one_line_error, invoke

    onnx_path = tmp_path / "culprit.onnx"
    shutil.copy(culprit_resnet20, onnx_path)
    args = ["build-engine", "--onnx", str(onnx_path), "--int8", "--target-cc", "8.9", "--calib-images", "64"]
    result = invoke(*args, "--max-top1-drop", "1", "--held-out-images", "96", "--cache-dir", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "culprit.int8.engine.json").read_text())
    assert [k["module"] for k in sidecar["int8_kept_out"]] == [CULPRIT_MODULE]
    assert sidecar["accuracy_budget"]["met"] and sidecar["accuracy_budget"]["max_top1_drop_pp"] == 1.0
    assert "int8_kept_out" not in sidecar["model"]  # how the graph was made, not what the model is
    from resnet_deploy.artifacts.engine_sidecar import EngineSidecar

    assert EngineSidecar.read(tmp_path / "culprit.int8.engine").int8_kept_out == sidecar["int8_kept_out"]
    # an INT8 graph given as it is: there is nothing left to calibrate within a budget
    again = invoke(
        "build-engine",
        "--onnx",
        str(tmp_path / "culprit.int8.onnx"),
        "--int8",
        "--target-cc",
        "8.9",
        "-o",
        str(tmp_path / "again.engine"),
        "--max-top1-drop",
        "1",
    )
    assert_one_line_error(again, "calibrates nothing")
