"""Quantization-aware training: the fine-tuned graph is exactly the one deployed, brings INT8-hostile models
within a budget post-training INT8 cannot meet with every layer still INT8, and resumes where it stopped."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from resnet_deploy.errors import QuantizationError
from resnet_deploy.quantize.budget import BudgetOptions
from resnet_deploy.quantize.calibrate import calibrate_onnx
from resnet_deploy.quantize.layers import quantizable_layers
from resnet_deploy.quantize.qat_options import QatOptions
from tests.cli_helpers import assert_one_line_error, invoke
from tests.conftest import CULPRIT_MODULE, scaled_twin

FAST = {"count": 128, "cache_dir": None}
SHORT = QatOptions(epochs=1, images=256, batch_size=64)  # 4 steps: the narrowed scales do most of the work


@pytest.fixture(scope="module")
def scaled_resnet20(trained_resnet20, tmp_path_factory):
    """The trained ResNet-20 with channel 5 of layer3.0's Conv->ReLU->Conv chain scaled up 1000x into the ReLU
    and down 1000x in the next conv: the same FP32 function, hostile to per-tensor INT8."""
    checkpoint, _ = trained_resnet20
    return scaled_twin(checkpoint, "layer3", 0, 5, 1_000.0, tmp_path_factory.mktemp("scaled") / "scaled.onnx")


@pytest.fixture(scope="module")
def culprit_through_qat(culprit_resnet20, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat") / "culprit.int8.onnx"
    budget = BudgetOptions(0.5, recover="qat", qat=SHORT)
    return calibrate_onnx(culprit_resnet20, out, budget=budget, **FAST)


def int8_weights(model: onnx.ModelProto) -> dict[str, bool]:
    """Each Conv/Gemm: whether its weights come through a DequantizeLinear (it computes in INT8)."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name: n.input[1] in dequantized for n in model.graph.node if n.op_type in ("Conv", "Gemm")}


def test_the_interpreted_graph_computes_what_onnxruntime_computes(culprit_resnet20) -> None:
    """The PyTorch graph QAT trains is the ONNX graph: FP32 to float rounding, and with fake quantization at
    TensorRT's placement the same top-1 classes as ONNX Runtime running the Q/DQ graph."""
    import torch

    from resnet_deploy.artifacts.onnx_io import read_onnx_metadata
    from resnet_deploy.quantize.calib_data import load_held_out_set
    from resnet_deploy.quantize.judge import run_model
    from resnet_deploy.quantize.onnx_torch import build_network
    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors
    from resnet_deploy.quantize.sensitivity import variant

    model = onnx.load(str(culprit_resnet20))
    images = load_held_out_set(read_onnx_metadata(culprit_resnet20), None, 64).images
    amax = dict.fromkeys(qdq_tensors(model), 6.0)
    fp32 = build_network(model, amax, learn_scales=False, keep_out={layer.node for layer in quantizable_layers(model)})
    int8 = build_network(model, amax, learn_scales=False)
    with torch.no_grad():
        ours_fp32 = fp32(torch.from_numpy(images)).numpy()
        ours_int8 = int8(torch.from_numpy(images)).numpy()
    assert np.abs(ours_fp32 - run_model(model, images)).max() < 1e-3
    ort_int8 = run_model(variant(model, amax, ()), images)
    assert (ours_int8.argmax(1) == ort_int8.argmax(1)).mean() >= 0.95
    assert np.abs(ours_int8 - ort_int8).mean() < 0.05 * np.abs(ort_int8).mean()


def test_qat_meets_a_budget_post_training_int8_misses_with_every_layer_int8(culprit_through_qat) -> None:
    budget = culprit_through_qat.budget
    assert budget["post_training_top1_change"]["delta_pp"] > 5  # the culprit ruins post-training INT8
    assert budget["step"] == "qat" and budget["met"] and budget["kept_out"] == []
    assert budget["int8_mac_share"] == 1.0 and budget["top1_change"]["delta_pp"] <= 0.5
    assert budget["qat"]["epochs"] == 1 and budget["qat"]["dataset"] == "digits"
    model = onnx.load(str(culprit_through_qat.path))
    assert all(int8_weights(model).values())  # every Conv and the fc read INT8 weights
    assert not culprit_through_qat.path.with_name(culprit_through_qat.path.name + ".qat-state.pt").exists()


