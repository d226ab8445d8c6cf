"""ImageFolder images for scoring and calibration with numpy alone (no torch, no worker processes).

What an install without torch reads ``imagefolder:PATH`` with: the same files as
:mod:`resnet_deploy.data.imagefolder` (both split the tree through :mod:`resnet_deploy.data.folder_layout`),
decoded with Pillow and resized by the model's own policy (:func:`resnet_deploy.artifacts.preprocess.fit`),
so its batches equal that reader's evaluation batches value for value. It does not augment: training
needs torch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.preprocess import Preprocess, fit
from resnet_deploy.data.base import Batch, Dataset, Shard
from resnet_deploy.data.folder_layout import IMAGENET_MEAN_STD, Samples, read_layout
from resnet_deploy.errors import MissingDependencyError

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy_import("PIL.Image")

TRAIN_NEEDS_TORCH = (
    'training on ImageFolder images needs torch, which is not installed: pip install "resnet-deploy[train]"'
)


def decode_rgb(path: str) -> Any:
    """The image as RGB, or None when the file does not decode."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


class PlainFolderSplit:
    """Image files decoded one batch at a time in this process, un-augmented."""

    def __init__(self, samples: Samples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def batches(
        self,
        batch_size: int,
        *,
        size: int,
        train: bool = False,
        shuffle: bool | None = None,
        seed: int = 0,
        device: Any = None,
        limit: int | None = None,
        preprocess: Preprocess | None = None,
        shard: Shard | None = None,
    ) -> Iterator[Batch]:
        """As :meth:`resnet_deploy.data.base.Split.batches`, with numpy arrays: (N, 3, size, size) float32
        in [0, 1] and int64 labels; ``shuffle`` picks the same images as the torch reader's."""
        if train or device is not None or shard is not None:
            raise MissingDependencyError(TRAIN_NEEDS_TORCH)
        positions = list(range(len(self.samples)))
        if shuffle:
            random.Random(seed).shuffle(positions)
        if limit is not None:
            positions = positions[:limit]
        policy = preprocess or Preprocess("crop")
        for start in range(0, len(positions), batch_size):
            images, labels, bad = [], [], []
            for position in positions[start : start + batch_size]:
                path, label = self.samples[position]
                image = decode_rgb(path)
                if image is None:
                    bad.append(path)
                    continue
                images.append(fit(image, size, policy).transpose(2, 0, 1))
                labels.append(label)
            stacked = np.stack(images) if images else np.empty((0, 3, size, size), dtype=np.uint8)
            yield Batch(stacked.astype(np.float32) / 255.0, np.asarray(labels, dtype=np.int64), len(bad), tuple(bad))  # type: ignore[arg-type]

    def pixel_mean(self, size: int) -> Any:
        raise MissingDependencyError(TRAIN_NEEDS_TORCH)

    def channel_stats(self, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return IMAGENET_MEAN_STD


def load_plain_folder(path: str | Path) -> Dataset:
    layout = read_layout(path)
    return Dataset(
        spec=f"imagefolder:{layout.root}",
        name=layout.root.name,
        train=PlainFolderSplit(layout.train),
        test=PlainFolderSplit(layout.test),
        class_names=layout.classes,
        native_size=None,
        hflip=True,
        default_mean_std=IMAGENET_MEAN_STD,
    )
