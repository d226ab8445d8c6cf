"""What DeepStream's nvinfer does to an image before TensorRT sees it, in numpy, and what that costs a
model trained with another preprocessing: top-1 on labelled images, paired against the exact one.

nvinfer scales the frame (or the object) to the network's size, then computes, per pixel value x in
0..255, ``y = net-scale-factor * (x - offsets[c])``: one scale for every channel, one offset per channel.
Our models take ``(x / 255 - mean[c]) / std[c]``:

- ``offsets[c] = 255 * mean[c]`` is exact;
- one scale cannot be ``1 / (255 * std[c])`` for three different stds. :func:`best_scale` takes the one
  that minimises the expected squared error of the network's input over pixels with the recorded
  mean and std: with ``k[c] = 1 / (255 std[c])`` the error of channel c is ``(s - k[c]) (x - 255 mean[c])``,
  of variance ``(s / k[c] - 1)^2``, so ``s = sum(std) / (255 * sum(std^2))``. The std it stands for,
  ``sum(std^2) / sum(std)``, lies between the mean std and the largest (Cauchy-Schwarz), and is the
  one std when they are equal (then nvinfer's normalisation is exact).

:func:`measure` runs the same test images through the model twice (exact, and as nvinfer prepares
them) and compares the two with validate's paired statistics (:mod:`resnet_deploy.evaluate.paired_stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnet_deploy.artifacts.preprocess import Preprocess, normalised
from resnet_deploy.data import Dataset
from resnet_deploy.errors import ValidationError
from resnet_deploy.evaluate.binomial import ErrorRate, error_rate
from resnet_deploy.evaluate.paired_stats import PairedChange, paired_change
from resnet_deploy.runtime.base import Backend

NVINFER_FIT = Preprocess("stretch", interpolation="bilinear")  # the whole image to the network size, no crop


@dataclass(frozen=True)
class Normalisation:
    """nvinfer's ``net-scale-factor`` and ``offsets``, for 0..255 pixels."""

    scale: float
    offsets: tuple[float, ...]

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """0..255 NCHW pixel values -> ``scale * (x - offsets[c])``, float32 (nvinfer's kernels compute in float)."""
        offsets = np.asarray(self.offsets, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray(np.float32(self.scale) * (pixels.astype(np.float32) - offsets), dtype=np.float32)

    def channel_error(self, std: Sequence[float]) -> tuple[float, ...]:
        """How far each channel's input is off: the scale used over the exact one, minus 1 (0.05: 5% too large)."""
        return tuple(self.scale * 255 * s - 1 for s in std)


RAW_PIXELS = Normalisation(1.0, (0.0, 0.0, 0.0))  # a model with its preprocessing inside takes the pixels as they are


def best_scale(std: Sequence[float]) -> float:
    """The one scale closest to ``1 / (255 std[c])`` in expected squared input error (see the module)."""
    stds = np.asarray(std, dtype=np.float64)
    return float(stds.sum() / (255 * np.square(stds).sum()))


def for_model(mean: Sequence[float], std: Sequence[float]) -> Normalisation:
    """nvinfer's closest normalisation to ``(x / 255 - mean) / std``."""
    return Normalisation(best_scale(std), tuple(255 * float(m) for m in mean))


def labelled(logits: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(class, labelled) per image as nvinfer's own classifier parser reads an output: the first class whose
    value is above ``threshold`` and above every earlier best, starting from 0, so an image whose highest
    output is not above both ``threshold`` and 0 gets no label."""
    best = logits.max(axis=1)
    return logits.argmax(axis=1), (best > threshold) & (best > 0)


@dataclass(frozen=True)
class PreprocessCost:
    """Top-1 of one model on the same images, exact and through nvinfer's preprocessing."""

    dataset: str
    images: int
    measured_with: str  # the file run
    backend: str
    exact: ErrorRate
    nvinfer: ErrorRate
    unlabelled: int  # images nvinfer's parser gives no label (their highest output not above the threshold)
    change: PairedChange  # nvinfer's against the exact, on the same images

    def lines(self) -> list[str]:
        return [
            f"measured on {self.images} test images of {self.dataset} with {self.measured_with} on {self.backend}:",
            f"  top-1 error, exact preprocessing:  {self.exact.describe()}",
            f"  top-1 error, nvinfer's:            {self.nvinfer.describe()}"
            + (f", {self.unlabelled} without a label" if self.unlabelled else ""),
            f"  change: {self.change.describe()}, McNemar p = {self.change.p_value:.3g}",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "images": self.images,
            "measured_with": self.measured_with,
            "backend": self.backend,
            "exact_top1_error": self.exact.to_dict(),
            "nvinfer_top1_error": self.nvinfer.to_dict(),
            "unlabelled": self.unlabelled,
            "change": self.change.to_dict(),
        }


def measure(
    backend: Backend,
    dataset: Dataset,
    normalisation: Normalisation,
    *,
    threshold: float = 0.0,
    limit: int | None = None,
    batch_size: int = 64,
) -> PreprocessCost:
    """Run ``dataset``'s test split through ``backend`` twice: fitted and normalised exactly as its metadata
    says (what validate scores), and stretched whole to its input size, normalised with ``normalisation``
    and labelled as nvinfer's parser does. Pillow's bilinear resize stands in for nvinfer's scaler."""
    metadata = backend.metadata
    size, policy = metadata.config.input_size, metadata.eval_preprocess
    if dataset.num_classes != metadata.config.num_classes:
        raise ValidationError(
            f"{dataset.spec} has {dataset.num_classes} classes but the model has {metadata.config.num_classes}; "
            "pass the right `data`",
            field="data",
        )
    exact_hits, nvinfer_hits, unlabelled = [], [], 0
    split = dataset.test
    pairs = zip(
        split.batches(batch_size, size=size, limit=limit, preprocess=policy),
        split.batches(batch_size, size=size, limit=limit, preprocess=NVINFER_FIT),
        strict=True,
    )
    for exact_batch, nvinfer_batch in pairs:
        labels = np.asarray(exact_batch.labels)
        if not len(labels):
            continue
        if not np.array_equal(labels, np.asarray(nvinfer_batch.labels)):  # the same images, or no pairing
            raise ValidationError(f"{dataset.spec} gave its test images in another order the second time")
        images = np.asarray(exact_batch.images)
        exact_logits = backend.infer(normalised(images, metadata.mean, metadata.std))
        exact_hits.append(exact_logits.argmax(axis=1) == labels)
        pixels = np.rint(np.asarray(nvinfer_batch.images) * 255)  # the 0..255 values the [0, 1] images came from
        classes, has_label = labelled(backend.infer(normalisation.apply(pixels)), threshold)
        nvinfer_hits.append((classes == labels) & has_label)
        unlabelled += int(np.count_nonzero(~has_label))
    if not exact_hits:
        raise ValidationError(f"{dataset.spec} has no test images to measure nvinfer's preprocessing on")
    exact, approx = np.concatenate(exact_hits), np.concatenate(nvinfer_hits)
    count = len(exact)
    return PreprocessCost(
        dataset=dataset.spec,
        images=count,
        measured_with=backend.path.name,
        backend=backend.kind,
        exact=error_rate(count - int(np.count_nonzero(exact)), count),
        nvinfer=error_rate(count - int(np.count_nonzero(approx)), count),
        unlabelled=unlabelled,
        change=paired_change(exact, approx),
    )
