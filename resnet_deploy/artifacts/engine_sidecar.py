"""The JSON written beside every engine (``model.engine.json``): what it is, for what, from what.

The engine builder writes an :class:`EngineSidecar`, the runner reads one: it refuses an engine
built for another GPU or TensorRT version, with the command that rebuilds it, before TensorRT
deserialises anything; people read it to know what they deploy. Format ``resnet-deploy-engine/N``.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy._io import finish_interrupted_writes
from resnet_deploy.artifacts.lineage import KEYS, GraphLineage
from resnet_deploy.artifacts.naming import json_beside
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.artifacts.versions import format_tag, read_version
from resnet_deploy.errors import ArtifactError

KIND, VERSION = "resnet-deploy-engine", 1
FORMAT = format_tag(KIND, VERSION)


def sidecar_path(engine_path: str | Path) -> Path:
    return json_beside(engine_path)


@dataclass(frozen=True)
class EngineTargets:
    """The GPUs an engine runs on: full TensorRT's build GPU, or TensorRT-RTX's compute capabilities."""

    gpu: str | None = None
    compute_capability: str | None = None  # full TensorRT: the GPU it was built on
    compute_capabilities: tuple[str, ...] | None = None  # TensorRT-RTX: --target-cc, or ("current GPU",)
    dla_core: int | None = None


@dataclass(frozen=True)
class EngineSidecar:
    engine_bytes: int
    engine_sha256: str
    backend: str  # "tensorrt" or "tensorrt-rtx"
    backend_version: str
    model: dict[str, str]  # the ONNX metadata props of the graph built (``ArtifactMetadata.to_props``)
    engine: str = ""  # the engine's file name when built
    precision: str = "fp32"
    strongly_typed: bool | None = None
    builder_flags: tuple[str, ...] = ()
    targets: EngineTargets = field(default_factory=EngineTargets)
    hardware_compat: str | None = None
    version_compatible: bool = False
    profile: dict[str, Any] | None = None
    io: dict[str, list[dict[str, Any]]] | None = None  # {"inputs": [{"name": ...}], "outputs": [...]}
    source_onnx: str | None = None  # the graph TensorRT built
    source_onnx_sha256: str | None = None
    input_onnx_sha256: str | None = None  # the FP32 ONNX given, when a twin was built from it
    calibration_id: str | None = None
    int8_kept_out: list[dict[str, str]] | None = None  # layers the accuracy budget kept out of INT8 (node, module)
    accuracy_budget: dict[str, Any] | None = None  # the budget, and the top-1 drop measured within it
    lineage: dict[str, str] | None = None  # the built graph's lineage props (``artifacts.lineage``); None: older
    layers: list[dict[str, Any]] | None = None  # the engine's layers as its builder reported them (engine.layer_info)
    build_options: dict[str, Any] | None = None
    build_seconds: float | None = None
    rebuild_command: str | None = None
    built_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    built_on: str = field(default_factory=lambda: f"{platform.node()} ({platform.machine()}, {platform.system()})")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "targets":
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}
                value = {k: v for k, v in value.items() if v is not None}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"

    @classmethod
    def from_json(cls, data: Any, source: str) -> EngineSidecar:
        """A sidecar from its JSON, every field the runner reads type-checked (one line naming the field)."""
        if not isinstance(data, dict) or not isinstance(data.get("format"), str):
            raise ArtifactError(f"{source} is not a resnet-deploy engine sidecar; rebuild the engine")
        read_version(data["format"], KIND, VERSION, source, not_ours="rebuild the engine")
        problem = sidecar_problem(data)
        if problem:
            command = data.get("rebuild_command")
            how = f"rebuild it: {command}" if isinstance(command, str) and command else "rebuild the engine"
            raise ArtifactError(f"{source}: {problem}; the sidecar was edited or damaged, {how}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        targets = data.get("targets") or {}
        ccs = targets.get("compute_capabilities")
        values["targets"] = EngineTargets(
            gpu=targets.get("gpu"),
            compute_capability=targets.get("compute_capability"),
            compute_capabilities=tuple(ccs) if ccs is not None else None,
            dla_core=targets.get("dla_core"),
        )
        values["builder_flags"] = tuple(data.get("builder_flags") or ())
        return cls(**values)

    @classmethod
    def read(cls, engine_path: str | Path) -> EngineSidecar:
        path = sidecar_path(engine_path)
        finish_interrupted_writes(path.parent)  # a build killed between its renames: its files land whole first
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(
                f"{path} not found: engines built by `resnet-deploy build-engine` carry it; rebuild the engine"
            ) from None
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path} is not readable JSON ({exc}); rebuild the engine") from None
        return cls.from_json(data, str(path))

    @property
    def metadata(self) -> ArtifactMetadata:
        """What the model is (the ONNX metadata of the graph built), checked."""
        return ArtifactMetadata.from_props(self.model, source=f"{self.engine or 'the engine'} (its sidecar's model)")

    @property
    def graph_lineage(self) -> GraphLineage:
        """Where the graph built came from: its precision and form, how it was calibrated, what was kept out."""
        props = self.lineage if self.lineage is not None else {k: v for k, v in self.model.items() if k in KEYS}
        return GraphLineage.from_props(props, source=f"{self.engine or 'the engine'} (its sidecar's lineage)")

    def rebuild_hint(self) -> str:
        command = self.rebuild_command
        if not command:
            flag = "" if self.precision == "fp32" else f" --{self.precision}"
            command = f"resnet-deploy build-engine --onnx {self.source_onnx or 'MODEL.onnx'}{flag}"
        return f"rebuild it here: {command}"


# what the runner reads of a sidecar, and the JSON types each may have (None: absent, or null)
_STR, _INT, _BOOL, _DICT, _LIST = "a string", "a whole number", "true or false", "an object", "a list"
FIELDS: dict[str, tuple[str, bool]] = {  # field -> (kind, required)
    "engine_bytes": (_INT, True),
    "engine_sha256": (_STR, True),
    "backend": (_STR, True),
    "backend_version": (_STR, True),
    "precision": (_STR, False),
    "version_compatible": (_BOOL, False),
    "hardware_compat": (_STR, False),
    "rebuild_command": (_STR, False),
    "source_onnx": (_STR, False),
    "targets": (_DICT, False),
    "io": (_DICT, False),
    "model": (_DICT, True),
    "builder_flags": (_LIST, False),
    "strongly_typed": (_BOOL, False),
    "int8_kept_out": (_LIST, False),
    "accuracy_budget": (_DICT, False),
    "lineage": (_DICT, False),
    "layers": (_LIST, False),
}
CC = re.compile(r"^\d{1,2}\.\d$")  # a compute capability: "8.9", "12.0"
TARGET_FIELDS = {"gpu": _STR, "compute_capability": _STR, "compute_capabilities": _LIST, "dla_core": _INT}


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _BOOL: bool, _DICT: dict, _LIST: list}[kind])


def _shown(value: Any) -> str:
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{kinds.get(type(value), type(value).__name__)} ({json.dumps(value)[:40]})"


def _layer_ok(layer: Any) -> bool:
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
        return False
    lists = ("inputs", "outputs", "weights", "onnx_nodes", "modules")
    if any(
        not (isinstance(layer.get(k, []), list) and all(isinstance(v, str) for v in layer.get(k, []))) for k in lists
    ):
        return False
    return _is(layer.get("macs", 0), _INT) and isinstance(layer.get("type", ""), str)


def sidecar_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the types of the fields the runner reads; None when nothing is."""
    for key, (kind, required) in FIELDS.items():
        value = data.get(key)
        if value is None:
            if required:
                return f"field {key!r} is missing"
        elif not _is(value, kind):
            return f"field {key!r} is {_shown(value)} but must be {kind}"
    for key, kind in TARGET_FIELDS.items():
        value = (data.get("targets") or {}).get(key)
        if value is not None and not _is(value, kind):
            return f"field 'targets.{key}' is {_shown(value)} but must be {kind}"
    targets = data.get("targets") or {}
    if not all(
        isinstance(cc, str) and (CC.match(cc) or cc == "current GPU")
        for cc in targets.get("compute_capabilities") or []
    ):
        return "field 'targets.compute_capabilities' must be a list of compute capabilities such as \"8.9\""
    built_on = targets.get("compute_capability")
    if built_on is not None and not CC.match(built_on):
        return (
            f"field 'targets.compute_capability' is {_shown(built_on)} but must be a compute capability such as \"9.0\""
        )
    for record in ("model", "lineage"):
        props = data.get(record) or {}
        bad = next((k for k, v in props.items() if not isinstance(v, str)), None)
        if bad is not None:
            return f"field '{record}.{bad}' is {_shown(props[bad])} but must be a string (ONNX metadata values are)"
    for i, layer in enumerate(data.get("layers") or []):
        if not _layer_ok(layer):
            return (
                f"field 'layers[{i}]' must be an object with a string 'name', lists of strings 'inputs', 'outputs', "
                "'weights', 'onnx_nodes' and 'modules', and a whole number 'macs'"
            )
    for kind in ("inputs", "outputs"):
        tensors = (data.get("io") or {}).get(kind)
        if tensors is not None and not (
            isinstance(tensors, list) and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tensors)
        ):
            return f"field 'io.{kind}' must be a list of objects with a 'name'"
    return None
