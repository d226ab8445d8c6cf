"""ONNX Runtime's fast CPU form: uint8 asymmetric activations, int8 per-channel weights, via ORT's
own QDQ quantizer (the one ``quantize_static`` uses), fed with our cached ranges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def quantize_for_cpu(onnx_path: str | Path, ranges: dict[str, tuple[float, float]]) -> Any:
    """Return the quantized onnx.ModelProto."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import QuantType, load_model_with_shape_infer

    data = {
        name: TensorData(lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32))
        for name, (low, high) in ranges.items()
    }
    model = load_model_with_shape_infer(Path(onnx_path))
    quantizer = QDQQuantizer(
        model,
        True,  # per_channel
        False,  # reduce_range: VNNI/AVX512 and AVX2 with u8s8 are fine at full range
        QuantType.QInt8,  # weights
        QuantType.QUInt8,  # activations
        TensorsData(CalibrationMethod.MinMax, data),
        None,
        None,
        ["Conv", "Gemm", "Add", "Relu", "MaxPool", "GlobalAveragePool", "ReduceMean", "Reshape", "Flatten"],
        {"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    quantizer.quantize_model()
    quantizer.model.topological_sort()  # ORT runs unsorted graphs; onnx.checker and TensorRT do not
    return quantizer.model.model
