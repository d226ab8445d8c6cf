"""An engine's layers read from TensorRT-RTX's build log: precisions, fused ONNX nodes, PyTorch modules."""

from __future__ import annotations

from resnet_deploy.engine.layer_info import EngineLayer, compute_shares, parse_layers, with_modules
from resnet_deploy.quantize.layer_report import OnnxLayer, share

FLOAT = "Datatype: Float, Format: (Linear) Row major linear format"
INT8 = "Datatype: Int8, Format: (NHWC) Channel major format"
HALF = "Datatype: Half, Format: (NHWC) Channel major format"
REPORT = "\n".join(
    [
        "Layers:",
        "Name: __mye2_0, LayerType: shape_call, Inputs: [], Constants: [], Outputs: [], TacticName: , StreamId: 0, "
        "Metadata: ",
        f"Name: __myl_Quant_1, LayerType: kgen, Inputs: [ {{ Name: input, {FLOAT} }}], Constants: [], Outputs: "
        f"[ {{ Name: q, {INT8} }}], TacticName: t, StreamId: 0, Metadata: [ONNX Layer: input_QuantizeLinear]"
        "[ONNX Layer: conv_a]",
        f"Name: conv_a_myl0_2, LayerType: correlation, Inputs: [ {{ Name: q, {INT8} }}], Constants: [ {{ Name: w, "
        f"{INT8} }}, {{ Name: b, {FLOAT} }}], Outputs: [ {{ Name: y, {FLOAT} }}], TacticName: x, StreamId: 0, "
        "Metadata: [ONNX Layer: conv_a][ONNX Layer: input_DequantizeLinear][ONNX Layer: w_DequantizeLinear]",
        f"Name: conv_b_myl0_3, LayerType: correlation, Inputs: [ {{ Name: y, {HALF} }}], Constants: [ {{ Name: w2, "
        f"{HALF} }}], Outputs: [ {{ Name: z, {HALF} }}], TacticName: x, StreamId: 0, Metadata: [ONNX Layer: conv_b]",
    ]
)


def test_every_layer_is_read_with_its_types_and_fused_nodes() -> None:
    layers = parse_layers(REPORT)
    assert [layer.name for layer in layers] == ["__mye2_0", "__myl_Quant_1", "conv_a_myl0_2", "conv_b_myl0_3"]
    conv = layers[2]
    assert (conv.type, conv.inputs, conv.weights, conv.outputs) == (
        "correlation",
        ("int8",),
        ("int8", "fp32"),
        ("fp32",),
    )
    assert conv.onnx_nodes == ("conv_a", "input_DequantizeLinear", "w_DequantizeLinear")
    assert [layer.precision for layer in layers] == ["fp32", "fp32", "int8", "fp16"]
    assert EngineLayer.from_json(conv.to_json()) == conv


def test_a_conv_is_credited_to_the_layer_that_computes_it_not_the_quantizer_fused_before_it() -> None:
    onnx_layers = [
        OnnxLayer("conv_a", "Conv", "layer1.0.conv1", 1000, "int8"),
        OnnxLayer("conv_b", "Conv", "layer1.0.conv2", 3000, "fp16"),
    ]
    layers = with_modules(parse_layers(REPORT), onnx_layers)
    assert [(layer.name, layer.modules, layer.macs) for layer in layers if layer.computes] == [
        ("conv_a_myl0_2", ("layer1.0.conv1",), 1000),
        ("conv_b_myl0_3", ("layer1.0.conv2",), 3000),
    ]
    summary = share(compute_shares(layers)).describe({"layer1.0.conv2": "budget"}, "Conv/Gemm layers")
    assert summary == "1 of 2 Conv/Gemm layers INT8, 25.0% of MACs; 1 in FP16: layer1.0.conv2 (budget)"


def test_a_log_without_a_layer_report_gives_no_layers() -> None:
    assert parse_layers("Layers:\n") == [] and parse_layers("something else") == []
