"""CIFAR-10/100 python-pickle directories: read back what the official layout holds."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from resnet_deploy.data import open_dataset
from resnet_deploy.data.cifar import write_cifar
from resnet_deploy.errors import DatasetError
from tests.factories import class_pattern_images, write_tiny_cifar


def test_cifar10_round_trip(tmp_path) -> None:
    labels = np.arange(12) % 10
    images = class_pattern_images(labels)
    directory = write_cifar(
        "cifar10", tmp_path, (images, labels), (images[:4], labels[:4]), [f"c{i}" for i in range(10)]
    )
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    )
    data = open_dataset(f"cifar10:{directory}")
    assert data.spec == f"cifar10:{directory.resolve()}"
    assert data.class_names == tuple(f"c{i}" for i in range(10)) and data.hflip
    assert (len(data.train), len(data.test)) == (12, 4)
    # HWC on disk (as 3072 = R plane, G plane, B plane) -> CHW tensors, pixel for pixel
    assert torch.equal(data.train.images, torch.from_numpy(images.transpose(0, 3, 1, 2)))
    assert torch.equal(data.train.labels, torch.from_numpy(labels))


def test_parent_directory_is_accepted(tmp_path) -> None:
    write_tiny_cifar(tmp_path, train=10, test=5)
    data = open_dataset(f"cifar10:{tmp_path}")
    assert (len(data.train), len(data.test)) == (10, 5)


def test_cifar100_uses_fine_labels(tmp_path) -> None:
    directory = write_tiny_cifar(tmp_path, kind="cifar100", train=30, test=10)
    assert sorted(p.name for p in directory.iterdir()) == ["meta", "test", "train"]
    data = open_dataset(f"cifar100:{directory}")
    assert data.num_classes == 100 and len(data.train) == 30


def test_real_release_keys_read_as_python2_bytes(tmp_path) -> None:
    directory = write_tiny_cifar(tmp_path, train=10, test=5)
    with open(directory / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    assert b"data" in raw and b"labels" in raw  # the releases' keys are bytes; the reader takes both


def test_missing_file_is_named(tmp_path) -> None:
    directory = write_tiny_cifar(tmp_path, train=10, test=5)
    (directory / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"missing data_batch_3"):
        open_dataset(f"cifar10:{directory}")


def test_missing_directory(tmp_path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(f"cifar10:{tmp_path / 'nope'}")


def test_cifar100_files_given_as_cifar10(tmp_path) -> None:
    directory = write_tiny_cifar(tmp_path, kind="cifar100", train=10, test=5)
    with pytest.raises(DatasetError, match="missing data_batch_1"):
        open_dataset(f"cifar10:{directory}")


def test_truncated_batch(tmp_path) -> None:
    directory = write_tiny_cifar(tmp_path, train=10, test=5)
    blob = (directory / "test_batch").read_bytes()
    (directory / "test_batch").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="test_batch is truncated"):
        open_dataset(f"cifar10:{directory}")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch) -> None:
    directory = write_tiny_cifar(tmp_path, train=10, test=5)
    monkeypatch.chdir(tmp_path)
    with open(directory / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"x"] * 10, b"evil": _Exploit()}, fh)
    with pytest.raises(DatasetError, match=r"refusing to load (posix|os)\.system"):
        open_dataset(f"cifar10:{directory}")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "'labels' is not a list"),
        ("test_batch", {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "expected uint8"),
        ("test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "labels outside 0..9"),
        ("batches.meta", {b"label_names": 10}, "'label_names' is not a list of names"),
    ],
)
def test_malformed_values_inside_a_batch_are_named(tmp_path, file, content, message) -> None:
    directory = write_tiny_cifar(tmp_path, train=10, test=5)
    with open(directory / file, "wb") as fh:
        pickle.dump(content, fh)
    with pytest.raises(DatasetError, match=message):
        open_dataset(f"cifar10:{directory}")
