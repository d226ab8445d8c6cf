"""Calibration images: N images of a dataset's training split (or of an unlabelled folder),
preprocessed as the model expects."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import DatasetError
from resnet_deploy.messages import Messages
from resnet_deploy.runtime.images import normalise

if TYPE_CHECKING:  # the labelled datasets pull in torch: imported when calibration images are first loaded
    from resnet_deploy import data
    from resnet_deploy.data import base as data_base
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.data import unlabelled_folder
else:
    data, data_base = lazy_module("resnet_deploy.data"), lazy_module("resnet_deploy.data.base")
    data_spec = lazy_module("resnet_deploy.data.spec")
    unlabelled_folder = lazy_module("resnet_deploy.data.unlabelled_folder")

DEFAULT_SPEC = "digits"


@dataclass
class CalibrationSet:
    spec: str  # dataset spec the images came from
    batches: list[np.ndarray]  # float32 NCHW, normalised with the model's mean/std
    sha256: str  # of the preprocessed pixels: the data part of the cache key
    fallback: bool  # True when the model named no dataset and the embedded default was used
    asked: int = 0  # images asked for; more than the source has is calibrated on all it has
    available: int = 0  # images the source has: training images, or an unlabelled folder's image files
    read_count: unlabelled_folder.ReadCount | None = None  # an unlabelled folder's images read and skipped

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.batches)

    @property
    def skipped(self) -> list[str]:
        """Files that did not decode and were left out (an unlabelled folder's only)."""
        return self.read_count.skipped if self.read_count else []

    def clamp_note(self) -> str | None:
        """``asked for 512 calibration images; folder:/frames has 37; calibrating on 37``; None when the
        source had the images asked for."""
        if self.asked <= self.available:
            return None
        has = f"{self.available}" if self.read_count else f"{self.available} training images"
        return f"asked for {self.asked} calibration images; {self.spec} has {has}; calibrating on {self.count}"

    def read_note(self) -> str | None:
        """``folder:/frames: 37 images read, 2 skipped (a.jpg, b.png did not decode)``, for an unlabelled folder."""
        return f"{self.spec}: {self.read_count.describe()}" if self.read_count else None

    def report(self, out: Messages) -> None:
        """Say what was asked for and what was read; a warning when files were skipped."""
        if note := self.clamp_note():
            out.say(note)
        if note := self.read_note():
            (out.warn if self.skipped else out.say)(note)


def load_calibration_set(
    metadata: ArtifactMetadata, spec: str | None, count: int, *, batch_size: int = 32, seed: int = 0
) -> CalibrationSet:
    """``count`` images of the training split of ``spec`` (default: the dataset the model records), or of
    the unlabelled ``folder:PATH``; all of them when it has fewer (:meth:`CalibrationSet.clamp_note`).

    Images are a seeded random subset (un-augmented), resized to the model's input size and
    normalised with its mean/std, exactly as the deployed model will see them. In a folder, a file
    that does not decode is skipped and the next image sampled in its place.
    """
    if count < 1:
        raise DatasetError(f"`calibration.count` must be at least 1, got {count}", field="calibration.count")
    fallback = spec is None and not metadata.dataset
    spec = spec or metadata.dataset or DEFAULT_SPEC
    if data_spec.is_unlabelled(spec):
        return _from_folder(metadata, spec, count, batch_size, seed)
    return _from_training_split(metadata, spec, count, batch_size, seed, fallback)


def _from_training_split(
    metadata: ArtifactMetadata, spec: str, asked: int, batch_size: int, seed: int, fallback: bool
) -> CalibrationSet:
    dataset = data.open_dataset(spec)
    size = metadata.config.input_size
    trained_on_it = spec == metadata.dataset  # the model saw these images at its size: resized as here
    if not fallback and not trained_on_it and dataset.native_size is not None and dataset.native_size != size:
        # Resizing 32x32 CIFAR to a 224 model's input calibrates on images unlike any it will see.
        raise DatasetError(
            f"{spec} images are {dataset.native_size}x{dataset.native_size} but the model takes {size}x{size}; "
            "calibrate on images of the deployment resolution (`calibration.data=imagefolder:DIR`)",
            field="calibration.data",
        )
    available = len(dataset.train)
    if available == 0:
        raise DatasetError(f"{spec} has no training images to calibrate on")
    count = min(asked, available)
    undecodable: list[str] = []
    policy = metadata.eval_preprocess  # images of another size are resized as the runner will
    sampled = dataset.train.batches(batch_size, size=size, shuffle=True, seed=seed, limit=count, preprocess=policy)
    batches, sha256 = _normalised(_decoded(sampled, undecodable), metadata, spec, _key(spec, metadata, count, seed))
    got = sum(len(b) for b in batches)
    if got < count:  # images that failed to decode were skipped
        # no "--calib-images {got}" advice: the seeded sample of fewer images can hold the same files
        unreadable = f" ({data_base.name_files(sorted(undecodable))} did not)" if undecodable else ""
        raise DatasetError(
            f"only {got} of the {count} calibration images from {spec} decoded{unreadable}; "
            "remove or fix the unreadable files"
        )
    return CalibrationSet(spec, batches, sha256, fallback, asked=asked, available=available)


def _from_folder(metadata: ArtifactMetadata, spec: str, asked: int, batch_size: int, seed: int) -> CalibrationSet:
    folder = data_spec.open_unlabelled(spec)
    count = min(asked, len(folder))
    tally = unlabelled_folder.ReadCount()
    read = unlabelled_folder.read_images(
        folder.sample_order(seed),
        count,
        size=metadata.config.input_size,
        policy=metadata.eval_preprocess,
        tally=tally,
        batch_size=batch_size,
    )
    batches, sha256 = _normalised(read, metadata, folder.spec, _key(folder.spec, metadata, count, seed))
    if not batches:
        raise DatasetError(
            f"none of the {len(folder)} image files of {folder.spec} decoded "
            f"({data_base.name_files(tally.skipped)}); check that they are images"
        )
    return CalibrationSet(folder.spec, batches, sha256, False, asked=asked, available=len(folder), read_count=tally)


def _key(spec: str, metadata: ArtifactMetadata, count: int, seed: int) -> str:
    """What chose and shaped the images: the start of the calibration data's digest."""
    return f"{spec}|{metadata.config.input_size}|{count}|{seed}|{metadata.eval_preprocess.to_json()}"


def _decoded(batches: Iterator[data_base.Batch], undecodable: list[str]) -> Iterator[np.ndarray]:
    """The [0, 1] images of each batch that has any; the files that did not decode go to ``undecodable``."""
    for batch in batches:
        undecodable.extend(batch.skipped_paths)
        if len(batch.labels):  # else every image of this batch failed to decode
            yield np.asarray(batch.images)


def _normalised(
    images: Iterator[np.ndarray], metadata: ArtifactMetadata, spec: str, key: str
) -> tuple[list[np.ndarray], str]:
    """Each [0, 1] batch normalised as the model expects, and the sha256 of ``key`` and them all."""
    digest = hashlib.sha256(key.encode())
    batches = []
    for batch in images:
        if batch.shape[1] != metadata.config.in_chans:
            raise DatasetError(
                f"{spec} has {batch.shape[1]}-channel images but the model takes {metadata.config.in_chans}"
            )
        array = normalise(batch, metadata)
        digest.update(array.tobytes())
        batches.append(array)
    return batches, digest.hexdigest()


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
    if spec is None and not metadata.dataset:  # judged on labels it never saw, any verdict would be noise
        raise DatasetError(
            f"{metadata.config.name} records no dataset (random or outside weights): an accuracy budget needs "
            "labelled test images of its own classes; pass them as `calibration.data`",
            field="calibration.data",
        )
    spec = spec or metadata.dataset or DEFAULT_SPEC
    if data_spec.is_unlabelled(spec):
        raise data_spec.no_labels(spec, "measure INT8 accuracy on")
    dataset = data.open_dataset(spec)
    if dataset.num_classes != metadata.config.num_classes:  # the check validate makes
        raise DatasetError(
            f"{spec} has {dataset.num_classes} classes but the model has {metadata.config.num_classes}; its "
            "accuracy cannot be measured there: pass labelled images of its classes as `calibration.data`",
            field="calibration.data",
        )
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
