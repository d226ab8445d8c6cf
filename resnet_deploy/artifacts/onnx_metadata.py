"""What an artifact knows about itself: architecture, preprocessing, classes, provenance.

Stored as ONNX ``metadata_props`` (flat string key/values, visible in Netron) and copied into every
engine's sidecar, so that calibration, engine building, validation and the runner need nothing but
the file. Lists are JSON-encoded. The format is versioned (``schema``: ``resnet-deploy/N``): a newer
one is refused with a message, an older one read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from resnet_deploy.artifacts.frame_input import FrameInput
from resnet_deploy.artifacts.model_spec import EXTERNAL, ResNetConfig, external_config
from resnet_deploy.artifacts.preprocess import Preprocess, for_family
from resnet_deploy.artifacts.versions import read_version
from resnet_deploy.errors import ArtifactError

SCHEMA_KIND, SCHEMA_VERSION = "resnet-deploy", 1
SCHEMA = f"{SCHEMA_KIND}/{SCHEMA_VERSION}"
# the props ArtifactMetadata writes only when it has them: a rewrite without one removes the old value
OPTIONAL_KEYS = ("checkpoint_sha256", "class_names", "dataset", "frame_input")
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
    preprocess: Preprocess | None = None  # None: the family's (what files without the prop mean)
    frame_input: FrameInput | None = None  # set: the graph takes raw frames and preprocesses them itself

    @property
    def eval_preprocess(self) -> Preprocess:
        """How an image becomes this model's input, for every evaluator and the runner alike."""
        return self.preprocess or for_family(self.config.family)

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
            "layout": "NHWC" if self.frame_input else "NCHW",
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "weights": "checkpoint" if self.checkpoint_sha256 else "random-init",
            "producer_version": self.producer_version,
            "preprocess": self.eval_preprocess.to_json(),
        }
        if self.checkpoint_sha256:
            props["checkpoint_sha256"] = self.checkpoint_sha256
        if self.class_names:
            props["class_names"] = json.dumps(list(self.class_names))
        if self.dataset:
            props["dataset"] = self.dataset
        if self.frame_input:
            props["frame_input"] = self.frame_input.to_json()
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "the model") -> ArtifactMetadata:
        """Parse and check the props: a value later stages would trip on (a std of 0, class names that do
        not count the classes) is refused here, naming its key."""
        if "schema" not in props:
            raise ArtifactError(
                f"{source} carries no resnet-deploy metadata; bring it in with `resnet-deploy import` (or export "
                "the model with `resnet-deploy export`)"
            )
        read_version(
            props["schema"], SCHEMA_KIND, SCHEMA_VERSION, source, not_ours="export it with `resnet-deploy export` first"
        )
        try:
            config = (
                external_config(int(props["num_classes"]), int(props["input_size"]), int(props.get("in_chans", 3)))
                if props.get("family") == EXTERNAL
                else _zoo_config(props)
            )
            names = props.get("class_names")
            metadata = cls(
                config=config,
                mean=_floats(props, "mean", source),
                std=_floats(props, "std", source),
                class_names=_class_names(names, source) if names else None,
                checkpoint_sha256=props.get("checkpoint_sha256"),
                dataset=props.get("dataset"),
                producer_version=props.get("producer_version", ""),
                preprocess=_recorded_policy(props.get("preprocess"), config.family),
                frame_input=FrameInput.from_json(props["frame_input"], source) if "frame_input" in props else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{source} has malformed resnet-deploy metadata ({exc!r}); re-export it") from exc
        metadata._check_values(source)
        layout = "NHWC" if metadata.frame_input else "NCHW"
        if props.get("layout", "NCHW") != layout:
            raise ArtifactError(
                f"{source} metadata says layout {props['layout']!r}, but "
                + (
                    "a model with its preprocessing inside takes NHWC frames"
                    if metadata.frame_input
                    else "resnet-deploy models take NCHW input (NHWC only with a frame_input record)"
                )
                + "; re-export it with `resnet-deploy export`"
            )
        return metadata

    def _check_values(self, source: str) -> None:
        """Refuse values that contradict each other or would make inference wrong (NaN scores, a class
        without a name): one line naming the metadata key."""
        chans = self.config.in_chans
        for key, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, chans):
                raise ArtifactError(
                    f"{source} metadata {key!r} has {len(values)} values but the model takes {chans}-channel input; "
                    f"re-export it with one {key} per channel"
                )
        bad_mean = [v for v in self.mean if not math.isfinite(v)]
        if bad_mean:
            raise ArtifactError(
                f"{source} metadata 'mean' is {list(self.mean)}: every mean must be a finite number; "
                "re-export it with the mean its training data had"
            )
        if any(not math.isfinite(v) or v <= 0 for v in self.std):
            raise ArtifactError(
                f"{source} metadata 'std' is {list(self.std)}: every std must be a finite number above 0 "
                "(inputs are divided by it); re-export it with the std its training data had"
            )
        classes = self.config.num_classes
        if self.class_names is not None and len(self.class_names) != classes:
            raise ArtifactError(
                f"{source} metadata 'class_names' names {len(self.class_names)} classes but 'num_classes' is "
                f"{classes}; re-export it with one name per class"
            )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["config"] = self.config.to_dict()
        return out


