"""The evaluation preprocessing policy an artifact records (``preprocess`` in its metadata).

- ``crop`` (ImageNet family): the shorter side to ``size / crop_pct`` (256 for 224), centre crop;
- ``stretch`` (CIFAR family, trained at its input size): straight to ``size`` x ``size``.

As timm's ``crop_pct`` / ``interpolation`` and torchvision's weight presets; applied by
``resnet_deploy.preprocessing.fit``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from resnet_deploy.errors import ArtifactError

RESIZE_MODES = ("crop", "stretch")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocess:
    resize: str = "crop"
    crop_pct: float = 224 / 256  # crop: the centre crop's share of the resized shorter side
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES or self.interpolation not in INTERPOLATIONS:
            raise ArtifactError(
                f"unknown preprocessing {self.resize!r}/{self.interpolation!r}: resize is one of "
                f"{', '.join(RESIZE_MODES)}, interpolation one of {', '.join(INTERPOLATIONS)}"
            )
        if not 0 < self.crop_pct <= 1:
            raise ArtifactError(f"preprocessing crop_pct {self.crop_pct} is not in (0, 1]")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        try:
            data = json.loads(text)
            return cls(
                resize=str(data["resize"]),
                crop_pct=float(data.get("crop_pct", 224 / 256)),
                interpolation=str(data.get("interpolation", "bilinear")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"malformed preprocessing metadata {text!r} ({exc}); re-export the model") from None


def for_family(family: str) -> Preprocess:
    """What models of this family were evaluated with before the policy was recorded (and still are)."""
    return Preprocess("stretch") if family == "cifar" else Preprocess("crop")
