"""ImageFolder trees: class folders, train/val layout or held-out split, decode failures counted."""

from __future__ import annotations

import pytest
import torch

from resnet_deploy.data import open_dataset
from resnet_deploy.errors import DatasetError
from tests.factories import write_image_folder


def test_train_val_layout(tmp_path) -> None:
    write_image_folder(tmp_path / "train", per_class=4)
    write_image_folder(tmp_path / "val", per_class=2, fmt="jpg")
    data = open_dataset(f"imagefolder:{tmp_path}")
    assert data.class_names == ("cat", "dog", "fox")
    assert (len(data.train), len(data.test)) == (12, 6)
    assert data.native_size is None
    assert data.default_mean_std == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_eval_is_resize_then_centre_crop(tmp_path) -> None:
    write_image_folder(tmp_path / "train", per_class=2, size=64)
    write_image_folder(tmp_path / "val", per_class=1, size=64)
    data = open_dataset(f"imagefolder:{tmp_path}")
    batch = next(data.test.batches(8, size=28))
    assert batch.images.shape == (3, 3, 28, 28) and batch.images.dtype == torch.float32
    assert torch.equal(batch.labels, torch.tensor([0, 1, 2]))
    assert 0 <= float(batch.images.min()) and float(batch.images.max()) <= 1
    again = next(data.test.batches(8, size=28))
    assert torch.equal(batch.images, again.images)


def test_train_augmentation_is_seeded(tmp_path) -> None:
    write_image_folder(tmp_path, per_class=6)
    data = open_dataset(f"imagefolder:{tmp_path}")
    a = next(data.train.batches(8, size=24, train=True, seed=1))
    b = next(data.train.batches(8, size=24, train=True, seed=1))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = next(data.train.batches(8, size=24, train=True, seed=2))
    assert not torch.equal(a.images, c.images)
    # the same augmentation whatever number of worker processes decodes it
    with_workers = open_dataset(f"imagefolder:{tmp_path}", workers=2)
    d = next(with_workers.train.batches(8, size=24, train=True, seed=1))
    assert torch.equal(a.images, d.images)


def test_flat_layout_holds_out_a_test_split(tmp_path) -> None:
    write_image_folder(tmp_path, per_class=10)
    data = open_dataset(f"imagefolder:{tmp_path}")
    assert (len(data.train), len(data.test)) == (27, 3)  # 10% of each class


def test_undecodable_images_are_skipped_and_counted(tmp_path) -> None:
    write_image_folder(tmp_path / "train", per_class=3)
    write_image_folder(tmp_path / "val", per_class=2)
    (tmp_path / "val" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    data = open_dataset(f"imagefolder:{tmp_path}")
    batches = list(data.test.batches(4, size=16))
    assert sum(b.skipped for b in batches) == 1
    assert sum(len(b.labels) for b in batches) == 6


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("empty", "has no class sub-folders"),
        ("no_images", "holds no images"),
        ("single_class", r"has one class folder \(cat\); a classifier needs at least two"),
        ("train_only", "has train/ but no val/"),
        ("extra_val_class", "class folders not in the training split: wolf"),
    ],
)
def test_bad_trees(tmp_path, layout: str, message: str) -> None:
    if layout == "no_images":
        for name in ("cat", "dog"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "notes.txt").write_text("x")
    elif layout == "single_class":
        write_image_folder(tmp_path, classes=("cat",))
    elif layout == "train_only":
        write_image_folder(tmp_path / "train")
    elif layout == "extra_val_class":
        write_image_folder(tmp_path / "train")
        write_image_folder(tmp_path / "val", classes=("cat", "wolf"))
    with pytest.raises(DatasetError, match=message):
        open_dataset(f"imagefolder:{tmp_path}")
