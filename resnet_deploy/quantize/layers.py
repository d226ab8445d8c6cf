"""The layers INT8 placement quantizes, named so a user finds them in PyTorch and in a TensorRT engine.

A layer is one ONNX node that TensorRT placement gives Q/DQ: a Conv or Gemm (its input activation
and its weights) or a residual Add (its shortcut input). Each is named three ways:

- ``node``: the ONNX node name. TensorRT names engine layers after the ONNX nodes they came from
  (fused layers join the names with " + "), so this is the name to look for in an engine's layers;
- ``module``: the PyTorch module it came from (``layer3.4.conv2``), read from the weight's name
  (our exports keep ``layer3.4.conv2.weight``), or for an Add from the exporter's name scope
  (``layer3.4 (residual add)``);
- ``macs``: multiply-accumulates per image, for the share of the work a layer carries.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.quantize.qdq_tensorrt import layer_id, quantized_layers

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")

NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # node metadata the dynamo exporter writes


@dataclass(frozen=True)
class QuantLayer:
    node: str  # ONNX node name (or its first output when unnamed)
    op: str  # Conv, Gemm or Add
    module: str  # the PyTorch module, "" when the graph does not say
    macs: int  # multiply-accumulates per image

    def label(self) -> str:
        return f"{self.module} ({self.node})" if self.module else self.node


def quantizable_layers(model: Any) -> list[QuantLayer]:
    """Every layer TensorRT placement quantizes in ``model`` (FP32 ONNX), in graph order."""
    weights = {i.name: i for i in model.graph.initializer}
    spatial = _output_spatial_sizes(model)
    return [
        QuantLayer(
            node=layer_id(node),
            op=node.op_type,
            module=_module_name(node),
            macs=_macs(node, weights, spatial),
        )
        for node in quantized_layers(model)
    ]


def mac_share(layers: list[QuantLayer], kept_out: set[str] | frozenset[str]) -> float:
    """The share of the quantizable layers' MACs still computed in INT8 when ``kept_out`` are not."""
    total = sum(layer.macs for layer in layers)
    if total == 0:
        return 1.0 if not kept_out else 0.0
    return sum(layer.macs for layer in layers if layer.node not in kept_out) / total


def _module_name(node: Any) -> str:
    """The PyTorch module: from the weight's name, else the dynamo exporter's name scopes, else the
    TorchScript exporter's node name (``/layer1/layer1.0/conv1/Conv``); "" when none says."""
    if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and node.input[1].endswith(".weight"):
        return str(node.input[1][: -len(".weight")])
    scopes = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES), None)
    if scopes is not None:
        try:
            names = [s for s in ast.literal_eval(scopes) if s][:-1]  # the last scope is the op itself (add_50)
        except (ValueError, SyntaxError):
            names = []
        module = names[-1] if names else ""
    else:
        module = _module_of_scope_path(node.name)
    if not module:
        return ""
    return f"{module} (residual add)" if node.op_type == "Add" else module


def _module_of_scope_path(name: str) -> str:
    """``/layer2/layer2.0/downsample/downsample.0/Conv`` -> ``layer2.0.downsample.0``: each scope is
    a child's name, or its parent's extended by a dot (Sequential children)."""
    if not name.startswith("/"):
        return ""
    path: list[str] = []
    for scope in name.strip("/").split("/")[:-1]:  # the last part is the op
        if path and scope.startswith(path[-1] + "."):
            path[-1] = scope
        else:
            path.append(scope)
    return ".".join(path)


def _macs(node: Any, weights: dict[str, Any], spatial: dict[str, int]) -> int:
    if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in weights:
        return 0
    per_position = int(np.prod(weights[node.input[1]].dims))  # Cout * Cin/groups * kh * kw, or in * out
    return per_position * (spatial.get(node.output[0], 1) if node.op_type == "Conv" else 1)


def _output_spatial_sizes(model: Any) -> dict[str, int]:
    """H * W of every tensor whose shape inference knows it (the batch dimension may be symbolic)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference cannot walk: MACs fall back to per-position counts
        return {}
    sizes = {}
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            sizes[info.name] = dims[2].dim_value * dims[3].dim_value
    return sizes
