"""An FP32 ONNX ResNet as a trainable PyTorch module, with fake quantization where TensorRT placement puts Q/DQ.

The graph is run node by node in PyTorch: the Conv and Gemm weights and biases are parameters (the
BatchNorms are folded into them at export), everything else is the graph's own arithmetic. Which
tensors are quantized, and for which readers, comes from the same plan ``insert_tensorrt_qdq`` writes
(:func:`resnet_deploy.quantize.qdq_tensorrt._plan`), so quantization-aware training fine-tunes exactly
the graph that will be deployed, whichever exporter made the ONNX. A layer in ``keep_out`` reads its
inputs and weights unquantized, as it does in the exported graph.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import QuantizationError
from resnet_deploy.quantize.fake_quant import AMAX_FLOOR, ActivationQuantizer, fake_quant_weight
from resnet_deploy.quantize.qdq_tensorrt import activation_plan, channel_axis, layer_id

if TYPE_CHECKING:
    import onnx
    import torch
else:
    onnx = lazy_import("onnx")
    torch = lazy_import("torch", extra="train")

SUPPORTED = (
    "Add AveragePool BatchNormalization Cast Clip Concat Constant Conv Div Flatten Gather Gemm GlobalAveragePool "
    "Identity MatMul MaxPool Mul Pad Relu ReduceMean Reshape Shape Slice Softmax Squeeze Sub Unsqueeze"
).split()
FLOAT, INT64 = 1, 7  # onnx.TensorProto element types


def _attrs(node: Any) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def trainable_weights(model: Any) -> dict[str, tuple[str, int]]:
    """The Conv/Gemm weight and bias initializers: name -> (layer id, channel axis; -1 for a bias)."""
    inits = {i.name for i in model.graph.initializer}
    found: dict[str, tuple[str, int]] = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            found[node.input[1]] = (layer_id(node), channel_axis(node))
            if len(node.input) > 2 and node.input[2] in inits:
                found[node.input[2]] = (layer_id(node), -1)
    return found


def check_supported(model: Any, source: str) -> None:
    """Refuse, in one line, a graph with an op this module cannot run."""
    unknown = sorted({n.op_type for n in model.graph.node} - set(SUPPORTED))
    if unknown:
        raise QuantizationError(
            f"{source} has ops quantization-aware training cannot run ({', '.join(unknown)}); "
            "it runs ResNet graphs of Conv, Gemm, pooling, Add, ReLU and shape ops: calibrate it post-training instead"
        )


def build_network(
    model: Any, amax: dict[str, float], *, learn_scales: bool, keep_out: Collection[str] = ()
) -> torch.nn.Module:
    """``model`` (an FP32 onnx.ModelProto) as a module whose fake quantization starts at ``amax``."""

    class OnnxNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            graph = model.graph
            self.input_name = graph.input[0].name
            self.output_name = graph.output[0].name
            self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n), layer_id(n)) for n in graph.node]
            weights = trainable_weights(model)
            self.param_names = {name: f"p{i}" for i, name in enumerate(weights)}
            self.weight_axis = {name: axis for name, (layer, axis) in weights.items() if layer not in keep_out}
            self.params = torch.nn.ParameterDict()
            self.constants: dict[str, torch.Tensor] = {}
            for init in graph.initializer:
                value = torch.from_numpy(np.array(onnx.numpy_helper.to_array(init)))
                if init.name in weights:
                    self.params[self.param_names[init.name]] = torch.nn.Parameter(value.float())
                else:
                    self.constants[init.name] = value
            wanted, _ = activation_plan(model, keep_out)
            missing = [t for t in wanted if t not in amax]
            if missing:
                raise QuantizationError(f"no calibration range for tensor {missing[0]!r}; recalibrate")
            self.quantized_tensors = list(wanted)
            self.quantized_reads = {(layer_id(node), index): t for t, uses in wanted.items() for node, index in uses}
            self.quantizers = torch.nn.ModuleList(ActivationQuantizer.make(amax[t], learn_scales) for t in wanted)
            self.quantizer_of = {t: i for i, t in enumerate(wanted)}
            self.readers = {
                t: [(node.op_type, node.input[1] if len(node.input) > 1 else "", _attrs(node)) for node, _ in uses]
                for t, uses in wanted.items()
            }
            self.observer: Any = None  # set: quantizers are bypassed and each quantized tensor handed to it

        def reader_weights(self, tensor: str) -> list[tuple[str, torch.Tensor | None, int]]:
            """The readers of a quantized tensor: (op, its weight or None, its group count)."""
            found = []
            for op, weight, attrs in self.readers[tensor]:
                value = self.params[self.param_names[weight]].detach() if weight in self.param_names else None
                if op == "Gemm" and value is not None and not attrs.get("transB", 0):
                    value = value.t()  # as (out, in)
                found.append((op, value, int(attrs.get("group", 1))))
            return found

        def amax(self) -> dict[str, float]:
            """Each quantized tensor's amax now (trained, when learned)."""
            return {t: self.quantizer(i).amax for t, i in self.quantizer_of.items()}

        def quantizer(self, index: int) -> Any:
            """The fake-quant module of the ``index``-th quantized tensor (typed loosely: its class is made lazily)."""
            return self.quantizers[index]

        def set_amax(self, amax: dict[str, float]) -> None:
            with torch.no_grad():
                for t, i in self.quantizer_of.items():
                    self.quantizer(i).log_amax.fill_(math.log(max(float(amax[t]), AMAX_FLOOR)))

        def weights(self) -> dict[str, np.ndarray]:
            """Each trainable initializer's value now, by its ONNX name."""
            return {name: self.params[key].detach().cpu().numpy() for name, key in self.param_names.items()}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            env: dict[str, Any] = {self.input_name: x}
            quantized: dict[str, torch.Tensor] = {}
            for op, ins, outs, attrs, lid in self.nodes:
                args = [self._read(name, lid, i, env, quantized) for i, name in enumerate(ins)]
                result = _run(op, args, attrs, len(outs))
                if op == "Constant":  # made on the CPU; everything else follows its inputs' device
                    result = result.to(x.device)
                for name, value in zip(outs, result if isinstance(result, tuple) else (result,), strict=False):
                    env[name] = value
            return env[self.output_name]

        def _read(self, name: str, lid: str, index: int, env: dict[str, Any], quantized: dict[str, Any]) -> Any:
            if not name:
                return None
            if name in self.param_names:
                value = self.params[self.param_names[name]]
                axis = self.weight_axis.get(name)
                return fake_quant_weight(value, axis) if axis is not None and axis >= 0 else value
            if name in env:
                value = env[name]
            else:
                value = self.constants[name].to(env[self.input_name].device)
            tensor = self.quantized_reads.get((lid, index))
            if tensor is None:
                return value
            if self.observer is not None:
                if tensor not in quantized:
                    self.observer(tensor, value)
                    quantized[tensor] = value
                return value
            if tensor not in quantized:  # one Q/DQ pair shared by every reader, as in the graph
                quantized[tensor] = self.quantizers[self.quantizer_of[tensor]](value)
            return quantized[tensor]

    check_supported(model, "the model")
    return OnnxNetwork()


