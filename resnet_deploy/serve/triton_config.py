"""``config.pbtxt`` text for a Triton model, from what an artifact records, and its check against Triton's
own ``model_config.proto`` (``tritonclient.grpc.model_config_pb2``, the ``client`` extra).

The text is written field by field (protobuf text format, as Triton's documentation shows it) so that
comments can say where each value comes from; :func:`check_config` parses it into a ``ModelConfig``, and
a config that does not parse is refused there, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from resnet_deploy._lazy import is_available, lazy_import
from resnet_deploy.errors import ArtifactError

text_format = lazy_import("google.protobuf.text_format", extra="client")

# numpy / ONNX / TensorRT element types -> Triton's DataType names
DATA_TYPES = {
    "float32": "TYPE_FP32",
    "float": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "half": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float64": "TYPE_FP64",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
    "string": "TYPE_STRING",
}


def data_type(dtype: str) -> str:
    """``float32`` (or TensorRT's ``float``) -> ``TYPE_FP32``."""
    try:
        return DATA_TYPES[dtype.lower().removeprefix("datatype.")]
    except KeyError:
        raise ArtifactError(f"tensor type {dtype!r} has no Triton data type; rebuild or re-export the model") from None


@dataclass(frozen=True)
class Tensor:
    """One input or output: its name, Triton data type and dims without the batch dimension."""

    name: str
    data_type: str  # TYPE_FP32, TYPE_UINT8, TYPE_STRING...
    dims: tuple[int, ...]
    label_filename: str | None = None  # outputs only: Triton's classification extension


@dataclass(frozen=True)
class Step:
    """One step of an ensemble: the model it runs and how the ensemble's tensors map onto its own."""

    model: str
    input_map: dict[str, str]  # the model's input -> the ensemble tensor
    output_map: dict[str, str]  # the model's output -> the ensemble tensor


@dataclass(frozen=True)
class ModelConfig:
    """What ``config.pbtxt`` says of one model; ``text()`` writes it."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int
    platform: str | None = None  # tensorrt_plan, onnxruntime_onnx, ensemble
    backend: str | None = None  # openvino, python
    default_model_filename: str | None = None
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int | None = None  # None: no dynamic batching
    instances: int = 1
    instance_kind: str | None = "KIND_CPU"  # None: no instance_group (ensembles)
    warmup: bool = False  # one zero-filled request of batch 1 before the model is ready
    steps: tuple[Step, ...] = ()  # ensembles only
    comments: tuple[str, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"# {c}" for c in self.comments]
        lines.append(f"name: {_quote(self.name)}")
        if self.platform:
            lines.append(f"platform: {_quote(self.platform)}")
        if self.backend:
            lines.append(f"backend: {_quote(self.backend)}")
        if self.default_model_filename:
            lines.append(f"default_model_filename: {_quote(self.default_model_filename)}")
        lines.append(f"max_batch_size: {self.max_batch_size}")
        lines += [line for t in self.inputs for line in _tensor("input", t)]
        lines += [line for t in self.outputs for line in _tensor("output", t)]
        if self.max_queue_delay_us is not None:
            lines.append("dynamic_batching {")
            if self.preferred_batch_sizes:
                lines.append(f"  preferred_batch_size: [ {', '.join(map(str, self.preferred_batch_sizes))} ]")
            lines.append(f"  max_queue_delay_microseconds: {self.max_queue_delay_us}")
            lines.append("}")
        if self.instance_kind is not None:
            lines += ["instance_group [", "  {", f"    count: {self.instances}", f"    kind: {self.instance_kind}"]
            lines += ["  }", "]"]
        if self.warmup:
            lines += self._warmup()
        if self.steps:
            lines += ["ensemble_scheduling {", "  step ["]
            for index, step in enumerate(self.steps):
                lines += ["    {", f"      model_name: {_quote(step.model)}", "      model_version: -1"]
                lines += [
                    f"      input_map {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in step.input_map.items()
                ]
                lines += [
                    f"      output_map {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in step.output_map.items()
                ]
                lines.append("    }" + ("," if index < len(self.steps) - 1 else ""))
            lines += ["  ]", "}"]
        for key, value in self.parameters.items():
            lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
        return "\n".join(lines) + "\n"

    def _warmup(self) -> list[str]:
        lines = ["model_warmup [", "  {", '    name: "zeros"', "    batch_size: 1"]
        for tensor in self.inputs:
            lines += [
                "    inputs {",
                f"      key: {_quote(tensor.name)}",
                "      value {",
                f"        data_type: {tensor.data_type}",
                f"        dims: [ {', '.join(map(str, tensor.dims))} ]",
                "        zero_data: true",
                "      }",
                "    }",
            ]
        return [*lines, "  }", "]"]


def _tensor(kind: str, tensor: Tensor) -> list[str]:
    lines = [
        f"{kind} [",
        "  {",
        f"    name: {_quote(tensor.name)}",
        f"    data_type: {tensor.data_type}",
        f"    dims: [ {', '.join(map(str, tensor.dims))} ]",
    ]
    if tensor.label_filename:
        lines.append(f"    label_filename: {_quote(tensor.label_filename)}")
    return [*lines, "  }", "]"]


def _quote(text: str) -> str:
    return json.dumps(text)  # a protobuf text-format string literal for the names we write (no control chars)


def can_check() -> bool:
    """Whether Triton's model_config.proto is here to check configs against (the ``client`` extra)."""
    return is_available("tritonclient") and is_available("grpc")


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """``text`` parsed into Triton's ``ModelConfig`` message; a text that does not parse is refused in one line."""
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(
            f"{source} does not parse as Triton's model_config.proto ({exc}); this is a bug in resnet-deploy, "
            "please report it with the command that wrote it"
        ) from None


def check_configs(configs: Sequence[tuple[str, str]]) -> bool:
    """Parse every (source, text) with Triton's own proto when tritonclient is installed; whether it was."""
    if not can_check():
        return False
    for source, text in configs:
        parse_config(text, source)
    return True