def test_the_qat_graph_records_the_fine_tuning_and_validates_as_it_says(culprit_resnet20, culprit_through_qat):
    """The lineage carries the epochs, the data, and the change before and after; validate, scoring the
    graph itself in ONNX Runtime against the FP32 export on the same held-out images, agrees."""
    from resnet_deploy.artifacts.onnx_io import read_lineage
    from resnet_deploy.quantize.calib_data import load_held_out_set
    from resnet_deploy.quantize.judge import HeldOutJudge

    lineage = read_lineage(culprit_through_qat.path)
    assert lineage.qat is not None and lineage.qat.epochs == 1 and lineage.qat.images_per_epoch == 256
    assert lineage.qat.top1_change_before_pp > 5 >= 0.5 >= lineage.qat.top1_change_after_pp
    assert lineage.budget is not None and lineage.budget.int8_mac_share == 1.0
    reference = onnx.load(str(culprit_resnet20))
    from resnet_deploy.artifacts.onnx_io import read_onnx_metadata

    judge = HeldOutJudge(reference, load_held_out_set(read_onnx_metadata(culprit_resnet20), None, 256))
    change = judge.score(onnx.load(str(culprit_through_qat.path))).change
    assert change.delta_pp == pytest.approx(lineage.qat.top1_change_after_pp)
    result = invoke("inspect", str(culprit_through_qat.path))
    assert result.exit_code == 0 and "qat          1 epoch on" in result.output


