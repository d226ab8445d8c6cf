"""The one evaluation preprocessing: an image of any size -> the model's S x S uint8 RGB input.

Training's evaluation, calibration, ``validate`` and the runner all call :func:`fit`, so what a
model is scored on is exactly what it is fed in deployment (the same resampling, the same crop
pixel). The policy travels in the artifact's metadata (``preprocess``), as timm's ``crop_pct`` /
``interpolation`` and torchvision's weight presets do:

- ``crop`` (ImageNet family): the shorter side to ``size / crop_pct`` (256 for 224), centre crop;
- ``stretch`` (CIFAR family, trained at its input size): straight to ``size`` x ``size``.

numpy only; Pillow is imported when an image has to be resized.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from resnet_deploy.artifacts.preprocess_spec import Preprocess


def fit(image: Any, size: int, policy: Preprocess) -> np.ndarray:
    """A PIL image (RGB) -> (size, size, 3) uint8 by ``policy``; no resampling when it is already that size."""
    from PIL import Image

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
