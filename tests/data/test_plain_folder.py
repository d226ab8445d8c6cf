"""ImageFolder data read with numpy alone (an install without torch): the same images, the same
values as the torch reader's evaluation batches; training refused with the extra to install."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_deploy.artifacts.preprocess import Preprocess
from resnet_deploy.data import spec
from resnet_deploy.data.imagefolder import load_imagefolder
from resnet_deploy.data.plain_folder import PlainFolderSplit, load_plain_folder
from resnet_deploy.errors import MissingDependencyError


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 8 images of assorted sizes and modes, and one file that does not decode."""
    root = tmp_path_factory.mktemp("plain")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog", "owl")):
        (root / name).mkdir()
        for i in range(8):
            h, w = 20 + 7 * i, 48 - 3 * i + c
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def _batches(split, **kwargs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels, bad = [], [], []
    for batch in split.batches(4, size=32, **kwargs):
        images.append(np.asarray(batch.images))
        labels.append(np.asarray(batch.labels))
        bad.extend(batch.skipped_paths)
    return np.concatenate(images), np.concatenate(labels), bad


@pytest.mark.parametrize("policy", [Preprocess("crop"), Preprocess("stretch")], ids=["crop", "stretch"])
def test_plain_batches_equal_the_torch_readers_value_for_value(folder: Path, policy: Preprocess) -> None:
    plain, torch_reader = load_plain_folder(folder), load_imagefolder(folder)
    assert plain.class_names == torch_reader.class_names == ("cat", "dog", "owl")
    assert plain.spec == torch_reader.spec
    for split in ("train", "test"):
        mine = getattr(plain, split)
        theirs = getattr(torch_reader, split)
        assert mine.samples == theirs.samples
        # the calibration sampler's draw: shuffled, limited, un-augmented
        for kwargs in ({}, {"shuffle": True, "seed": 3, "limit": 9}):
            a_images, a_labels, a_bad = _batches(mine, preprocess=policy, **kwargs)
            b_images, b_labels, b_bad = _batches(theirs, preprocess=policy, **kwargs)
            assert a_images.dtype == np.float32 and a_images.shape[1:] == (3, 32, 32)
            np.testing.assert_array_equal(a_images, b_images)
            np.testing.assert_array_equal(a_labels, b_labels)
            assert a_bad == b_bad


def test_undecodable_files_are_named_not_scored(folder: Path) -> None:
    split = PlainFolderSplit([(str(folder / "dog" / "broken.jpg"), 1), (str(folder / "cat" / "0.png"), 0)])
    (batch,) = split.batches(8, size=16)
    assert batch.skipped == 1 and batch.skipped_paths == (str(folder / "dog" / "broken.jpg"),)
    assert np.asarray(batch.labels).tolist() == [0]
    (empty,) = PlainFolderSplit([(str(folder / "dog" / "broken.jpg"), 1)]).batches(8, size=16)
    assert np.asarray(empty.images).shape == (0, 3, 16, 16) and empty.skipped == 1


def test_training_batches_say_which_extra_to_install(folder: Path) -> None:
    dataset = load_plain_folder(folder)
    with pytest.raises(MissingDependencyError, match=r'pip install "resnet-deploy\[train\]"'):
        next(dataset.train.batches(4, size=32, train=True))
    with pytest.raises(MissingDependencyError, match=r"resnet-deploy\[train\]"):
        dataset.train.pixel_mean(32)


def test_open_dataset_reads_image_folders_without_torch(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not isinstance(spec.open_dataset(f"imagefolder:{folder}").test, PlainFolderSplit)
    monkeypatch.setattr(spec, "is_available", lambda name: name != "torch")
    dataset = spec.open_dataset(f"imagefolder:{folder}")
    assert isinstance(dataset.test, PlainFolderSplit) and dataset.num_classes == 3
