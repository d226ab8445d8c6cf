"""ImageFolder trees (one sub-folder per class, JPEG/PNG), with the standard ImageNet preprocessing.

``imagefolder:PATH`` where PATH holds ``train/`` and ``val/`` (or ``test/``) class folders, as
ImageNet is usually laid out; or class folders directly, then a fixed, seeded, stratified 10% of
each class is held out for testing. Eval: the model's preprocessing policy through
:func:`resnet_deploy.preprocessing.fit` (default: shorter side to 256/224 of the input, centre crop).
Train: random-resized crop and horizontal flip. Images that fail to decode are skipped, counted
and named (``Batch.skipped_paths``); the caller fails the run when too many do.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from resnet_deploy.artifacts.preprocess_spec import Preprocess
from resnet_deploy.data.base import Batch, Dataset
from resnet_deploy.errors import DatasetError
from resnet_deploy.preprocessing import fit

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HOLDOUT_FRACTION = 0.1


def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
        if not classes:
            raise DatasetError(f"{root} has no class sub-folders; an ImageFolder tree is PATH/<class>/<image>.jpg")
        if len(classes) < 2:
            raise DatasetError(
                f"{root} has one class folder ({classes[0]}); a classifier needs at least two, one sub-folder per class"
            )
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DatasetError(
                f"{root} has class folders not in the training split: {', '.join(extra[:4])}; "
                "both splits must hold the same classes"
            )
    index = {name: i for i, name in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    for name in found:
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        samples.extend((str(p), index[name]) for p in files)
    if not samples:
        raise DatasetError(f"{root} holds no images ({', '.join(EXTENSIONS)}) in its class folders")
    return classes, samples


def _decode(path: str) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _eval_transform(image: Any, *, size: int, policy: Preprocess) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1]: the same division the runner does in numpy (exact in float32)."""
    return torch.from_numpy(fit(image, size, policy)).permute(2, 0, 1).to(torch.float32).div(255.0)


class _Files(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Decoded, transformed samples; a random transform is seeded per (seed, position), so the
    augmentation of an epoch does not depend on how many DataLoader workers decode it."""

    def __init__(self, samples: list[tuple[str, int]], transform: Any, seed: int | None) -> None:
        self.samples, self.transform, self.seed = samples, transform, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | str:
        """The transformed image and its label; the path alone when the file does not decode."""
        path, label = self.samples[index]
        image = _decode(path)
        if image is None:
            return path
        if self.seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):  # v2 transforms draw from the global generator
            torch.manual_seed((self.seed * 1_000_003 + index) % (2**63))
            return self.transform(image), label


def _collate(items: list[tuple[torch.Tensor, int] | str]) -> Batch:
    good = [item for item in items if not isinstance(item, str)]
    bad = tuple(item for item in items if isinstance(item, str))
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.int64), len(bad), bad)
    return Batch(torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), len(bad), bad)


class FolderSplit:
    """Image files on disk, decoded by DataLoader workers."""

    def __init__(self, samples: list[tuple[str, int]], *, workers: int = 0) -> None:
        self.samples = samples
        self.workers = workers

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def transform(size: int, train: bool, preprocess: Preprocess | None = None) -> Any:
        """Train: random-resized crop and flip. Eval: :func:`resnet_deploy.preprocessing.fit`, the
        runner's own preprocessing, so validate and calibration score what deployment feeds."""
        from torchvision.transforms import v2

        if train:
            steps = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
            return v2.Compose([v2.PILToTensor(), *steps, v2.ToDtype(torch.float32, scale=True)])
        return functools.partial(_eval_transform, size=size, policy=preprocess or Preprocess("crop"))

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
    ) -> Iterator[Batch]:
        samples = list(self.samples)
        if train if shuffle is None else shuffle:
            random.Random(seed).shuffle(samples)
        if limit is not None:
            samples = samples[:limit]
        loader = torch.utils.data.DataLoader(
            _Files(samples, self.transform(size, train, preprocess), seed if train else None),
            batch_size=batch_size,
            shuffle=False,  # order fixed above, so an epoch is a pure function of the seed
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=device is not None and device.type == "cuda",
            persistent_workers=False,
        )
        for batch in loader:
            if device is not None:
                batch = dataclasses.replace(
                    batch, images=batch.images.to(device, non_blocking=True), labels=batch.labels.to(device)
                )
            yield batch

    def pixel_mean(self, size: int) -> torch.Tensor:
        raise DatasetError("a per-pixel mean needs fixed-size images; ImageFolder data uses --normalize channel")

    def channel_stats(self, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return IMAGENET_MEAN_STD


def _holdout(samples: list[tuple[str, int]], num_classes: int) -> tuple[list[Any], list[Any]]:
    rng = random.Random(0)
    train, test = [], []
    for label in range(num_classes):
        mine = [s for s in samples if s[1] == label]
        rng.shuffle(mine)
        cut = max(1, round(len(mine) * HOLDOUT_FRACTION)) if len(mine) > 1 else 0
        test.extend(mine[:cut])
        train.extend(mine[cut:])
    return sorted(train), sorted(test)


def resolve_root(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"ImageFolder directory {root} does not exist or is not a directory")
    return root.resolve()


def load_imagefolder(path: str | Path, *, workers: int = 0) -> Dataset:
    root = resolve_root(path)
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        if test_dir is None:
            raise DatasetError(f"{root} has train/ but no val/ or test/ folder; add one (same class folders)")
        classes, train = _scan(root / "train")
        _, test = _scan(test_dir, classes)
    else:
        classes, samples = _scan(root)
        train, test = _holdout(samples, len(classes))
        if not test:
            raise DatasetError(f"{root} has too few images to hold out a test split; add val/ and train/ folders")
    return Dataset(
        spec=f"imagefolder:{root}",
        name=root.name,
        train=FolderSplit(train, workers=workers),
        test=FolderSplit(test, workers=workers),
        class_names=tuple(classes),
        native_size=None,
        hflip=True,
        default_mean_std=IMAGENET_MEAN_STD,
    )
