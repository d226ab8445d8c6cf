"""The embedded default dataset: scikit-learn's digits as a fixed 32x32 RGB train/test split."""

from __future__ import annotations

import pytest
import torch

from resnet_deploy.data import open_dataset
from resnet_deploy.errors import DatasetError


@pytest.fixture(scope="module")
def digits():
    return open_dataset("digits")


def test_split_sizes_and_classes(digits) -> None:
    assert (len(digits.train), len(digits.test)) == (1437, 360)
    assert digits.class_names == tuple("0123456789")
    assert digits.native_size == 32 and digits.hflip is False
    per_class = torch.bincount(digits.test.labels, minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37  # stratified 20%


def test_images_are_32x32_rgb_uint8_and_split_is_fixed(digits) -> None:
    images = digits.train.images
    assert images.shape == (1437, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert int(images.max()) == 255 and int(images.min()) == 0
    again = open_dataset("digits")
    assert torch.equal(again.train.labels, digits.train.labels)
    assert torch.equal(again.test.images, digits.test.images)


def test_eval_batches_are_unaugmented_and_in_order(digits) -> None:
    batches = list(digits.test.batches(100, size=32))
    assert [len(b.labels) for b in batches] == [100, 100, 100, 60]
    first = batches[0]
    assert torch.allclose(first.images, digits.test.images[:100].float() / 255)
    assert torch.equal(first.labels, digits.test.labels[:100])


def test_train_batches_are_reproducible_per_seed(digits) -> None:
    a = next(digits.train.batches(64, size=32, train=True, seed=3))
    b = next(digits.train.batches(64, size=32, train=True, seed=3))
    c = next(digits.train.batches(64, size=32, train=True, seed=4))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    assert a.images.shape == (64, 3, 32, 32) and 0 <= float(a.images.min()) and float(a.images.max()) <= 1


def test_resizes_to_other_input_sizes(digits) -> None:
    batch = next(digits.test.batches(4, size=64))
    assert batch.images.shape == (4, 3, 64, 64)
    assert digits.train.pixel_mean(64).shape == (3, 64, 64)


def test_channel_stats_match_direct_computation(digits) -> None:
    mean, std = digits.train.channel_stats(32)
    pixels = digits.train.images.double() / 255
    assert mean[0] == pytest.approx(float(pixels[:, 0].mean()), abs=1e-5)
    assert std[0] == pytest.approx(float(pixels[:, 0].std(unbiased=False)), abs=1e-5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mnist", "unknown dataset 'mnist'"),
        ("cifar10", "needs a path: `data=cifar10:PATH`"),
        ("digits:/x", "takes no path"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        open_dataset(spec)
