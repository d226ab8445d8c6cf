"""The embedded default: scikit-learn's bundled handwritten digits, shaped like CIFAR.

1,797 real 8x8 grey images of the digits 0-9 (UCI "Optical Recognition of Handwritten Digits",
as shipped inside scikit-learn, so no download), upsampled to 32x32 and repeated to 3 channels.
The train/test split is fixed: stratified, 20% test, seed 0 -> 1,437 train / 360 test images.
Horizontal flips are off: a mirrored digit is not the same digit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from resnet_deploy._lazy import lazy_import
from resnet_deploy.data.base import Dataset
from resnet_deploy.data.tensor_split import TensorSplit

if TYPE_CHECKING:
    from sklearn import datasets as sklearn_datasets
    from sklearn import model_selection
else:
    sklearn_datasets = lazy_import("sklearn.datasets", extra="train")
    model_selection = lazy_import("sklearn.model_selection", extra="train")

SIZE = 32
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_dataset() -> Dataset:

    digits = sklearn_datasets.load_digits()
    grey = torch.from_numpy(digits.images).float().div(16.0)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    big = F.interpolate(grey, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    images = big.mul(255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()  # (1797, 3, 32, 32)
    labels = torch.from_numpy(digits.target).long()
    train_idx, test_idx = model_selection.train_test_split(
        torch.arange(len(labels)).numpy(), test_size=TEST_FRACTION, stratify=labels.numpy(), random_state=SPLIT_SEED
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return Dataset(
        spec="digits",
        name="digits",
        train=TensorSplit(images[train_idx], labels[train_idx], hflip=False),
        test=TensorSplit(images[test_idx], labels[test_idx], hflip=False),
        class_names=tuple(str(d) for d in range(10)),
        native_size=SIZE,
        hflip=False,
    )
