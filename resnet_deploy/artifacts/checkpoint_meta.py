"""The JSON beside a checkpoint (``model.pt.json``): the architecture, what the weights were trained
on and how, and the sha256 of the weights it describes. Format ``resnet-deploy-checkpoint/N``.

A checkpoint without it (a torchvision or foreign state dict) is still read: its architecture is
then inferred from the state dict's keys.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from resnet_deploy.artifacts.model_spec import ResNetConfig
from resnet_deploy.artifacts.versions import format_tag, read_version
from resnet_deploy.errors import CheckpointError, ResnetDeployError

KIND, VERSION = "resnet-deploy-checkpoint", 1
FORMAT = format_tag(KIND, VERSION)


@dataclass(frozen=True)
class CheckpointMeta:
    config: ResNetConfig
    sha256: str | None = None  # of the weights file this describes (None in files from before it was kept)
    dataset: str | None = None  # the dataset spec the weights were trained on
    class_names: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None  # None: the family's defaults
    std: tuple[float, ...] | None = None
    normalize: str | None = None  # "channel" or "pixel-mean"
    recipe: str | None = None
    seed: int | None = None
    epochs: int | None = None
    epochs_planned: int | None = None
    test_top1_error: float | None = None
    test_top5_error: float | None = None
    train_top1_error: float | None = None
    init_checkpoint: str | None = None  # fine-tuned from
    producer_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys a user or another tool added: kept as they are

    @classmethod
    def of(cls, config: ResNetConfig, sha256: str | None = None, **fields: Any) -> CheckpointMeta:
        """A record from keyword fields; keys that are not fields go to ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"config", "sha256", "extra"}
        extra = {k: v for k, v in fields.items() if k not in known}
        values = {k: v for k, v in fields.items() if k in known and v is not None}
        for key in ("class_names", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(config=config, sha256=sha256, extra=extra, **values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("extra", "config") or value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return {**out, "format": FORMAT, "config": self.config.to_dict(), "sha256": self.sha256}

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    @classmethod
    def from_json(cls, data: Any, source: str) -> CheckpointMeta:
        """Read and check; one line naming the problem and what to do with the file otherwise."""
        fix = "delete or move it"
        tag = data.get("format") if isinstance(data, dict) else None
        if not isinstance(tag, str) or not tag.startswith(f"{KIND}/") or "config" not in data:
            raise CheckpointError(f"{source} is not resnet-deploy checkpoint metadata; {fix}")
        try:
            read_version(tag, KIND, VERSION, source, not_ours=fix)
        except ResnetDeployError as exc:
            raise CheckpointError(str(exc)) from None
        fields = {k: v for k, v in data.items() if k not in ("format", "config", "sha256")}
        try:
            config = ResNetConfig.from_dict(data["config"])
            return cls.of(config, data.get("sha256"), **fields)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source} has a malformed field ({exc}); {fix}") from None
