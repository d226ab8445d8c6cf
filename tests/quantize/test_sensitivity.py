"""Per-layer sensitivity: the planted culprit ranks first, every layer is named for PyTorch and for
TensorRT, and the mixed-precision graph parses and builds with TensorRT's own parser."""

from __future__ import annotations

import json

import onnx
import pytest

from resnet_deploy.quantize.layers import quantizable_layers
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.quantize.sensitivity import model_sensitivity, variant
from tests.cli_helpers import assert_one_line_error, invoke
from tests.conftest import CULPRIT_MODULE

LAYERS = 29  # ResNet-20: 19 Conv, 1 Gemm, 9 residual Add


@pytest.fixture(scope="module")
def culprit_scan(culprit_resnet20):
    options = CalibrationOptions(count=64, cache_dir=None)
    return model_sensitivity(culprit_resnet20, options, images=64)


def test_the_culprit_ranks_first_by_what_leaving_it_out_restores(culprit_scan) -> None:
    first, second = culprit_scan.layers[:2]
    assert first.layer.module == CULPRIT_MODULE
    restored, _ = first.restored(culprit_scan.all_int8, culprit_scan.images)
    assert restored >= 5 and restored > 3 * max(second.restored(culprit_scan.all_int8, culprit_scan.images)[0], 1)
    assert first.left_out.top1_agreement > 0.95 > culprit_scan.all_int8.top1_agreement
    assert first.alone is not None and first.alone.kl > 10 * max(item.alone.kl for item in culprit_scan.layers[1:])


def test_every_layer_is_scored_alone_and_left_out(culprit_scan) -> None:
    assert len(culprit_scan.layers) == LAYERS
    assert culprit_scan.variants == 1 + 2 * LAYERS  # all-INT8 once, then each layer twice
    assert culprit_scan.images == 64 and culprit_scan.dataset == "digits"
    shares = sum(item.macs_share for item in culprit_scan.layers)
    assert shares == pytest.approx(1.0)


def test_the_table_and_json_name_the_onnx_node_and_the_pytorch_module(culprit_resnet20, culprit_scan) -> None:
    node = next(x.node for x in quantizable_layers(onnx.load(str(culprit_resnet20))) if x.module == CULPRIT_MODULE)
    table = culprit_scan.table().splitlines()
    assert "ONNX node" in table[0] and "PyTorch module" in table[0]
    assert node in table[1] and CULPRIT_MODULE in table[1]  # ranked first
    data = json.loads(json.dumps(culprit_scan.to_dict()))
    assert data["layers"][0]["node"] == node and data["layers"][0]["module"] == CULPRIT_MODULE
    assert set(data["layers"][0]) >= {"macs", "macs_share", "restored_images", "alone", "left_out"}
    assert set(data["layers"][0]["alone"]) >= {"top1_agreement", "kl", "max_logit_error", "top1_change"}
    markdown = culprit_scan.table(markdown=True).splitlines()
    assert markdown[0].startswith("| #") and len(markdown) == 2 + LAYERS


def test_the_cli_prints_the_ranked_table_and_json(culprit_resnet20, tmp_path) -> None:
    args = ["sensitivity", str(culprit_resnet20), "--images", "32", "--calib-images", "32", "--no-cache"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["layers"][0]["module"] == CULPRIT_MODULE and len(data["layers"]) == LAYERS
    assert data["held_out_images"] == 32


def test_the_cli_refuses_what_it_cannot_scan(trained_resnet20, tmp_path) -> None:
    checkpoint, onnx_path = trained_resnet20
    assert_one_line_error(invoke("sensitivity", str(checkpoint)), "scan the FP32 ONNX")
    assert_one_line_error(invoke("sensitivity", str(tmp_path / "nope.onnx")), "not found")
    result = invoke("sensitivity", str(onnx_path), "--report", str(tmp_path / "r.txt"))
    assert_one_line_error(result, "ending in .md")


@pytest.mark.rtx
def test_tensorrt_rtx_runs_a_kept_out_layer_in_fp16(culprit_resnet20) -> None:
    """TensorRT's own parser: the kept-out conv is a layer named after its ONNX node, with FP16 output;
    the rest read INT8 Q/DQ; and the mixed network builds (ahead of time, no GPU)."""
    trt = pytest.importorskip("tensorrt_rtx")
    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors
    from tests.quantize.test_tensorrt_parse import build

    model = onnx.load(str(culprit_resnet20))
    layers = quantizable_layers(model)
    culprit = next(x for x in layers if x.module == CULPRIT_MODULE)
    amax = dict.fromkeys(qdq_tensors(model), 4.0)
    path = culprit_resnet20.with_name("mixed.onnx")
    onnx.save(variant(model, amax, {culprit.node}), str(path))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(str(path))
    by_name = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
    assert by_name[culprit.node].get_output(0).dtype == trt.DataType.HALF
    others = [x.node for x in layers if x.op == "Conv" and x.node != culprit.node]
    assert all(by_name[name].get_output(0).dtype == trt.DataType.FLOAT for name in others)
    engine, errors = build(path, trt)
    assert not errors and engine is not None and engine.nbytes > 500_000


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_engine_layer_names_map_back_to_the_sensitivity_table(culprit_resnet20, tmp_path) -> None:
    """Full TensorRT on a GPU: every Conv/Gemm of the table appears in an engine layer's name
    (TensorRT joins fused nodes' names with " + "), so a user can find each row in the engine."""
    import tensorrt as trt

    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors

    model = onnx.load(str(culprit_resnet20))
    layers = quantizable_layers(model)
    culprit = next(x for x in layers if x.module == CULPRIT_MODULE)
    path = tmp_path / "mixed.onnx"
    onnx.save(variant(model, dict.fromkeys(qdq_tensors(model), 4.0), {culprit.node}), str(path))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    assert trt.OnnxParser(network, logger).parse_from_file(str(path))
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    shape = tuple(network.get_input(0).shape[1:])
    profile.set_shape(network.get_input(0).name, (1, *shape), (8, *shape), (8, *shape))
    config.add_optimization_profile(profile)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    names = " | ".join(layer["Name"] if isinstance(layer, dict) else str(layer) for layer in info["Layers"])
    missing = [x.node for x in layers if x.op in ("Conv", "Gemm") and x.node not in names]
    assert not missing, f"engine layers do not name {missing}"


def test_a_rerun_replaces_its_own_report_and_nothing_else(culprit_resnet20, tmp_path) -> None:
    report = tmp_path / "sens.md"
    args = ["sensitivity", str(culprit_resnet20), "--images", "16", "--calib-images", "16", "--no-cache"]
    assert invoke(*args, "--report", str(report)).exit_code == 0
    text = report.read_text()
    assert CULPRIT_MODULE in text and text.rstrip().splitlines()[-1].startswith("<!--")
    assert invoke(*args, "--report", str(report)).exit_code == 0  # its own report, same inputs: replaced
    mine = tmp_path / "notes.md"
    mine.write_text("my notes\n")
    assert_one_line_error(invoke(*args, "--report", str(mine)), "notes.md")
    assert mine.read_text() == "my notes\n"


def test_too_many_images_fail_before_calibrating(culprit_resnet20) -> None:
    result = invoke("sensitivity", str(culprit_resnet20), "--images", "100000", "--no-cache")
    assert_one_line_error(result, "pass --images 360 or fewer")
