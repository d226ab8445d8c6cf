"""ImageFolder trees (one sub-folder per class, JPEG/PNG), with the standard ImageNet preprocessing.

``imagefolder:PATH``: which files train and which test is :mod:`resnet_deploy.data.folder_layout`'s
rule (``train/`` beside ``val/`` or ``test/``; or class folders, a seeded 10% held out). Eval: the
model's preprocessing policy through :func:`resnet_deploy.artifacts.preprocess.fit` (default: shorter
side to 256/224 of the input, centre crop).
Train: random-resized crop and horizontal flip. Images that fail to decode are skipped, counted
and named (``Batch.skipped_paths``); the caller fails the run when too many do.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.preprocess import Preprocess, fit
from resnet_deploy.data import gpu_jpeg
from resnet_deploy.data.base import Batch, Dataset, Shard
from resnet_deploy.data.folder_layout import IMAGENET_MEAN_STD, read_layout
from resnet_deploy.data.plain_folder import decode_rgb
from resnet_deploy.errors import DatasetError

if TYPE_CHECKING:
    from PIL import Image
    from torchvision.transforms import v2
else:
    Image = lazy_import("PIL.Image")
    v2 = lazy_import("torchvision.transforms.v2", extra="train")


def _eval_transform(image: Any, *, size: int, policy: Preprocess) -> torch.Tensor:
    """(3, size, size) uint8: the runner's own resizing (:func:`resnet_deploy.artifacts.preprocess.fit`)."""
    return torch.from_numpy(fit(image, size, policy)).permute(2, 0, 1)


def _to_unit(images: torch.Tensor, train: bool) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], on the device: a quarter of the bytes cross from the workers and
    to the GPU. Train divides as torchvision's ToDtype(scale=True) does (x * (1/255)), evaluation as
    the runner does in numpy (x / 255): each bit for bit what it was when the workers converted."""
    floats = images.to(torch.float32)
    return floats.mul_(1.0 / 255) if train else floats.div_(255.0)


Item = tuple[int, int | None]  # (index into the split's samples, augmentation seed; None: no augmentation)


class _Files(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Decoded, transformed samples. A random transform is seeded per image, from the seed the
    batch order gives it, so an epoch's augmentation does not depend on how many DataLoader workers
    decode it, nor on how many processes train on it."""

    def __init__(self, samples: list[tuple[str, int]], transform: Any) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: Item) -> tuple[torch.Tensor, int] | str:
        """The transformed image (uint8) and its label; the path alone when the file does not decode."""
        index, seed = item
        path, label = self.samples[index]
        image = decode_rgb(path)
        if image is None:
            return path
        if seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):  # v2 transforms draw from the global generator
            torch.default_generator.manual_seed(
                seed
            )  # CPU only: torch.manual_seed also queues CUDA seeding, 0.3 ms an image
            return self.transform(image), label


def _collate(items: list[tuple[torch.Tensor, int] | str]) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """A tuple, not a Batch: DataLoader pins tensors inside tuples, not inside dataclasses."""
    good = [item for item in items if not isinstance(item, str)]
    bad = tuple(item for item in items if isinstance(item, str))
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), bad
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), bad