def _pads(pads: list[int], rank: int) -> tuple[list[int], bool]:
    """ONNX pads (begins then ends) as F.pad's list (last dim first), and whether they are symmetric."""
    begins, ends = pads[:rank], pads[rank:]
    flat: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        flat += [b, e]
    return flat, begins == ends


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, attrs: dict[str, Any]) -> torch.Tensor:
    rank = w.dim() - 2
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise QuantizationError("a Conv with auto_pad: re-export the model with explicit pads")
    flat, symmetric = _pads(list(attrs.get("pads", [0] * 2 * rank)), rank)
    padding = flat[::2][::-1] if symmetric else 0
    if not symmetric:
        x = torch.nn.functional.pad(x, flat)
    conv = torch.nn.functional.conv2d if rank == 2 else torch.nn.functional.conv1d
    return conv(
        x,
        w,
        b,
        stride=list(attrs.get("strides", [1] * rank)),
        padding=padding,
        dilation=list(attrs.get("dilations", [1] * rank)),
        groups=int(attrs.get("group", 1)),
    )


def _pool(x: torch.Tensor, attrs: dict[str, Any], kind: str) -> torch.Tensor:
    kernel = list(attrs["kernel_shape"])
    rank = len(kernel)
    flat, symmetric = _pads(list(attrs.get("pads", [0] * 2 * rank)), rank)
    padding: Any = flat[::2][::-1] if symmetric else 0
    if not symmetric:
        x = torch.nn.functional.pad(x, flat, value=-float("inf") if kind == "max" else 0.0)
    stride = list(attrs.get("strides", [1] * rank))
    ceil = bool(attrs.get("ceil_mode", 0))
    if kind == "max":
        dilation = list(attrs.get("dilations", [1] * rank))
        return torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil)
    include = bool(attrs.get("count_include_pad", 0))
    return torch.nn.functional.avg_pool2d(x, kernel, stride, padding, ceil_mode=ceil, count_include_pad=include)


def _gemm(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, attrs: dict[str, Any]) -> torch.Tensor:
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    y = float(attrs.get("alpha", 1.0)) * (a @ b)
    return y + float(attrs.get("beta", 1.0)) * c if c is not None else y


def _ints(value: Any) -> list[int]:
    return [int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]


def _reshape(x: torch.Tensor, shape: Any, attrs: dict[str, Any]) -> torch.Tensor:
    target = _ints(shape)
    if not attrs.get("allowzero", 0):
        target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return x.reshape(target)