def test_the_qat_command_brings_a_cross_layer_scaled_model_within_the_budget(scaled_resnet20, tmp_path) -> None:
    """Also: the state is a planned output, so a file of the user's at its place is refused before any work,
    and replaced (then removed with the finished state) only with --overwrite."""
    out = tmp_path / "scaled.qat.int8.onnx"
    theirs = tmp_path / "scaled.qat.int8.onnx.qat-state.pt"
    theirs.write_text("notes")
    args = ["qat", str(scaled_resnet20), "--epochs", "1", "--train-images", "256", "--batch-size", "64"]
    args += ["--calib-images", "128", "--no-cache", "-o", str(out), "--json"]
    assert_one_line_error(invoke(*args), "qat-state.pt exists and is not `resnet-deploy qat`'s QAT state")
    assert theirs.read_text() == "notes" and not out.exists()
    result = invoke(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not theirs.exists()
    report = json.loads(result.stdout)
    assert report["top1_change_before"]["delta_pp"] > 0.5  # post-training INT8 misses a 0.5 pp budget
    assert report["top1_change_after"]["delta_pp"] <= 0.5 and report["int8_mac_share"] == 1.0
    assert all(int8_weights(onnx.load(str(out))).values())
    again = invoke("qat", str(scaled_resnet20), "--epochs", "2", "-o", str(out))
    assert_one_line_error(again, "--overwrite")  # fine-tuned another way: not ours to replace


def test_when_qat_is_not_enough_layers_are_kept_out_of_the_fine_tuned_model(culprit_resnet20, tmp_path) -> None:
    """A fine-tuning too small to help (one step on 8 images at a vanishing rate, calibration's scales kept)
    leaves the budget missed: the search then keeps the culprit out of the fine-tuned model, and says QAT and
    keep-out met it together."""
    tiny = QatOptions(epochs=1, images=8, learn_scales=False, narrow_scales=False, lr=1e-12)
    budget = BudgetOptions(1.0, recover="qat,keep-out", qat=tiny)
    result = calibrate_onnx(culprit_resnet20, tmp_path / "both.int8.onnx", budget=budget, **FAST)
    assert result.budget["step"] == "qat+keep-out" and result.budget["met"]
    assert [k["module"] for k in result.budget["kept_out"]] == [CULPRIT_MODULE]
    alone = BudgetOptions(1.0, recover="qat", qat=tiny)
    with pytest.raises(QuantizationError, match=r"not met by quantization-aware training.*`qat.epochs`"):
        calibrate_onnx(culprit_resnet20, tmp_path / "alone.int8.onnx", budget=alone, **FAST)


def test_fine_tuning_resumes_from_its_saved_state_and_refuses_another_runs(culprit_resnet20, tmp_path) -> None:
    from resnet_deploy.artifacts.onnx_io import read_onnx_metadata
    from resnet_deploy.quantize.qat import fine_tune
    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors

    model = onnx.load(str(culprit_resnet20))
    metadata = read_onnx_metadata(culprit_resnet20)
    amax = dict.fromkeys(qdq_tensors(model), 6.0)
    state = tmp_path / "out.onnx.qat-state.pt"
    options = QatOptions(epochs=1, images=64, batch_size=32, narrow_scales=False, device="cpu")
    first = fine_tune(model, metadata, amax, options, source_sha256="a", state_path=state, resume=True)
    assert first.resumed_from == 0 and len(first.losses) == 1 and state.exists()
    longer = QatOptions(**{**options.to_dict(), "epochs": 2})
    second = fine_tune(model, metadata, amax, longer, source_sha256="a", state_path=state, resume=True)
    assert second.resumed_from == 1 and len(second.losses) == 1 and second.epochs == 2
    with pytest.raises(QuantizationError, match="another model or with other options; run with those, or delete"):
        fine_tune(model, metadata, amax, longer, source_sha256="b", state_path=state, resume=True)
    state.write_bytes(b"not a state")
    with pytest.raises(QuantizationError, match=r"is not a readable QAT state .*delete it to start over"):
        fine_tune(model, metadata, amax, longer, source_sha256="a", state_path=state, resume=True)


@pytest.mark.rtx
def test_tensorrt_rtx_builds_the_qat_graph_with_every_convolution_int8(culprit_through_qat) -> None:
    """TensorRT's own parser: every convolution and the fc read their data and weights through dequantize
    layers (INT8 inputs), and the network builds (ahead of time, no GPU)."""
    trt = pytest.importorskip("tensorrt_rtx")
    from tests.quantize.test_tensorrt_parse import build

    path = culprit_through_qat.path
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(str(path))
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    produced_by = {layer.get_output(j).name: layer.type for layer in layers for j in range(layer.num_outputs)}
    convolutions = [layer for layer in layers if layer.type == trt.LayerType.CONVOLUTION]
    assert len(convolutions) == 19  # the stem and 18 in the blocks
    for conv in convolutions:
        reads = [produced_by.get(conv.get_input(j).name) for j in range(2)]
        assert reads == [trt.LayerType.DEQUANTIZE, trt.LayerType.DEQUANTIZE], conv.name
    engine, errors = build(path, trt)
    assert not errors and engine is not None and engine.nbytes > 300_000


def test_bad_recovery_settings_are_one_line(trained_resnet20, tmp_path) -> None:
    with pytest.raises(QuantizationError, match="unknown recovery 'retrain'; choose keep-out, qat, qat,keep-out"):
        BudgetOptions(0.5, recover="retrain")
    with pytest.raises(QuantizationError, match=r"drop `budget\.try_methods` or `budget\.recover=qat`"):
        BudgetOptions(0.5, recover="qat", try_methods=True)
    with pytest.raises(QuantizationError, match=r"`qat\.epochs` must be at least 1"):
        QatOptions(epochs=0)
    with pytest.raises(QuantizationError, match=r"`qat\.learn_scales` is true or false, not 1"):
        QatOptions(learn_scales=1)  # type: ignore[arg-type]
    _, onnx_path = trained_resnet20
    result = invoke("calibrate", str(onnx_path), "--recover", "qat", "-o", str(tmp_path / "x.onnx"))
    assert_one_line_error(result, "--recover tunes the accuracy budget: add --max-top1-drop PP")
    result = invoke("qat", str(onnx_path), "--device", "cuda:7", "--no-cache", "-o", str(tmp_path / "y.onnx"))
    assert_one_line_error(result, "no CUDA GPU")
    assert not (tmp_path / "y.onnx").exists()


@pytest.mark.gpu
def test_qat_on_a_gpu_brings_the_culprit_within_the_budget_as_on_the_cpu(culprit_resnet20, tmp_path) -> None:
    """The same fine-tuning on CUDA: the culprit within 0.5 pp after one epoch, every layer INT8."""
    from resnet_deploy.quantize.options import CalibrationOptions
    from resnet_deploy.quantize.qat_onnx import qat_onnx

    calibration = CalibrationOptions(count=128, cache_dir=None)
    options = QatOptions(epochs=1, images=256, batch_size=64, device="cuda")
    result = qat_onnx(culprit_resnet20, tmp_path / "gpu.onnx", calibration, options)
    assert result.top1_change_before["delta_pp"] > 5 and result.top1_change_after["delta_pp"] <= 0.5
    assert all(int8_weights(onnx.load(str(result.path))).values())


def test_torchrun_fine_tunes_in_two_processes_and_the_first_writes_once(culprit_resnet20, tmp_path) -> None:
    """Two Gloo processes on the CPU, each its half of every batch: one output, recorded as the whole epoch's
    images, one report (the first process speaks), no state left behind."""
    import os
    import subprocess
    import sys

    from resnet_deploy.artifacts.onnx_io import read_lineage

    out = tmp_path / "ddp.qat.int8.onnx"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "resnet_deploy", "qat", str(culprit_resnet20), "--epochs", "1", "--train-images", "128"]
    command += ["--batch-size", "32", "--calib-images", "16", "--held-out-images", "16", "--no-cache", "--device"]
    command += ["cpu", "-o", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # one report: a second process's would not parse as one document
    assert report["rank"] == 0 and report["images_per_epoch"] == 128 and done.stdout.count('"ok"') == 1
    lineage = read_lineage(out)
    assert lineage.qat is not None and lineage.qat.epochs == 1 and lineage.qat.images_per_epoch == 128
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.qat.int8.onnx"]
