"""Which files of an ImageFolder tree are training and which are test images (no torch).

``PATH`` holds ``train/`` and ``val/`` (or ``test/``) class folders, as ImageNet is usually laid
out; or class folders directly, then a fixed, seeded, stratified 10% of each class is held out for
testing. Both readers of the tree (:mod:`resnet_deploy.data.imagefolder` for training, with torch;
:mod:`resnet_deploy.data.plain_folder` for scoring and calibration, with numpy alone) split it here,
so they see the same images.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from resnet_deploy.data.file_index import scan_folder
from resnet_deploy.errors import DatasetError

IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HOLDOUT_FRACTION = 0.1

Samples = list[tuple[str, int]]  # (file, class index)


@dataclass(frozen=True)
class FolderLayout:
    root: Path
    classes: tuple[str, ...]
    train: Samples
    test: Samples


def _holdout(samples: Samples, num_classes: int) -> tuple[Samples, Samples]:
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


def read_layout(path: str | Path) -> FolderLayout:
    """The tree's classes and its train and test files (``train/`` + ``val/``, or a seeded holdout)."""
    root = resolve_root(path)
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        if test_dir is None:
            raise DatasetError(f"{root} has train/ but no val/ or test/ folder; add one (same class folders)")
        classes, train = scan_folder(root / "train")
        _, test = scan_folder(test_dir, classes)
    else:
        classes, samples = scan_folder(root)
        train, test = _holdout(samples, len(classes))
        if not test:
            raise DatasetError(f"{root} has too few images to hold out a test split; add val/ and train/ folders")
    return FolderLayout(root, tuple(classes), train, test)
