"""What an artifact knows about itself: architecture, preprocessing, classes, provenance.

Stored as ONNX ``metadata_props`` (flat string key/values, visible in Netron) so that calibration,
engine building, validation and the runner need nothing but the file. Lists are JSON-encoded.
Pure Python: the runner reads these through ONNX Runtime's ``custom_metadata_map`` without onnx.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.models.config import ResNetConfig

SCHEMA = "resnet-deploy/1"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ArtifactMetadata:
    """Everything later stages need to use a model file correctly.

    Inputs are NCHW float32 RGB, scaled to [0, 1], then ``(x - mean) / std`` per channel. A model
    whose config has ``pixel_mean`` subtracts its per-pixel mean image itself (mean 0, std 1 here).
    """

    config: ResNetConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None = None
    checkpoint_sha256: str | None = None  # None: randomly initialised weights
    dataset: str | None = None  # the dataset spec the weights were trained on, when known
    producer_version: str = ""

    def to_props(self) -> dict[str, str]:
        cfg = self.config
        props = {
            "schema": SCHEMA,
            "architecture": cfg.name,
            "family": cfg.family,
            "depth": str(cfg.depth),
            "block": cfg.block,
            "variant": cfg.variant,
            "plain": str(cfg.plain).lower(),
            "shortcut": cfg.shortcut or "none",
            "num_classes": str(cfg.num_classes),
            "input_size": str(cfg.input_size),
            "in_chans": str(cfg.in_chans),
            "pixel_mean": str(cfg.pixel_mean).lower(),
            "layout": "NCHW",
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "weights": "checkpoint" if self.checkpoint_sha256 else "random-init",
            "producer_version": self.producer_version,
        }
        if self.checkpoint_sha256:
            props["checkpoint_sha256"] = self.checkpoint_sha256
        if self.class_names:
            props["class_names"] = json.dumps(list(self.class_names))
        if self.dataset:
            props["dataset"] = self.dataset
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "the model") -> ArtifactMetadata:
        if props.get("schema") != SCHEMA:
            raise ResnetDeployError(
                f"{source} carries no resnet-deploy metadata (schema {props.get('schema')!r}); "
                "export it with `resnet-deploy export` first"
            )
        try:
            config = ResNetConfig.from_dict(
                {
                    "depth": props["depth"],
                    "variant": props["variant"],
                    "plain": props["plain"] == "true",
                    "shortcut": None if props["shortcut"] == "none" else props["shortcut"],
                    "num_classes": int(props["num_classes"]),
                    "input_size": int(props["input_size"]),
                    "in_chans": int(props.get("in_chans", 3)),
                    "pixel_mean": props.get("pixel_mean") == "true",
                }
            )
            names = props.get("class_names")
            return cls(
                config=config,
                mean=tuple(float(v) for v in json.loads(props["mean"])),
                std=tuple(float(v) for v in json.loads(props["std"])),
                class_names=tuple(json.loads(names)) if names else None,
                checkpoint_sha256=props.get("checkpoint_sha256"),
                dataset=props.get("dataset"),
                producer_version=props.get("producer_version", ""),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ResnetDeployError(f"{source} has malformed resnet-deploy metadata ({exc!r}); re-export it") from exc

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["config"] = self.config.to_dict()
        return out


def write_onnx_metadata(model_proto: Any, metadata: ArtifactMetadata) -> None:
    """Replace the model's metadata props with ``metadata`` (other keys are kept)."""
    props = metadata.to_props()
    kept = [(p.key, p.value) for p in model_proto.metadata_props if p.key not in props]
    del model_proto.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    model_proto.producer_name = "resnet-deploy"
    model_proto.producer_version = metadata.producer_version


def load_onnx(path: str | Path, *, external_data: bool = True) -> Any:
    """The ModelProto in ``path``; a missing or foreign file is a one-line error."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external_data)
    except FileNotFoundError:
        raise ResnetDeployError(f"ONNX file {path} not found") from None
    except Exception as exc:  # onnx raises DecodeError and others for foreign files
        raise ResnetDeployError(f"{path} is not a readable ONNX model ({exc})") from exc


def onnx_props(model: Any) -> dict[str, str]:
    """All metadata props of a loaded ONNX model (ours and any others), as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def read_onnx_props(path: str) -> dict[str, str]:
    """All metadata props of an ONNX file (ours and any others), as a dict."""
    return onnx_props(load_onnx(path, external_data=False))


def read_onnx_metadata(path: str) -> ArtifactMetadata:
    """Read the metadata of an ONNX file written by ``resnet-deploy export``."""
    return ArtifactMetadata.from_props(read_onnx_props(path), source=str(path))


def check_classifier_io(model_proto: Any, metadata: ArtifactMetadata, source: str) -> None:
    """Refuse a graph whose inputs/outputs are not the (N, C, S, S) -> (N, classes) its metadata promises."""
    initializers = {i.name for i in model_proto.graph.initializer}
    inputs = [i for i in model_proto.graph.input if i.name not in initializers]
    outputs = list(model_proto.graph.output)
    cfg = metadata.config
    expected_in = ("N", cfg.in_chans, cfg.input_size, cfg.input_size)
    expected_out = ("N", cfg.num_classes)

    def dims(value: Any) -> tuple[int | str, ...]:
        shape = value.type.tensor_type.shape
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim)

    def matches(got: tuple[int | str, ...], want: tuple[int | str, ...]) -> bool:
        return len(got) == len(want) and all(g == w for g, w in zip(got[1:], want[1:], strict=True))

    if len(inputs) != 1 or len(outputs) != 1:
        raise ResnetDeployError(
            f"{source} has {len(inputs)} inputs and {len(outputs)} outputs; "
            "an image classifier has one of each (re-export it with `resnet-deploy export`)"
        )
    for kind, value, want in (("input", inputs[0], expected_in), ("output", outputs[0], expected_out)):
        got = dims(value)
        if not matches(got, want):
            shown = ", ".join(str(d) for d in got)
            raise ResnetDeployError(
                f"{source} {kind} {value.name!r} has shape ({shown}) but its metadata promises "
                f"({', '.join(str(d) for d in want)}); it is not the classifier it claims to be, re-export it"
            )
