"""Raw images -> the normalised NCHW float32 batch a model expects, from the model's own metadata.

Accepts PIL images and uint8 HWC arrays (RGB; grayscale is widened to 3 channels). Resizing and
cropping follow the model's recorded policy through :func:`resnet_deploy.artifacts.preprocess.fit`, the one
implementation validate and calibration use too. Then [0, 1], minus the
mean, over the std (both 0/1 for models that subtract their pixel mean inside the graph).
numpy always; Pillow only when an image has to be resized or is a PIL image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.artifacts.preprocess import fit
from resnet_deploy.errors import RunnerError

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy_import("PIL.Image")


def _to_pil(image: Any, index: int) -> Any:

    if isinstance(image, Image.Image):
        _check_size(*image.size, index)
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise RunnerError(
            f"image {index} is a {array.dtype} array; classify takes uint8 HWC arrays or PIL images "
            "(for float NCHW batches use infer)"
        )
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise RunnerError(f"image {index} has shape {array.shape}; expected H x W x 3 (RGB, uint8)")
    _check_size(array.shape[1], array.shape[0], index)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(array[:, :, :3])


def _check_size(width: int, height: int, index: int) -> None:
    if width < 1 or height < 1:
        raise RunnerError(
            f"image {index} is {width}x{height} pixels: there is nothing to classify (an empty crop or a failed "
            "decode?); pass images at least 1x1"
        )


def preprocess(images: Sequence[Any] | Any, metadata: ArtifactMetadata) -> np.ndarray:
    """A list of PIL images / uint8 HWC arrays (or one of them) -> (N, C, S, S) float32."""
    cfg = metadata.config
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)  # a stacked uint8 NHWC batch
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise RunnerError("no images to classify")
    if cfg.in_chans != 3:
        raise RunnerError(f"the model takes {cfg.in_chans}-channel input; classify handles RGB models only")
    size = cfg.input_size
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        array = np.asarray(image) if isinstance(image, np.ndarray) else None
        if array is not None and array.dtype == np.uint8 and array.shape == (size, size, 3):
            out[i] = array  # already the model's size: no Pillow needed
        else:
            out[i] = fit(_to_pil(image, i), size, metadata.eval_preprocess)
    return normalise(out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, metadata)


def normalise(images: np.ndarray, metadata: ArtifactMetadata) -> np.ndarray:
    """[0, 1] NCHW images -> what the model takes: minus its mean, over its std, float32 contiguous."""
    mean = np.asarray(metadata.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(metadata.std, dtype=np.float32).reshape(1, -1, 1, 1)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):  # NaN scores otherwise
        raise RunnerError(
            f"the model's metadata has mean {list(metadata.mean)} and std {list(metadata.std)}: each must be finite "
            "and each std above 0; re-export it with the mean and std its training data had"
        )
    return np.ascontiguousarray((images - mean) / std, dtype=np.float32)
