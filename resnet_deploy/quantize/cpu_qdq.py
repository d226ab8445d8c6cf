"""ONNX Runtime's fast CPU form: uint8 asymmetric activations, int8 per-channel weights, via ORT's
own QDQ quantizer (the one ``quantize_static`` uses), fed with our cached ranges."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.quantize.ranges import float_activations

if TYPE_CHECKING:
    from onnxruntime.quantization import calibrate as ort_calibrate
    from onnxruntime.quantization import qdq_quantizer, quant_utils
else:
    ort_calibrate = lazy_import("onnxruntime.quantization.calibrate", extra="onnxruntime")
    qdq_quantizer = lazy_import("onnxruntime.quantization.qdq_quantizer", extra="onnxruntime")
    quant_utils = lazy_import("onnxruntime.quantization.quant_utils", extra="onnxruntime")


def cpu_calibration_tensors(model: Any) -> tuple[list[str], dict[str, str]]:
    """The activations to measure for ORT's quantizer, and aliases that take another tensor's range.

    A Conv output read only by a ReLU is folded with it by ORT's quantizer, which then quantizes the
    Conv output with the ReLU output's parameters: it asks for both ranges but uses the ReLU's. So
    such outputs are not measured (a third of ResNet-50's activations, and the costly signed ones)
    and get the ReLU's range; the quantized graph is identical (tests check it).
    """
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    relu_output = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "Relu"}
    aliases = {
        out: relu_output[out]
        for node in model.graph.node
        if node.op_type == "Conv"
        for out in node.output
        if readers.get(out) == ["Relu"]
    }
    return [t for t in float_activations(model) if t not in aliases], aliases


def quantize_for_cpu(onnx_path: str | Path, ranges: dict[str, tuple[float, float]]) -> Any:
    """Return the quantized onnx.ModelProto."""

    data = {
        name: ort_calibrate.TensorData(lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32))
        for name, (low, high) in ranges.items()
    }
    model = quant_utils.load_model_with_shape_infer(Path(onnx_path))
    quantizer = qdq_quantizer.QDQQuantizer(
        model,
        True,  # per_channel
        False,  # reduce_range: VNNI/AVX512 and AVX2 with u8s8 are fine at full range
        quant_utils.QuantType.QInt8,  # weights
        quant_utils.QuantType.QUInt8,  # activations
        ort_calibrate.TensorsData(ort_calibrate.CalibrationMethod.MinMax, data),
        None,
        None,
        ["Conv", "Gemm", "Add", "Relu", "MaxPool", "GlobalAveragePool", "ReduceMean", "Reshape", "Flatten"],
        {"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    quantizer.quantize_model()
    quantizer.model.topological_sort()  # ORT runs unsorted graphs; onnx.checker and TensorRT do not
    return quantizer.model.model