def _zoo_config(props: dict[str, str]) -> ResNetConfig:
    return ResNetConfig.from_dict(
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


def _recorded_policy(text: str | None, family: str) -> Preprocess | None:
    """The recorded preprocessing; None when absent or the family's own (so metadata round-trips)."""
    policy = Preprocess.from_json(text) if text is not None else None
    return None if policy == for_family(family) else policy


def _floats(props: dict[str, str], key: str, source: str) -> tuple[float, ...]:
    try:
        values = json.loads(props[key])  # NaN and Infinity parse: _check_values refuses them
        if not isinstance(values, list) or not values:
            raise TypeError
        return tuple(float(v) for v in values)
    except (ValueError, TypeError):
        raise ArtifactError(
            f"{source} metadata {key!r} is {props[key]!r}, not a JSON list of numbers (one per channel); re-export it"
        ) from None


def _class_names(text: str, source: str) -> tuple[str, ...]:
    try:
        names = json.loads(text)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ArtifactError(
            f"{source} metadata 'class_names' is not a JSON list of strings ({text[:60]!r}); re-export it"
        )
    return tuple(names)


Dims = tuple[int | str | None, ...]  # None: a size ONNX Runtime could not infer, which contradicts nothing


def check_io(
    metadata: ArtifactMetadata,
    props: dict[str, str],
    inputs: list[tuple[str, Dims, str]],
    outputs: list[tuple[str, Dims, str]],
    source: str,
    fix: str = "re-export it with `resnet-deploy export`",
) -> None:
    """Refuse inputs/outputs (name, dims, element type) that are not the (N, C, S, S) float32 ->
    (N, classes) classifier ``metadata`` promises (shared by ONNX files, sessions and engines)."""
    fix = f"it is not the classifier it claims to be (edited after export?): {fix}"
    if len(inputs) != 1 or len(outputs) != 1:
        raise ArtifactError(
            f"{source} has {len(inputs)} inputs and {len(outputs)} outputs; an image classifier has one of each: {fix}"
        )
    cfg = metadata.config
    frame = metadata.frame_input
    expected: dict[str, tuple[int | str, ...]] = {
        "input": ("N", *frame.shape) if frame else ("N", cfg.in_chans, cfg.input_size, cfg.input_size),
        "output": ("N", cfg.num_classes),
    }
    for kind, (name, got, dtype) in (("input", inputs[0]), ("output", outputs[0])):
        want = expected[kind]
        if len(got) != len(want) or any(g not in (None, w) for g, w in zip(got[1:], want[1:], strict=True)):
            shown = ", ".join("?" if d is None else str(d) for d in got)
            raise ArtifactError(
                f"{source} {kind} {name!r} has shape ({shown}) but its metadata promises "
                f"({', '.join(str(d) for d in want)}); {fix}"
            )
        promised = props.get(f"{kind}_name")
        if promised is not None and name != promised:
            raise ArtifactError(
                f"{source} {kind} is named {name!r} but its metadata says {kind}_name {promised!r}; {fix}"
            )
        input_type = frame.dtype if frame else "float32"
        floating = dtype == input_type if kind == "input" else dtype in ("float32", "float16", "float64", "bfloat16")
        if not floating:
            what = f"{input_type} input" if kind == "input" else "floating-point logits"
            raise ArtifactError(f"{source} {kind} {name!r} is {dtype}, but the runner needs {what}; {fix}")