def _axes(args: list[Any], attrs: dict[str, Any]) -> list[int] | None:
    if len(args) > 1 and args[1] is not None:
        return _ints(args[1])
    return list(attrs["axes"]) if "axes" in attrs else None


def _unsqueeze(x: Any, axes: list[int]) -> Any:
    x = torch.as_tensor(x)
    for axis in sorted(a % (x.dim() + len(axes)) for a in axes):
        x = x.unsqueeze(axis)
    return x


def _slice(args: list[Any]) -> torch.Tensor:
    data = args[0]
    starts, ends = _ints(args[1]), _ints(args[2])
    axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step < 0:
            raise QuantizationError("a Slice with a negative step: quantization-aware training cannot run it")
        size = data.shape[axis]
        index[axis] = slice(max(-size, min(start, size)), max(-size, min(end, size)), step)
    return data[tuple(index)]


def _pad(args: list[Any], attrs: dict[str, Any]) -> torch.Tensor:
    mode = attrs.get("mode", b"constant")
    if mode not in (b"constant", "constant"):
        raise QuantizationError(f"a Pad of mode {mode!r}: quantization-aware training runs constant padding only")
    data = args[0]
    pads = _ints(args[1]) if len(args) > 1 else list(attrs["pads"])
    value = float(args[2]) if len(args) > 2 and args[2] is not None and args[2].numel() else 0.0
    rank = data.dim()
    axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(rank))
    full = [0] * 2 * rank
    for i, axis in enumerate(axes):
        full[axis % rank], full[axis % rank + rank] = pads[i], pads[i + len(axes)]
    flat, _ = _pads(full, rank)
    return torch.nn.functional.pad(data, flat, value=value)


def _run(op: str, args: list[Any], attrs: dict[str, Any], outputs: int) -> Any:
    f = torch.nn.functional
    if op == "Conv":
        return _conv(args[0], args[1], args[2] if len(args) > 2 else None, attrs)
    if op == "Relu":
        return torch.relu(args[0])
    if op in ("Add", "Sub", "Mul", "Div"):
        a, b = args
        arithmetic: dict[str, Any] = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}
        return arithmetic[op](a, b)
    if op == "MaxPool":
        return _pool(args[0], attrs, "max")
    if op == "AveragePool":
        return _pool(args[0], attrs, "average")
    if op == "GlobalAveragePool":
        return args[0].mean(dim=tuple(range(2, args[0].dim())), keepdim=True)
    if op == "ReduceMean":
        axes = _axes(args, attrs)
        dims = tuple(axes) if axes else tuple(range(args[0].dim()))
        return args[0].mean(dim=dims, keepdim=bool(attrs.get("keepdims", 1)))
    if op == "Flatten":
        axis = int(attrs.get("axis", 1)) % max(args[0].dim(), 1)
        return args[0].reshape(int(np.prod(args[0].shape[:axis])), -1)
    if op == "Gemm":
        return _gemm(args[0], args[1], args[2] if len(args) > 2 else None, attrs)
    if op == "MatMul":
        return torch.matmul(args[0], args[1])
    if op == "Reshape":
        return _reshape(args[0], args[1], attrs)
    if op == "Shape":
        return torch.tensor(list(args[0].shape), dtype=torch.int64)
    if op == "Gather":
        data, index = torch.as_tensor(args[0]), torch.as_tensor(args[1])
        return torch.index_select(data, int(attrs.get("axis", 0)), index.reshape(-1).long()).reshape(
            *data.shape[: int(attrs.get("axis", 0))], *index.shape, *data.shape[int(attrs.get("axis", 0)) + 1 :]
        )
    if op == "Unsqueeze":
        return _unsqueeze(args[0], _axes(args, attrs) or [])
    if op == "Squeeze":
        axes = _axes(args, attrs)
        return args[0].squeeze() if axes is None else args[0].squeeze(tuple(axes))
    if op == "Concat":
        return torch.cat([torch.as_tensor(a) for a in args], dim=int(attrs["axis"]))
    if op == "Constant":
        return torch.from_numpy(np.array(onnx.numpy_helper.to_array(attrs["value"])))
    if op == "Identity":
        return args[0]
    if op == "Cast":
        return args[0].to(torch.int64 if attrs["to"] == INT64 else torch.float32)
    if op == "Clip":
        low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
        high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
        return torch.clamp(args[0], min=None if low is None else float(low), max=None if high is None else float(high))
    if op == "BatchNormalization":
        x, scale, bias, mean, var = args[:5]
        return f.batch_norm(x, mean, var, scale, bias, training=False, eps=float(attrs.get("epsilon", 1e-5)))
    if op == "Slice":
        return _slice(args)
    if op == "Pad":
        return _pad(args, attrs)
    if op == "Softmax":
        return torch.softmax(args[0], dim=int(attrs.get("axis", -1)))
    raise QuantizationError(f"quantization-aware training cannot run ONNX op {op}")
