"""The layers of a built engine as TensorRT reports them, recorded in its sidecar at build time.

With detailed profiling, TensorRT's builder logs the engine's layers: TensorRT-RTX as a ``Layers:``
message, one ``Name: ..., LayerType: ..., Inputs: [...], Constants: [...], Outputs: [...], ...,
Metadata: [ONNX Layer: node]...`` line per layer. Read here into :class:`EngineLayer` records: each
layer's type, the data types it reads, writes and holds as constants (its weights), the ONNX nodes it
fused, and, for the layers that carry a Conv or Gemm, the PyTorch module and MACs of those nodes. So
``inspect`` shows an engine's INT8 share without a GPU, where TensorRT's engine inspector needs one.
Builders whose log carries no such message leave no layers (``None``: not reported).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

_LAYER = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<type>[^,]*), Inputs: (?P<rest>.*)$")
_SECTION = re.compile(r"(Inputs|Constants|Outputs): \[(.*?)\](?=, (?:Constants|Outputs|TacticName):|, TacticName|$)")
_DATATYPE = re.compile(r"Datatype: (\w+)")
_ONNX_NODE = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
PRECISIONS = {"Int8": "int8", "Half": "fp16", "Float": "fp32", "BFloat16": "bf16", "FP8": "fp8", "Int4": "int4"}


@dataclass(frozen=True)
class EngineLayer:
    name: str
    type: str  # TensorRT's layer type (correlation, kgen, CaskConvolution...)
    inputs: tuple[str, ...]  # data types read: int8, fp16, fp32...
    outputs: tuple[str, ...]
    weights: tuple[str, ...]  # data types of the layer's constants
    onnx_nodes: tuple[str, ...]  # the ONNX nodes fused into it
    modules: tuple[str, ...] = ()  # the PyTorch modules of its Conv/Gemm nodes
    macs: int = 0  # multiply-accumulates per image of those nodes

    @property
    def computes(self) -> bool:
        """Whether the layer carries a Conv or Gemm of the model (the work INT8 is about)."""
        return bool(self.modules) or self.macs > 0

    @property
    def precision(self) -> str:
        """The precision its math runs in: int8 when it reads INT8 activations with INT8 weights."""
        if "int8" in self.inputs and (not self.weights or "int8" in self.weights):
            return "int8"
        for kind in ("fp16", "bf16", "fp8"):
            if kind in self.inputs or kind in self.weights:
                return kind
        return "fp32"

    def to_json(self) -> dict[str, Any]:
        return {**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineLayer:
        return cls(
            name=str(data["name"]),
            type=str(data.get("type", "")),
            inputs=tuple(map(str, data.get("inputs", ()))),
            outputs=tuple(map(str, data.get("outputs", ()))),
            weights=tuple(map(str, data.get("weights", ()))),
            onnx_nodes=tuple(map(str, data.get("onnx_nodes", ()))),
            modules=tuple(map(str, data.get("modules", ()))),
            macs=int(data.get("macs", 0)),
        )


def parse_layers(message: str) -> list[EngineLayer]:
    """The layers of one ``Layers:`` message; lines that are not a layer are passed over."""
    layers = []
    for line in message.splitlines():
        match = _LAYER.match(line.strip())
        if match is None:
            continue
        sections = dict(_SECTION.findall("Inputs: " + match["rest"]))
        layers.append(
            EngineLayer(
                name=match["name"],
                type=match["type"].strip(),
                inputs=_types(sections.get("Inputs", "")),
                outputs=_types(sections.get("Outputs", "")),
                weights=_types(sections.get("Constants", "")),
                onnx_nodes=tuple(dict.fromkeys(_ONNX_NODE.findall(line))),
            )
        )
    return layers


def _types(section: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(PRECISIONS.get(t, t.lower()) for t in _DATATYPE.findall(section)))


COMPUTE_TYPES = ("correlation", "convolution", "gemm", "matmul", "fullyconnected", "cask")


def _carrier(node: str, layers: list[EngineLayer]) -> EngineLayer | None:
    """The one layer that computes ``node``: several name it (the quantize kernels fused before a Conv
    carry its name too); the one named after it, else the one of a compute type, else the last."""
    naming = [layer for layer in layers if node in layer.onnx_nodes]
    for layer in naming:
        if layer.name.startswith(node):
            return layer
    for layer in naming:
        if layer.type.lower().startswith(COMPUTE_TYPES):
            return layer
    return naming[-1] if naming else None


def with_modules(layers: list[EngineLayer], onnx_layers: list[Any]) -> list[EngineLayer]:
    """Each layer with the PyTorch modules and MACs of the Conv/Gemm nodes it computes (``onnx_layers``:
    :func:`resnet_deploy.quantize.layer_report.onnx_layers` of the graph built)."""
    carried: dict[str, list[Any]] = {}
    for onnx_layer in onnx_layers:
        if onnx_layer.op in ("Conv", "Gemm"):
            carrier = _carrier(onnx_layer.node, layers)
            if carrier is not None:
                carried.setdefault(carrier.name, []).append(onnx_layer)
    out = []
    for layer in layers:
        fused = carried.get(layer.name, [])
        out.append(
            EngineLayer(
                **{
                    **asdict(layer),
                    "modules": tuple(f.module or f.node for f in fused),
                    "macs": sum(f.macs for f in fused),
                }
            )
        )
    return out


def compute_shares(layers: list[EngineLayer]) -> list[tuple[str, str, int]]:
    """``(module, precision, macs)`` of each layer that computes a Conv or Gemm of the model."""
    return [(", ".join(layer.modules) or layer.name, layer.precision, layer.macs) for layer in layers if layer.computes]