class _Order:
    """The batches a persistent loader asks its workers for, set before each pass: the loader (and
    its worker processes) outlive the epoch, the order does not."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []

    def __iter__(self) -> Iterator[list[Item]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _augmentation_seed(seed: int, position: int) -> int:
    return (seed * 1_000_003 + position) % (2**63)


class FolderSplit:
    """Image files on disk, decoded and augmented by DataLoader worker processes that persist from
    one epoch to the next (one loader per size and transform), prefetching, into pinned memory on GPUs."""

    def __init__(
        self, samples: list[tuple[str, int]], *, workers: int = 0, decode_on: torch.device | None = None
    ) -> None:
        self.samples = samples
        self.workers = workers
        self.decode_on = decode_on  # training images decoded and augmented on this device (data.gpu_jpeg)
        self._loaders: dict[tuple[Any, ...], tuple[torch.utils.data.DataLoader[Any], _Order]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def transform(size: int, train: bool, preprocess: Preprocess | None = None) -> Any:
        """uint8 (3, size, size). Train: random-resized crop and flip. Eval:
        :func:`resnet_deploy.artifacts.preprocess.fit`, the runner's own preprocessing, so validate and
        calibration score what deployment feeds."""

        if train:
            return v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
        return functools.partial(_eval_transform, size=size, policy=preprocess or Preprocess("crop"))

    def _loader(
        self, size: int, train: bool, preprocess: Preprocess | None, pin: bool
    ) -> tuple[torch.utils.data.DataLoader[Any], _Order]:
        key = (size, train, preprocess, pin)
        if key not in self._loaders:
            order = _Order()
            encoded = train and self.decode_on is not None
            loader = torch.utils.data.DataLoader(
                gpu_jpeg.EncodedFiles(self.samples)
                if encoded
                else _Files(self.samples, self.transform(size, train, preprocess)),
                batch_sampler=order,
                num_workers=self.workers,
                collate_fn=gpu_jpeg.collate_encoded if encoded else _collate,
                pin_memory=pin and not encoded,  # nvJPEG copies file bytes through its own pinned buffers
                persistent_workers=self.workers > 0,
            )
            self._loaders[key] = (loader, order)
        return self._loaders[key]

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
        positions = list(range(len(self.samples)))
        if train if shuffle is None else shuffle:
            random.Random(seed).shuffle(positions)
        if limit is not None:
            positions = positions[:limit]
        loader, order = self._loader(size, train, preprocess, device is not None and device.type == "cuda")
        order.batches = []
        for start in range(0, len(positions), batch_size):
            whole = range(start, min(start + batch_size, len(positions)))
            mine = whole[shard.part(len(whole))] if shard is not None else whole
            order.batches.append([(positions[i], _augmentation_seed(seed, i) if train else None) for i in mine])
        if train and self.decode_on is not None:
            yield from self._decoded_on_device(loader, size, device)
            return
        for images, labels, bad in loader:
            if device is not None:
                images, labels = images.to(device, non_blocking=True), labels.to(device)
            yield Batch(_to_unit(images, train), labels, len(bad), bad)

    def _decoded_on_device(
        self, loader: torch.utils.data.DataLoader[Any], size: int, device: torch.device | None
    ) -> Iterator[Batch]:

        assert self.decode_on is not None
        augment = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
        for encoded, unread in loader:
            images, labels, bad = gpu_jpeg.augmented(encoded, unread, augment, self.decode_on)
            target = device or self.decode_on
            yield Batch(_to_unit(images.to(target), True), labels.to(target), len(bad), bad)

    def pixel_mean(self, size: int) -> torch.Tensor:
        raise DatasetError(
            "a per-pixel mean needs fixed-size images; ImageFolder data uses `normalize=channel`", field="normalize"
        )

    def channel_stats(self, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return IMAGENET_MEAN_STD


def load_imagefolder(path: str | Path, *, workers: int = 0, decode_on: torch.device | None = None) -> Dataset:
    """``decode_on``: decode and augment the training images on this device (a GPU; see data.gpu_jpeg),
    whose decoder is tried first."""
    layout = read_layout(path)
    if decode_on is not None and decode_on.type != "cpu":  # the CPU's is torchvision's libjpeg-turbo
        gpu_jpeg.check_decoder(decode_on)
    return Dataset(
        spec=f"imagefolder:{layout.root}",
        name=layout.root.name,
        train=FolderSplit(layout.train, workers=workers, decode_on=decode_on),
        test=FolderSplit(layout.test, workers=workers),
        class_names=layout.classes,
        native_size=None,
        hflip=True,
        default_mean_std=IMAGENET_MEAN_STD,
    )
