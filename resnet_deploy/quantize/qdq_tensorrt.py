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

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import QuantizationError

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")

QMAX = 127  # narrow range: TensorRT's int8 is symmetric in [-127, 127]
MIN_OPSET = 13  # per-axis DequantizeLinear
KEEP_OUT_PRECISIONS = ("fp16", "fp32")
FLOAT16, FLOAT32 = 10, 1  # onnx.TensorProto.FLOAT16 / FLOAT: constants, without importing onnx here


@dataclass
class PlacementReport:
    activations: list[str] = field(default_factory=list)  # tensors given a Q/DQ pair
    weights: list[str] = field(default_factory=list)  # initializers turned int8 per-channel
    residual_inputs: list[str] = field(default_factory=list)  # residual Add inputs given a Q/DQ pair
    kept_out: list[str] = field(default_factory=list)  # layers (node names) left out of INT8

    def to_dict(self) -> dict[str, int]:
        return {
            "activation_qdq": len(self.activations),
            "weight_dq": len(self.weights),
            "residual_add_inputs": len(self.residual_inputs),
            "kept_out": len(self.kept_out),
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


def layer_id(node: Any) -> str:
    """A node's name, or its first output where the graph left it unnamed: how layers are kept out."""
    return str(node.name or node.output[0])


def activation_plan(model: Any, keep_out: Collection[str] = ()) -> tuple[dict[str, list[tuple[Any, int]]], list[str]]:
    """Which activation tensors get a Q/DQ pair, and which (node, input index) read them.

    Nodes in ``keep_out`` (layer ids) read their inputs unquantized.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    wanted: dict[str, list[tuple[Any, int]]] = {}  # tensor -> [(node, input index)] to rewire
    residuals = []
    for node in graph.node:
        if layer_id(node) in keep_out:
            continue
        if node.op_type in ("Conv", "Gemm") and node.input[0] not in inits:
            wanted.setdefault(node.input[0], []).append((node, 0))
        elif node.op_type == "Add" and len(node.input) == 2:
            chosen = residual_input(node, producers, consumers)
            if chosen is not None:
                wanted.setdefault(chosen, []).append((node, list(node.input).index(chosen)))
                residuals.append(chosen)
    return wanted, residuals


def quantized_layers(model: Any) -> list[Any]:
    """The nodes TensorRT placement quantizes (Conv/Gemm on an activation, residual Add), in graph order."""
    wanted, _ = activation_plan(model)
    readers = {id(node) for uses in wanted.values() for node, _ in uses}
    return [node for node in model.graph.node if id(node) in readers]


def qdq_tensors(model: Any) -> list[str]:
    """The activation tensors TensorRT placement quantizes: the only ones calibration must measure."""
    return list(activation_plan(model)[0])


def insert_tensorrt_qdq(
    model: Any,
    amax: dict[str, float],
    *,
    keep_out: Collection[str] = (),
    keep_out_precision: str = "fp16",
) -> PlacementReport:
    """Rewrite ``model`` (an onnx.ModelProto, in place) with TensorRT-style Q/DQ nodes.

    Layers in ``keep_out`` (layer ids: node names) get no Q/DQ. With ``keep_out_precision`` "fp16"
    a kept-out Conv/Gemm computes in float16 between two Casts, so strongly typed TensorRT runs it
    in FP16; with "fp32" it is left as it is.
    """
    if keep_out_precision not in KEEP_OUT_PRECISIONS:
        raise QuantizationError(f"layers kept out of INT8 run in fp16 or fp32, not {keep_out_precision!r}")
    _check_opset(model)
    graph = model.graph
    unknown = sorted(set(keep_out) - {layer_id(n) for n in quantized_layers(model)})
    if unknown:
        raise QuantizationError(
            f"no quantized layer is named {', '.join(unknown)}; `resnet-deploy sensitivity MODEL.onnx` lists them"
        )
    wanted, residuals = activation_plan(model, keep_out)
    report = PlacementReport(residual_inputs=residuals, kept_out=list(keep_out))
    after, activation_inits = _quantize_activations(graph, wanted, amax, report)
    before, weight_inits = _quantize_weights(graph, report, keep_out)
    if keep_out_precision == "fp16":
        half_before, half_after, half_inits = _compute_in_fp16(graph, keep_out)
        _merge(before, half_before)
        _merge(after, half_after, first=True)  # the Cast back up makes the tensor a Q/DQ pair may read
        weight_inits += half_inits
    _insert_nodes(graph, before=before, after=after)  # at positions in the graph as it was: none changed before
    _replace_initializers(graph, activation_inits + weight_inits)
    return report


def _check_opset(model: Any) -> None:
    if _opset(model) < MIN_OPSET:
        raise QuantizationError(
            f"INT8 Q/DQ needs ONNX opset >= {MIN_OPSET} (per-channel scales); this model is opset {_opset(model)}: "
            "re-export it with export's `opset=13` or higher",
        )


def _quantize_activations(
    graph: Any,
    wanted: dict[str, list[tuple[Any, int]]],
    amax: dict[str, float],
    report: PlacementReport,
) -> tuple[dict[int, list[Any]], list[Any]]:
    """A Q/DQ pair per wanted tensor, its readers rewired to the DQ output.

    Returns the pairs by the index of the node to insert them after (-1: at the top), and their initializers.
    """
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}  # tensor -> index of its node
    after: dict[int, list[Any]] = {}
    inits: list[Any] = []
    for tensor, uses in wanted.items():
        if tensor not in amax:
            raise QuantizationError(f"no calibration range for tensor {tensor!r}; recalibrate (the cache may be stale)")
        nodes, pair_inits = _activation_qdq(tensor, amax[tensor])
        inits += pair_inits
        for node, index in uses:
            node.input[index] = f"{tensor}_dq"
        after.setdefault(producer.get(tensor, -1), []).extend(nodes)
        report.activations.append(tensor)
    return after, inits


def _activation_qdq(tensor: str, amax: float) -> tuple[list[Any], list[Any]]:
    """The QuantizeLinear/DequantizeLinear pair of ``tensor`` (per-tensor scale amax / 127) and its initializers."""
    scale = max(float(amax), 1e-8) / QMAX
    s_name, z_name = f"{tensor}_qdq_scale", f"{tensor}_qdq_zero_point"
    inits = [
        onnx.numpy_helper.from_array(np.array(scale, dtype=np.float32), s_name),
        onnx.numpy_helper.from_array(np.array(0, dtype=np.int8), z_name),
    ]
    q = onnx.helper.make_node(
        "QuantizeLinear", [tensor, s_name, z_name], [f"{tensor}_q"], name=f"{tensor}_QuantizeLinear"
    )
    dq = onnx.helper.make_node(
        "DequantizeLinear", [f"{tensor}_q", s_name, z_name], [f"{tensor}_dq"], name=f"{tensor}_DequantizeLinear"
    )
    return [q, dq], inits


def _quantize_weights(
    graph: Any, report: PlacementReport, keep_out: Collection[str] = ()
) -> tuple[dict[int, list[Any]], list[Any]]:
    """Every Conv/Gemm weight initializer made int8 per output channel behind a DequantizeLinear.

    Returns the DQ nodes by the index of the node to insert them before, and their initializers.
    """
    inits = {i.name: i for i in graph.initializer}
    before: dict[int, list[Any]] = {}
    new_inits: list[Any] = []
    for i, node in enumerate(graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if layer_id(node) in keep_out:
            continue
        name = node.input[1]
        dq, weight_inits = _weight_dq(name, inits[name], channel_axis(node))
        new_inits += weight_inits
        before.setdefault(i, []).append(dq)
        node.input[1] = f"{name}_dq"
        report.weights.append(name)
    return before, new_inits


def channel_axis(node: Any) -> int:
    """The output-channel axis of a Conv or Gemm weight: Conv 0; Gemm 0 with transB=1, else 1."""
    if node.op_type != "Gemm":
        return 0
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return 0 if trans_b else 1


def _weight_dq(name: str, initializer: Any, axis: int) -> tuple[Any, list[Any]]:
    """The per-channel DequantizeLinear of weight ``name`` and its initializers (int8 weight, scales, zero points)."""
    weight = onnx.numpy_helper.to_array(initializer).astype(np.float32)
    reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
    channel_amax = np.abs(weight).max(axis=reduce_axes)
    scales = np.where(channel_amax > 0, channel_amax / QMAX, 1.0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    quantized = np.clip(np.round(weight / scales.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    inits = [
        onnx.numpy_helper.from_array(quantized, f"{name}_int8"),
        onnx.numpy_helper.from_array(scales, f"{name}_scale"),
        onnx.numpy_helper.from_array(np.zeros(len(scales), dtype=np.int8), f"{name}_zero_point"),
    ]
    dq = onnx.helper.make_node(
        "DequantizeLinear",
        [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
        [f"{name}_dq"],
        name=f"{name}_DequantizeLinear",
        axis=axis,
    )
    return dq, inits


def _compute_in_fp16(
    graph: Any, keep_out: Collection[str]
) -> tuple[dict[int, list[Any]], dict[int, list[Any]], list[Any]]:
    """Each kept-out Conv/Gemm computed in float16: every input cast down (an initializer stored as
    float16 instead, once however many nodes read it), its output cast back up under the original
    name (so what reads it is unchanged).

    Returns the Casts to insert before and after nodes (by index), and the float16 initializers.
    """
    inits = {i.name: i for i in graph.initializer}
    before: dict[int, list[Any]] = {}
    after: dict[int, list[Any]] = {}
    halves: dict[str, Any] = {}  # initializer name -> its float16 copy
    for i, node in enumerate(graph.node):
        if layer_id(node) not in keep_out or node.op_type not in ("Conv", "Gemm"):
            continue  # a kept-out residual Add just reads its inputs unquantized
        tag = layer_id(node).replace("/", "_")
        for index, name in enumerate(node.input):
            if not name:
                continue  # an omitted optional input
            if name in inits:
                if name not in halves:
                    half = onnx.numpy_helper.to_array(inits[name]).astype(np.float16)
                    halves[name] = onnx.numpy_helper.from_array(half, f"{name}_fp16")
                node.input[index] = f"{name}_fp16"
                continue
            down = onnx.helper.make_node(  # an activation, or a weight some node computes (Identity)
                "Cast", [name], [f"{tag}_in{index}_fp16"], name=f"{tag}_in{index}_CastToFp16", to=FLOAT16
            )
            node.input[index] = down.output[0]
            before.setdefault(i, []).append(down)
        output = node.output[0]
        node.output[0] = f"{tag}_out_fp16"
        up = onnx.helper.make_node("Cast", [node.output[0]], [output], name=f"{tag}_CastToFp32", to=FLOAT32)
        after.setdefault(i, []).append(up)
    return before, after, list(halves.values())


def _merge(into: dict[int, list[Any]], more: dict[int, list[Any]], *, first: bool = False) -> None:
    for index, nodes in more.items():
        into[index] = [*nodes, *into.get(index, [])] if first else [*into.get(index, []), *nodes]


def _insert_nodes(graph: Any, *, before: dict[int, list[Any]], after: dict[int, list[Any]]) -> None:
    """Put the new nodes beside the nodes they were planned for (by index), keeping the graph sorted."""
    rebuilt = list(after.get(-1, []))
    for i, node in enumerate(list(graph.node)):
        rebuilt.extend(before.get(i, []))
        rebuilt.append(node)
        rebuilt.extend(after.get(i, []))
    del graph.node[:]
    graph.node.extend(rebuilt)


def _replace_initializers(graph: Any, new: list[Any]) -> None:
    """Drop the initializers no node reads any more (the float weights), then add ``new``."""
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new)
