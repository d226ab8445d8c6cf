"""What every dataset provides: labelled splits that yield [0, 1] float batches at a chosen size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from resnet_deploy.artifacts.preprocess import Preprocess

if TYPE_CHECKING:
    import torch

NAMED_FILES = 3  # files a message names before "+N more": enough to find the pattern, still one line


@dataclass
class Batch:
    images: torch.Tensor  # (N, C, S, S) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64
    skipped: int = 0  # images in this batch that failed to decode and were left out
    skipped_paths: tuple[str, ...] = ()  # their files, so the user can find and fix them


@dataclass(frozen=True)
class Shard:
    """One process's part of every global batch, in data-parallel training: part ``rank`` of ``count``
    near-equal contiguous parts. Cutting each global batch (not the epoch) keeps the global batches,
    and each image's augmentation, the same for any number of processes, so a run resumes on another."""

    rank: int
    count: int

    def part(self, size: int) -> slice:
        """This process's positions in a global batch of ``size`` images."""
        return slice(size * self.rank // self.count, size * (self.rank + 1) // self.count)


def name_files(paths: Iterable[str], limit: int = NAMED_FILES, total: int | None = None) -> str:
    """``a.jpg, b.jpg, c.jpg (+4 more)``: the first ``limit`` paths, for one-line messages; ``total``
    counts files beyond ``paths`` too (when only some were kept)."""
    paths = list(paths)
    shown = paths[:limit]
    more = max(len(paths), total or 0) - len(shown)
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


class Split(Protocol):
    """One split (train or test) of a dataset."""

    def __len__(self) -> int: ...

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
        """Batches at ``size`` x ``size``; ``train`` shuffles and augments, reproducibly from ``seed``;
        ``shuffle`` (default: ``train``) shuffles without augmenting, e.g. to sample calibration images.

        ``limit`` takes only the first ``limit`` images (after the seeded shuffle when ``train``).
        ``preprocess``: evaluation images of another size are resized by this policy, through the
        runner's own :func:`resnet_deploy.artifacts.preprocess.fit` (so scores match deployment).
        ``shard``: only this process's part of each batch (its random draws are those of the whole batch).
        """
        ...

    def pixel_mean(self, size: int) -> torch.Tensor:
        """The per-pixel mean image (C, size, size) over this split, un-augmented."""
        ...

    def channel_stats(self, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std over this split, un-augmented."""
        ...


@dataclass
class Dataset:
    spec: str  # canonical spec string, recorded in checkpoints ("digits", "cifar10:/data/cifar-10-batches-py")
    name: str  # short display name
    train: Split
    test: Split
    class_names: tuple[str, ...]
    native_size: int | None  # side of the stored images, None when they vary (ImageFolder)
    hflip: bool  # whether horizontal flips preserve the label (False for digits)
    default_mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # None: compute from train

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
