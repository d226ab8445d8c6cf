"""TensorRT's own ONNX parser and builder accept what we write (TensorRT-RTX, ahead of time, no GPU)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.rtx


def build(path, trt):
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        return None, [(parser.get_error(i).node_name(), parser.get_error(i).desc()) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    tensor = network.get_input(0)
    c, h, w = tensor.shape[1:]
    profile.set_shape(tensor.name, (1, c, h, w), (8, c, h, w), (32, c, h, w))
    config.add_optimization_profile(profile)
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM89, 0)
    return builder.build_serialized_network(network, config), []


@pytest.fixture(scope="module")
def artifacts(trained_resnet20, tmp_path_factory):
    from resnet_deploy.convert.fp16 import convert_to_fp16
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    _, fp32 = trained_resnet20
    root = tmp_path_factory.mktemp("rtx")
    int8 = calibrate_onnx(fp32, root / "int8.onnx", method="minmax", count=64, cache_dir=None).path
    cpu = calibrate_onnx(fp32, root / "cpu.onnx", target="cpu", method="minmax", count=64, cache_dir=None).path
    fp16 = convert_to_fp16(fp32, root / "fp16.onnx").path
    return {"fp32": fp32, "int8": int8, "fp16": fp16, "cpu": cpu}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_builds_our_artifacts(artifacts, precision) -> None:
    trt = pytest.importorskip("tensorrt_rtx")
    engine, errors = build(artifacts[precision], trt)
    assert not errors and engine is not None
    assert engine.nbytes > 500_000  # ResNet-20's 0.27 M weights plus kernels


def test_tensorrt_rejects_the_cpu_form_at_its_int32_bias(artifacts) -> None:
    """ORT's CPU form quantizes biases to int32 DequantizeLinear: TensorRT's parser refuses exactly that."""
    trt = pytest.importorskip("tensorrt_rtx")
    engine, errors = build(artifacts["cpu"], trt)
    assert engine is None and errors
    node, desc = errors[0]
    assert node == "conv1.weight_bias_DequantizeLinear" and "Invalid Node" in desc
