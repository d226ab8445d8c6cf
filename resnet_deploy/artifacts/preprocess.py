"""The one evaluation preprocessing: the policy an artifact records (``preprocess`` in its metadata)
and :func:`fit`, which applies it to an image of any size to make the model's S x S uint8 RGB input.

- ``crop`` (ImageNet family): the shorter side to ``size / crop_pct`` (256 for 224), centre crop;
- ``stretch`` (CIFAR family, trained at its input size): straight to ``size`` x ``size``.

Training's evaluation, calibration, ``validate`` and the runner all call :func:`fit`, so what a
model is scored on is exactly what it is fed in deployment (the same resampling, the same crop
pixel). The policy travels in the file, as timm's ``crop_pct`` / ``interpolation`` and
torchvision's weight presets do. numpy only; Pillow is imported when an image has to be resized.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import ArtifactError

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy_import("PIL.Image")

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


def fit(image: Any, size: int, policy: Preprocess) -> np.ndarray:
    """A PIL image (RGB) -> (size, size, 3) uint8 by ``policy``; no resampling when it is already that size."""
    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
    }[policy.interpolation]
    w, h = image.size
    if (w, h) == (size, size):
        return np.array(image, dtype=np.uint8)  # a writable copy: torch.from_numpy takes it as is
    if policy.resize == "stretch":
        return np.array(image.resize((size, size), resample), dtype=np.uint8)
    short = round(size / policy.crop_pct)
    scale = short / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.array(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def normalised(images: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """[0, 1] NCHW float32 images -> minus the per-channel ``mean``, over the ``std``, float32 contiguous:
    the one normalisation (the runner's, and what in-graph preprocessing is checked against)."""
    mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((images - mean) / std, dtype=np.float32)


def model_input(images: np.ndarray, size: int, policy: Preprocess, mean: Any, std: Any) -> np.ndarray:
    """uint8 RGB HWC images (one size) -> the normalised (N, 3, size, size) float32 batch, fitted by ``policy``."""
    fitted = np.stack([fit(Image.fromarray(image), size, policy) for image in images])
    return normalised(fitted.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, mean, std)
