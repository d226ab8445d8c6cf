"""INT8 within an accuracy budget: a planted culprit is found, kept out, and the budget met; a clean
model keeps every layer in INT8; a budget out of reach is one line naming the best drop reached."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from resnet_deploy.errors import QuantizationError
from resnet_deploy.messages import Recorded
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
    said = Recorded()
    result = calibrate_onnx(culprit_resnet20, out, budget=BudgetOptions(1.0, images=128), out=said, **FAST)
    return result, said.lines


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

    from resnet_deploy.evaluate.validate import validate
    from resnet_deploy.runtime import open_backend

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
    assert "\n" not in message and "below 10.72 pp" in message and "at least 381 `budget.images`" in message
    BudgetOptions(1.0, gate="upper-bound", images=381)  # and 381 can
    with pytest.raises(QuantizationError, match="never 0"):
        BudgetOptions(0.0, gate="upper-bound", images=10_000)


class AlwaysWorse:
    """A judge that scores every variant 10 worse / 0 better of 100 images: no mix meets a 1 pp budget."""

    images = 100
    held_out = type("HeldOut", (), {"spec": "digits"})()

    def score(self, model):
        from resnet_deploy.evaluate.paired_stats import change_from_counts
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
    assert not outcome.met  # prefixes of the ranking, doubling up to every layer kept out
    assert [len(step["kept_out"]) for step in outcome.steps] == [1, 2, 4, 8, 16, len(layers)] and len(layers) == 29
    message = outcome.unmet_message()
    assert "\n" not in message and "cannot be met: the best reached was +10.00 pp" in message
    assert "method minmax" in message and "`budget.try_methods`" in message


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
    with pytest.raises(QuantizationError, match="`target=tensorrt`"):
        calibrate_onnx(clean, tmp_path / "x.onnx", target="cpu", budget=BudgetOptions(1.0), **FAST)


def test_mixed_graph_runs_in_onnxruntime_and_agrees_with_fp32(culprit_resnet20, culprit_within_budget) -> None:
    """On test images the model never calibrated on: the all-INT8 graph disagreed on a sixth of them."""
    from resnet_deploy.artifacts.onnx_io import read_onnx_metadata
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

    read = EngineSidecar.read(tmp_path / "culprit.int8.engine")
    assert read.int8_kept_out == sidecar["int8_kept_out"]
    lineage = read.graph_lineage  # typed: how the graph built was made
    assert [k.module for k in lineage.budget.kept_out] == [CULPRIT_MODULE] and lineage.calibration.images == 64
    assert lineage.precision == "int8" and lineage.quantization == "qdq-tensorrt"
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
    assert_one_line_error(again, "int8 already: pass the FP32 ONNX")


class ScoresByKeptOut:
    """A judge that reads which Convs a variant keeps out of INT8 (weights not behind a DequantizeLinear)
    and scores by that: keeping out ``first`` ranks highest in the scan but does not help; only
    ``culprit`` brings the drop within 1 pp."""

    images = 100
    held_out = type("HeldOut", (), {"spec": "digits"})()

    def __init__(self, first: str, culprit: str) -> None:
        self.first, self.culprit = first, culprit

    def score(self, model):
        from resnet_deploy.evaluate.paired_stats import change_from_counts
        from resnet_deploy.quantize.judge import VariantScore

        kept = {n.name for n in model.graph.node if n.op_type == "Conv" and not n.input[1].endswith("_dq")}
        agreement = 0.95 if kept == {self.first} else 0.93 if kept == {self.culprit} else 0.9
        worse = 0 if self.culprit in kept else 10
        return VariantScore(agreement, 0.1, 1.0, 0.1, change_from_counts(100, worse, 0))


def test_a_layer_kept_out_on_the_way_that_did_not_help_goes_back_into_int8(trained_resnet20) -> None:
    from resnet_deploy.quantize.budget import search
    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors

    _, clean = trained_resnet20
    model = onnx.load(str(clean))
    layers = quantizable_layers(model)
    first, culprit = layers[1].node, layers[5].node
    judge = ScoresByKeptOut(first, culprit)
    recorded = Recorded()
    said = recorded.lines
    amax = dict.fromkeys(qdq_tensors(model), 4.0)
    outcome = search(model, amax, layers, judge, BudgetOptions(1.0), method="entropy", out=recorded)
    assert outcome.met and [layer.node for layer in outcome.kept_out] == [culprit]
    assert any("back in INT8" in line and layers[1].module in line for line in said)
    assert list(outcome.reasons()) == [culprit]


def test_among_methods_missing_the_budget_the_smallest_drop_is_reported() -> None:
    from resnet_deploy.evaluate.paired_stats import change_from_counts
    from resnet_deploy.quantize.budget import BudgetOutcome, best
    from resnet_deploy.quantize.judge import VariantScore
    from resnet_deploy.quantize.layers import QuantLayer

    layers = [QuantLayer("a", "Conv", "a", 10), QuantLayer("b", "Conv", "b", 10)]

    def outcome(method, worse, kept, met=False):
        score = VariantScore(0.9, 0.1, 1.0, 0.1, change_from_counts(100, worse, 0))
        return BudgetOutcome(method, BudgetOptions(0.5), layers, kept, score, score, 100, "digits", met=met)

    entropy, minmax = outcome("entropy", 5, []), outcome("minmax", 1, layers[:1])
    assert best([entropy, minmax]) is minmax  # +1 pp beats +5 pp, whatever stays in INT8
    met_more_int8, met_less = outcome("percentile", 0, [], met=True), outcome("minmax", 0, layers[:1], met=True)
    assert best([minmax, met_less, met_more_int8]) is met_more_int8


def test_a_torchscript_export_keeps_layers_out_in_fp16_and_names_them(tmp_path) -> None:
    """The TorchScript exporter (opset <= 17, TensorRT 8.x) routes biases through Identity nodes and
    names nodes by scope (/layer1/layer1.0/conv1/Conv): both must work."""
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model
    from resnet_deploy.quantize.judge import run_model
    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors
    from resnet_deploy.quantize.sensitivity import variant

    torch.manual_seed(0)
    source = open_model(depth=20)
    path = tmp_path / "r20.onnx"
    export_onnx(source.model, path, source.metadata, opset=17, verify=False)
    model = onnx.load(str(path))
    layers = quantizable_layers(model)
    modules = [layer.module for layer in layers]
    assert modules[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0 (residual add)"]
    assert modules[-1] == "fc" and "" not in modules
    keep = {layer.node for layer in layers}  # every layer: the graph is FP16 wherever it computes
    mixed = variant(model, dict.fromkeys(qdq_tensors(model), 4.0), keep)
    onnx.checker.check_model(mixed, full_check=True)
    images = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    fp32 = run_model(model, images)
    assert not any(n.op_type == "QuantizeLinear" for n in mixed.graph.node)
    assert np.abs(run_model(mixed, images) - fp32).max() < 0.01 * np.abs(fp32).max()  # FP16 rounding only


def test_a_plain_calibration_does_not_overwrite_one_made_within_a_budget(trained_resnet20, tmp_path) -> None:
    from tests.cli_helpers import assert_one_line_error, invoke

    _, clean = trained_resnet20
    out = str(tmp_path / "q.int8.onnx")
    common = ["calibrate", str(clean), "-o", out, "--calib-images", "32", "--no-cache"]
    first = invoke(*common, "--max-top1-drop", "5", "--held-out-images", "32")
    assert first.exit_code == 0, first.output
    assert_one_line_error(invoke(*common), "q.int8.onnx", code=2)
    assert invoke(*common, "--max-top1-drop", "5", "--held-out-images", "32").exit_code == 0  # its own: redone


def test_build_engine_refuses_a_budget_it_cannot_use_before_any_export(tmp_path) -> None:
    from tests.cli_helpers import assert_one_line_error, invoke

    engine = tmp_path / "r20.fp16.engine"
    result = invoke("build-engine", "--depth", "20", "--fp16", "--max-top1-drop", "1", "-o", str(engine))
    assert_one_line_error(result, "an FP16 build calibrates nothing")
    assert list(tmp_path.iterdir()) == []  # no export left behind


def test_a_fixed_batch_export_calibrates_and_is_judged_on_its_real_images_only(trained_resnet20, tmp_path) -> None:
    """A static batch of 3 takes exactly 3 images: feeds are padded, and the padding reaches no range."""
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model
    from resnet_deploy.quantize.judge import run_model

    checkpoint, dynamic = trained_resnet20
    source = open_model(checkpoint)
    fixed = tmp_path / "b3.onnx"
    export_onnx(source.model, fixed, source.metadata, static_batch=3, verify=False)
    options = {"method": "minmax", "count": 32, "cache_dir": None}
    from_fixed = calibrate_onnx(fixed, tmp_path / "b3.int8.onnx", **options)
    from_dynamic = calibrate_onnx(dynamic, tmp_path / "dyn.int8.onnx", **options)

    def scales(path):
        model = onnx.load(str(path))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        return [float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]

    assert scales(from_fixed.path) == pytest.approx(scales(from_dynamic.path), rel=1e-5)  # same images, same ranges
    images = np.random.default_rng(0).random((7, 3, 32, 32), dtype=np.float32)
    assert run_model(onnx.load(str(fixed)), images).shape == (7, 10)


def test_trying_every_method_keeps_the_best_and_records_each(culprit_resnet20, tmp_path) -> None:
    from resnet_deploy.quantize.options import METHODS

    budget = BudgetOptions(1.0, images=64, try_methods=True)
    result = calibrate_onnx(culprit_resnet20, tmp_path / "q.onnx", budget=budget, count=64, cache_dir=None)
    tried = result.budget["methods_tried"]
    assert [t["method"] for t in tried] == list(METHODS)
    assert all(t["met"] and t["kept_out"][0] == culprit_node(culprit_resnet20) for t in tried)  # each finds it first
    chosen = min(tried, key=lambda t: (-round(t["int8_mac_share"], 9), t["gated_pp"]))
    assert result.method == result.budget["method"] == chosen["method"]
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["calibration_method"] == chosen["method"]


def test_inspect_names_the_layer_the_budget_kept_out_in_its_summary(culprit_within_budget) -> None:
    from resnet_deploy.pipeline import InspectJob, plan, run

    result, _ = culprit_within_budget
    found = run(plan(InspectJob(result.path)))
    assert found.summary.startswith("19 of 20 Conv/Gemm layers INT8, 94.")
    assert found.summary.endswith(f"; 1 in FP16: {CULPRIT_MODULE} (budget)")
    kept = [layer for layer in found.layers if layer["module"] == CULPRIT_MODULE]
    assert [layer["precision"] for layer in kept] == ["fp16"] and kept[0]["activation_scale"] is None
    assert found.lineage["budget"]["kept_out"][0]["module"] == CULPRIT_MODULE


def test_a_budget_is_never_scored_on_labels_the_model_never_saw(trained_resnet20, tmp_path) -> None:
    """A 7-class model on the 10-class digits, and a model that records no dataset, get no verdict."""
    import dataclasses

    from resnet_deploy.artifacts.model_spec import model_config
    from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
    from resnet_deploy.errors import DatasetError
    from resnet_deploy.quantize.calib_data import load_held_out_set

    seven = ArtifactMetadata(config=model_config(20, num_classes=7), mean=(0.5,), std=(0.25,), dataset="digits")
    with pytest.raises(DatasetError, match=r"^digits has 10 classes but the model has 7; its accuracy cannot"):
        load_held_out_set(seven, None, 64)
    unknown = dataclasses.replace(seven, config=model_config(20), dataset=None)
    with pytest.raises(DatasetError, match=r"^resnet20 records no dataset \(random or outside weights\)"):
        load_held_out_set(unknown, None, 64)
    assert load_held_out_set(unknown, "digits", 64).labels.shape == (64,)  # named by the user: scored
