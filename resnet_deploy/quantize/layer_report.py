"""Every Conv and Gemm of an ONNX graph, FP32, FP16 or INT8 Q/DQ: its PyTorch module, MACs, the
precision it runs in and its quantization scales. What ``inspect`` lists for an ONNX file, and what
an engine's layers are mapped back to when it is built.

A Conv or Gemm is INT8 when both its activation and its weights come through a DequantizeLinear (the
Q/DQ form TensorRT and ONNX Runtime take), FP16 when its weights are float16, FP32 otherwise. The
module is read from the weight's name (``layer3.4.conv2.weight``, or ``..._int8`` after calibration),
else from the exporter's scope names (:func:`resnet_deploy.quantize.layers._module_name`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.quantize.layers import _module_name, _output_spatial_sizes
from resnet_deploy.quantize.qdq_tensorrt import layer_id

if TYPE_CHECKING:
    import onnx
    from onnx import numpy_helper
else:
    onnx = lazy_import("onnx")
    numpy_helper = lazy_import("onnx.numpy_helper")

WEIGHT_SUFFIXES = ("_int8", "_quantized", "_q", "_fp16")


@dataclass(frozen=True)
class OnnxLayer:
    node: str  # the ONNX node's name (an engine's layers name it)
    op: str  # Conv or Gemm
    module: str  # the PyTorch module, "" when the graph does not say
    macs: int  # multiply-accumulates per image
    precision: str  # int8, fp16 or fp32
    activation_scale: float | None = None  # INT8: the per-tensor scale of its input
    weight_scales: tuple[float, float] | None = None  # INT8: the smallest and largest per-channel scale

    def label(self) -> str:
        return self.module or self.node

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "op": self.op,
            "module": self.module,
            "macs": self.macs,
            "precision": self.precision,
            "activation_scale": self.activation_scale,
            "weight_scales": list(self.weight_scales) if self.weight_scales else None,
        }


def onnx_layers(model: Any) -> list[OnnxLayer]:
    """Every Conv and Gemm of ``model`` (a ModelProto), in graph order."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    spatial = _output_spatial_sizes(model)
    layers = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        if node.op_type == "MatMul" and not (set(node.input[:2]) & set(initializers) or _dq_weight(node, producers)):
            continue  # a MatMul of two activations is no layer of the model's
        activation, weight = producers.get(node.input[0]), producers.get(node.input[1])
        weight_init = initializers.get(node.input[1])
        if weight is not None and weight.op_type != "DequantizeLinear":
            weight = None
        if weight is not None:
            weight_init = initializers.get(weight.input[0])
        quantized_weight = weight is not None
        dims = list(weight_init.dims) if weight_init is not None else []
        per_position = int(np.prod(dims)) if dims else 0
        macs = per_position * (spatial.get(node.output[0], 1) if node.op_type == "Conv" else 1)
        int8 = quantized_weight and activation is not None and activation.op_type == "DequantizeLinear"
        fp16 = weight_init is not None and weight_init.data_type == onnx.TensorProto.FLOAT16
        layers.append(
            OnnxLayer(
                node=layer_id(node),
                op=node.op_type,
                module=_module(node, weight_init),
                macs=macs,
                precision="int8" if int8 else ("fp16" if fp16 else "fp32"),
                activation_scale=_scalar(initializers, activation.input[1])
                if int8 and activation is not None
                else None,
                weight_scales=_range(initializers, weight.input[1]) if int8 and weight is not None else None,
            )
        )
    return layers


def _dq_weight(node: Any, producers: dict[str, Any]) -> bool:
    producer = producers.get(node.input[1])
    return producer is not None and producer.op_type == "DequantizeLinear"


def _module(node: Any, weight: Any) -> str:
    if weight is not None:
        name = weight.name
        for suffix in WEIGHT_SUFFIXES:
            name = name.removesuffix(suffix)
        if name.endswith(".weight"):
            return name[: -len(".weight")]
    return _module_name(node)


def _values(initializers: dict[str, Any], name: str) -> np.ndarray | None:
    tensor = initializers.get(name)
    return None if tensor is None else numpy_helper.to_array(tensor).astype(np.float64).reshape(-1)


def _scalar(initializers: dict[str, Any], name: str) -> float | None:
    values = _values(initializers, name)
    return float(values[0]) if values is not None and values.size else None


def _range(initializers: dict[str, Any], name: str) -> tuple[float, float] | None:
    values = _values(initializers, name)
    return (float(values.min()), float(values.max())) if values is not None and values.size else None


@dataclass(frozen=True)
class LayerShare:
    """How much of a model's Conv/Gemm work runs in each precision."""

    layers: int
    int8_layers: int
    macs: int
    int8_macs: int
    others: tuple[tuple[str, str], ...]  # (label, precision) of the layers not in INT8

    @property
    def int8_mac_share(self) -> float:
        return self.int8_macs / self.macs if self.macs else 0.0

    def describe(self, kept_out_reason: dict[str, str] | None = None, what: str = "convolutions") -> str:
        """``52 of 53 convolutions INT8, 98.4% of MACs; 1 in FP16: layer4.2.conv3 (budget)``."""
        if not self.int8_layers:
            kinds = sorted({p for _, p in self.others})
            return f"{self.layers} {what}, none INT8 ({', '.join(k.upper() for k in kinds) or 'FP32'})"
        text = f"{self.int8_layers} of {self.layers} {what} INT8, {self.int8_mac_share:.1%} of MACs"
        if self.others:
            by_precision: dict[str, list[str]] = {}
            for label, precision in self.others:
                reason = (kept_out_reason or {}).get(label)
                by_precision.setdefault(precision, []).append(f"{label} ({reason})" if reason else label)
            parts = [
                f"{len(names)} in {precision.upper()}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
                for precision, names in by_precision.items()
            ]
            text += "; " + "; ".join(parts)
        return text


def share(pairs: list[tuple[str, str, int]]) -> LayerShare:
    """The share of ``(label, precision, macs)`` computed in INT8."""
    int8 = [p for p in pairs if p[1] == "int8"]
    return LayerShare(
        layers=len(pairs),
        int8_layers=len(int8),
        macs=sum(p[2] for p in pairs),
        int8_macs=sum(p[2] for p in int8),
        others=tuple((label, precision) for label, precision, _ in pairs if precision != "int8"),
    )
