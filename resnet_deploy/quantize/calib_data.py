"""Calibration images: N images of a dataset's training split, preprocessed as the model expects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import DatasetError
from resnet_deploy.runtime.images import normalise

if TYPE_CHECKING:  # the datasets pull in torch: imported when calibration images are first loaded
    from resnet_deploy import data
    from resnet_deploy.data import base as data_base
else:
    data, data_base = lazy_module("resnet_deploy.data"), lazy_module("resnet_deploy.data.base")

DEFAULT_SPEC = "digits"


@dataclass
class CalibrationSet:
    spec: str  # dataset spec the images came from
    batches: list[np.ndarray]  # float32 NCHW, normalised with the model's mean/std
    sha256: str  # of the preprocessed pixels: the data part of the cache key
    fallback: bool  # True when the model named no dataset and the embedded default was used

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.batches)


def load_calibration_set(
    metadata: ArtifactMetadata, spec: str | None, count: int, *, batch_size: int = 32, seed: int = 0
) -> CalibrationSet:
    """``count`` images of the training split of ``spec`` (default: the dataset the model records).

    Images are a seeded random subset (un-augmented), resized to the model's input size and
    normalised with its mean/std, exactly as the deployed model will see them.
    """
    if count < 1:
        raise DatasetError(f"`calibration.count` must be at least 1, got {count}", field="calibration.count")
    fallback = spec is None and not metadata.dataset
    spec = spec or metadata.dataset or DEFAULT_SPEC
    dataset = data.open_dataset(spec)
    size = metadata.config.input_size
    if not fallback and dataset.native_size is not None and dataset.native_size != size:
        # Resizing 32x32 CIFAR to a 224 model's input calibrates on images unlike any it will see.
        raise DatasetError(
            f"{spec} images are {dataset.native_size}x{dataset.native_size} but the model takes {size}x{size}; "
            "calibrate on images of the deployment resolution (`calibration.data=imagefolder:DIR`)",
            field="calibration.data",
        )
    available = len(dataset.train)
    if available == 0:
        raise DatasetError(f"{spec} has no training images to calibrate on")
    if available < count:
        raise DatasetError(
            f"{spec} has only {available} training images but `calibration.count` is {count}; "
            f"pass `calibration.count={available}` or add images",
            field="calibration.count",
        )
    policy = metadata.eval_preprocess  # images of another size are resized as the runner will
    digest = hashlib.sha256(f"{spec}|{size}|{count}|{seed}|{policy.to_json()}".encode())
    batches = []
    undecodable: list[str] = []
    for batch in dataset.train.batches(batch_size, size=size, shuffle=True, seed=seed, limit=count, preprocess=policy):
        undecodable.extend(batch.skipped_paths)
        if not len(batch.labels):  # every image of this batch failed to decode
            continue
        if batch.images.shape[1] != metadata.config.in_chans:
            raise DatasetError(
                f"{spec} has {batch.images.shape[1]}-channel images but the model takes {metadata.config.in_chans}"
            )
        array = normalise(np.asarray(batch.images), metadata)
        digest.update(array.tobytes())
        batches.append(array)
    got = sum(len(b) for b in batches)
    if got < count:  # images that failed to decode were skipped
        # no "--calib-images {got}" advice: the seeded sample of fewer images can hold the same files
        unreadable = f" ({data_base.name_files(sorted(undecodable))} did not)" if undecodable else ""
        raise DatasetError(
            f"only {got} of the {count} calibration images from {spec} decoded{unreadable}; "
            "remove or fix the unreadable files"
        )
    return CalibrationSet(spec=spec, batches=batches, sha256=digest.hexdigest(), fallback=fallback)


@dataclass
class HeldOutSet:
    """Labelled images to judge a quantized model on: the test split, never a calibration image."""

    spec: str
    images: np.ndarray  # float32 NCHW, normalised with the model's mean/std
    labels: np.ndarray  # int64
    undecodable: list[str] = field(default_factory=list)  # sampled test images that did not decode

    @property
    def count(self) -> int:
        return len(self.labels)

    def skipped_note(self) -> str | None:
        """One line naming the sampled images that were not scored; None when every one decoded."""
        if not self.undecodable:
            return None
        named = data_base.name_files(sorted(self.undecodable))
        count = len(self.undecodable)
        return f"{count} held-out test images of {self.spec} did not decode and were not scored: {named}"


def load_held_out_set(
    metadata: ArtifactMetadata, spec: str | None, count: int, *, seed: int = 0, field: str = "budget.images"
) -> HeldOutSet:
    """A seeded sample of ``count`` images of the test split of ``spec`` (default: the model's dataset).

    Calibration reads the training split, so the two never share an image; and the training split
    would flatter the model (it has fit those images), so the test split is the honest judge.
    """
    if count < 1:
        raise DatasetError(f"`{field}` must be at least 1, got {count}", field=field)
    spec = spec or metadata.dataset or DEFAULT_SPEC
    dataset = data.open_dataset(spec)
    available = len(dataset.test)
    if available == 0:
        raise DatasetError(
            f"{spec} has no test images to measure INT8 accuracy on; pass `calibration.data` with a test split",
            field="calibration.data",
        )
    if available < count:
        raise DatasetError(
            f"{spec} has {available} test images, fewer than the {count} held-out images asked for; "
            f"pass `{field}` {available} or fewer",
            field=field,
        )
    images, labels = [], []
    undecodable: list[str] = []
    batches = dataset.test.batches(
        64, size=metadata.config.input_size, shuffle=True, seed=seed, limit=count, preprocess=metadata.eval_preprocess
    )
    for batch in batches:
        undecodable.extend(batch.skipped_paths)
        if len(batch.labels):
            images.append(normalise(np.asarray(batch.images), metadata))
            labels.append(np.asarray(batch.labels, dtype=np.int64))
    if not images:
        raise DatasetError(f"none of the {count} held-out test images of {spec} decoded")
    return HeldOutSet(spec, np.concatenate(images), np.concatenate(labels), undecodable)
