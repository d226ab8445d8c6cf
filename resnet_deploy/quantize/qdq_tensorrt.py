"""TensorRT's explicit-quantization placement: Q/DQ pairs written into the ONNX graph.

Rules (TensorRT developer guide, "Explicit Quantization", Q/DQ placement recommendations):

- symmetric int8, zero point 0, narrow range [-127, 127];
- weights: per output channel (Conv axis 0; Gemm axis 0 with transB=1, else 1), stored as int8
  initializers feeding DequantizeLinear;
- activations: one per-tensor scale (amax / 127) on the data input of every Conv and Gemm;
- biases stay float: TensorRT's ONNX parser rejects an int32-bias DequantizeLinear;
- residual Add: the shortcut input is quantized (the input not produced by the block's last Conv;
  with a projection shortcut, the projection Conv's output). This is the developer guide's
  placement, with which full TensorRT can run conv + add + ReLU + requantize as one int8 kernel.
  TensorRT-RTX 1.7 fuses no add into an int8 conv in any placement measured (its int8 convs write
  FP32; a kernel of its own does the add); there this placement still moves the least data
  (scripts/rtx_int8_fusion.py, results in scripts/results/rtx-int8-fusion-resnet*.txt);
- nothing between Conv and its BatchNorm/ReLU (BN is folded at export; TensorRT fuses ReLU).

A tensor feeding several such consumers gets one Q/DQ pair that all of them share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from resnet_deploy.errors import QuantizationError

QMAX = 127  # narrow range: TensorRT's int8 is symmetric in [-127, 127]
MIN_OPSET = 13  # per-axis DequantizeLinear


@dataclass
class PlacementReport:
    activations: list[str] = field(default_factory=list)  # tensors given a Q/DQ pair
    weights: list[str] = field(default_factory=list)  # initializers turned int8 per-channel
    residual_inputs: list[str] = field(default_factory=list)  # residual Add inputs given a Q/DQ pair

    def to_dict(self) -> dict[str, int]:
        return {
            "activation_qdq": len(self.activations),
            "weight_dq": len(self.weights),
            "residual_add_inputs": len(self.residual_inputs),
        }


def _opset(model) -> int:  # type: ignore[no-untyped-def]
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def residual_input(add, producers, consumers) -> str | None:  # type: ignore[no-untyped-def]
    """Which input of a residual Add to quantize (None: not a two-activation Add)."""
    a, b = add.input[0], add.input[1]
    pa, pb = producers.get(a), producers.get(b)
    if pa is None or pb is None:
        return None  # an initializer or graph input operand: not a residual join
    conv_a, conv_b = pa.op_type == "Conv", pb.op_type == "Conv"
    if conv_a != conv_b:
        return b if conv_a else a
    if conv_a and conv_b:  # projection shortcut: its conv reads the block input, which another conv reads too

        def shares_input(conv) -> bool:  # type: ignore[no-untyped-def]
            return sum(c.op_type == "Conv" for c in consumers.get(conv.input[0], [])) > 1

        return b if shares_input(pb) else a
    return b


def _plan(model) -> tuple[dict[str, list[tuple[object, int]]], list[str]]:  # type: ignore[no-untyped-def]
    """Which activation tensors get a Q/DQ pair, and which (node, input index) read them."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}  # type: ignore[type-arg]
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    wanted: dict[str, list[tuple[object, int]]] = {}  # tensor -> [(node, input index)] to rewire
    residuals = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm") and node.input[0] not in inits:
            wanted.setdefault(node.input[0], []).append((node, 0))
        elif node.op_type == "Add" and len(node.input) == 2:
            chosen = residual_input(node, producers, consumers)
            if chosen is not None:
                wanted.setdefault(chosen, []).append((node, list(node.input).index(chosen)))
                residuals.append(chosen)
    return wanted, residuals


def qdq_tensors(model) -> list[str]:  # type: ignore[no-untyped-def]
    """The activation tensors TensorRT placement quantizes: the only ones calibration must measure."""
    return list(_plan(model)[0])


def insert_tensorrt_qdq(model, amax: dict[str, float]) -> PlacementReport:  # type: ignore[no-untyped-def]
    """Rewrite ``model`` (an onnx.ModelProto, in place) with TensorRT-style Q/DQ nodes."""
    from onnx import helper, numpy_helper

    if _opset(model) < MIN_OPSET:
        raise QuantizationError(
            f"INT8 Q/DQ needs ONNX opset >= {MIN_OPSET} (per-channel scales); this model is opset {_opset(model)}: "
            "re-export it with --opset 13 or higher"
        )
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    wanted, residuals = _plan(model)
    report = PlacementReport(residual_inputs=residuals)
    after: dict[int, list] = {}  # type: ignore[type-arg]  # node index -> Q/DQ to insert after it (-1: at the top)
    before: dict[int, list] = {}  # type: ignore[type-arg]  # node index -> weight DQ to insert before it
    order = {id(n): i for i, n in enumerate(graph.node)}
    extra_inits = []
    for tensor, uses in wanted.items():
        if tensor not in amax:
            raise QuantizationError(f"no calibration range for tensor {tensor!r}; recalibrate (the cache may be stale)")
        scale = max(float(amax[tensor]), 1e-8) / QMAX
        s_name, z_name = f"{tensor}_qdq_scale", f"{tensor}_qdq_zero_point"
        extra_inits += [
            numpy_helper.from_array(np.array(scale, dtype=np.float32), s_name),
            numpy_helper.from_array(np.array(0, dtype=np.int8), z_name),
        ]
        q = helper.make_node(
            "QuantizeLinear", [tensor, s_name, z_name], [f"{tensor}_q"], name=f"{tensor}_QuantizeLinear"
        )
        dq = helper.make_node(
            "DequantizeLinear", [f"{tensor}_q", s_name, z_name], [f"{tensor}_dq"], name=f"{tensor}_DequantizeLinear"
        )
        for node, index in uses:
            node.input[index] = f"{tensor}_dq"  # type: ignore[attr-defined]
        at = order[id(producers[tensor])] if tensor in producers else -1
        after.setdefault(at, []).extend([q, dq])
        report.activations.append(tensor)

    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        name = node.input[1]
        weight = numpy_helper.to_array(inits[name]).astype(np.float32)
        axis = 0
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans_b else 1
        reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
        channel_amax = np.abs(weight).max(axis=reduce_axes)
        scales = np.where(channel_amax > 0, channel_amax / QMAX, 1.0).astype(np.float32)
        shape = [1] * weight.ndim
        shape[axis] = -1
        quantized = np.clip(np.round(weight / scales.reshape(shape)), -QMAX, QMAX).astype(np.int8)
        extra_inits += [
            numpy_helper.from_array(quantized, f"{name}_int8"),
            numpy_helper.from_array(scales, f"{name}_scale"),
            numpy_helper.from_array(np.zeros(len(scales), dtype=np.int8), f"{name}_zero_point"),
        ]
        dq = helper.make_node(
            "DequantizeLinear",
            [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
            [f"{name}_dq"],
            name=f"{name}_DequantizeLinear",
            axis=axis,
        )
        before.setdefault(order[id(node)], []).append(dq)
        node.input[1] = f"{name}_dq"
        report.weights.append(name)

    nodes = list(graph.node)
    rebuilt = list(after.get(-1, []))
    for i, node in enumerate(nodes):
        rebuilt.extend(before.get(i, []))
        rebuilt.append(node)
        rebuilt.extend(after.get(i, []))
    del graph.node[:]
    graph.node.extend(rebuilt)
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + extra_inits)
    return report
