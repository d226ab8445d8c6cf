"""A split held in memory as a uint8 tensor: batched augmentation on the training device.

Augmentation runs on whole batches with tensor ops (no per-image Python), so on a GPU the data
never leaves the device. Randomness comes from a generator seeded per call, so an epoch's batches
are a pure function of (seed, data): the basis of bit-for-bit ``--resume``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.preprocess import Preprocess, fit
from resnet_deploy.data.base import Batch, Shard

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy_import("PIL.Image")


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def _fit_each(images: torch.Tensor, size: int, policy: Preprocess) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, C, size, size) through the runner's own resizing, image by image."""

    out = torch.empty(images.shape[0], images.shape[1], size, size)
    for i, image in enumerate(images.cpu()):
        hwc = image.permute(1, 2, 0).numpy()
        pil = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc).convert("RGB")
        fitted = fit(pil, size, policy)[:, :, : images.shape[1]]
        out[i] = torch.from_numpy(fitted).permute(2, 0, 1).to(torch.float32).div(255.0)
    return out


def pad_and_crop(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad every image by ``pad`` and take a random same-size crop of each (the paper's CIFAR aug)."""
    draws = _Draws.of(images.shape[0], pad, False, generator)
    return _shifted(images, pad, draws.dy, draws.dx)


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _flipped(images, torch.rand(images.shape[0], generator=generator) < 0.5)


def _shifted(images: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Each image zero-padded by ``pad`` and cropped back to its size at offset (dy, dx)."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy, dx = dy.to(images.device), dx.to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chans = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _flipped(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class _Draws:
    """One global batch's augmentation: offsets and flips drawn for all of it, in this order, so an
    image's crop does not depend on which process (of how many) trains on it."""

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor | None

    @classmethod
    def of(cls, size: int, pad: int, hflip: bool, generator: torch.Generator) -> _Draws:
        dy = torch.randint(0, 2 * pad + 1, (size,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (size,), generator=generator)
        flip = torch.rand(size, generator=generator) < 0.5 if hflip else None
        return cls(dy, dx, flip)

    def apply(self, images: torch.Tensor, pad: int, mine: slice) -> torch.Tensor:
        images = _shifted(images, pad, self.dy[mine], self.dx[mine])
        return images if self.flip is None else _flipped(images, self.flip[mine])


class TensorSplit:
    """Images (N, C, H, W) uint8 and labels (N,) int64, augmented per batch when training."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, hflip: bool = True, pad: int = 4) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected (N, C, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.hflip = hflip
        self.pad = pad
        self._cache: dict[tuple[str, int], torch.Tensor] = {}  # (device, size) -> resident images

    def __len__(self) -> int:
        return len(self.labels)

    def _resident(self, device: torch.device) -> torch.Tensor:
        key = (str(device), 0)
        if key not in self._cache:
            self._cache[key] = self.images.to(device)
        return self._cache[key]

    def batches(
        self,
        batch_size: int,
        *,
        size: int,
        train: bool = False,
        shuffle: bool | None = None,
        seed: int = 0,
        device: torch.device | None = None,
        limit: int | None = None,
        preprocess: Preprocess | None = None,
        shard: Shard | None = None,
    ) -> Iterator[Batch]:
        device = device or torch.device("cpu")
        generator = torch.Generator().manual_seed(seed)
        count = len(self) if limit is None else min(limit, len(self))
        shuffle = train if shuffle is None else shuffle
        order = torch.randperm(len(self), generator=generator)[:count] if shuffle else torch.arange(count)
        images, labels = self._resident(device), self.labels.to(device)
        pad = max(1, round(self.pad * size / self.images.shape[-1]))
        for start in range(0, count, batch_size):
            whole = order[start : start + batch_size]
            mine = shard.part(len(whole)) if shard is not None else slice(0, len(whole))
            draws = _Draws.of(len(whole), pad, self.hflip, generator) if train else None
            index = whole[mine].to(device)
            if not train and preprocess is not None and images.shape[-1] != size:
                x = _fit_each(images[index], size, preprocess).to(device)  # as the runner resizes: one code
            else:
                x = _resize(images[index].float().div_(255), size)
            if draws is not None:
                x = draws.apply(x, pad, mine)
            yield Batch(x, labels[index])

    def pixel_mean(self, size: int) -> torch.Tensor:
        total = torch.zeros(self.images.shape[1], size, size, dtype=torch.float64)
        for start in range(0, len(self), 4096):
            chunk = _resize(self.images[start : start + 4096].float().div_(255), size)
            total += chunk.double().sum(0)
        return (total / len(self)).float()

    def channel_stats(self, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        total = torch.zeros(self.images.shape[1], dtype=torch.float64)
        squares = torch.zeros_like(total)
        pixels = 0
        for start in range(0, len(self), 4096):
            chunk = _resize(self.images[start : start + 4096].float().div_(255), size).double()
            total += chunk.sum((0, 2, 3))
            squares += chunk.square().sum((0, 2, 3))
            pixels += chunk.shape[0] * size * size
        mean = total / pixels
        std = (squares / pixels - mean.square()).clamp_min(1e-12).sqrt()
        return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)
