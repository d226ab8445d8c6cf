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
from resnet_deploy.artifacts.frame_input import CHANNEL_ORDERS, FrameInput
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.artifacts.preprocess import fit, normalised
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


def preprocess(images: Sequence[Any] | Any, metadata: ArtifactMetadata, channel_order: str = "RGB") -> np.ndarray:
    """A list of PIL images / uint8 HWC arrays in ``channel_order`` (or one of them) -> what the model takes:
    (N, C, S, S) float32, or, for a model with its preprocessing inside, (N, H, W, 3) uint8 frames."""
    if channel_order not in CHANNEL_ORDERS:
        raise RunnerError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {channel_order!r}")
    cfg = metadata.config
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)  # a stacked uint8 NHWC batch
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise RunnerError("no images to classify")
    if cfg.in_chans != 3:
        raise RunnerError(f"the model takes {cfg.in_chans}-channel input; classify handles RGB models only")
    if metadata.frame_input is not None:
        return frames(images, metadata.frame_input, channel_order)
    size = cfg.input_size
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        array = _rgb(image, channel_order)
        if array is not None and array.dtype == np.uint8 and array.shape == (size, size, 3):
            out[i] = array  # already the model's size: no Pillow needed
        else:
            out[i] = fit(_to_pil(image if array is None else array, i), size, metadata.eval_preprocess)
    return normalise(out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, metadata)


def frames(images: Sequence[Any], frame: FrameInput, channel_order: str = "RGB") -> np.ndarray:
    """(N, H, W, 3) uint8 in the graph's channel order: frames of its size pass as they are; others
    (and PIL images) are resized to it with Pillow first, which the in-graph preprocessing then fits."""
    out = np.empty((len(images), *frame.shape), dtype=np.uint8)
    for i, image in enumerate(images):
        array = _rgb(image, channel_order)
        if array is None or array.dtype != np.uint8 or array.shape != frame.shape:
            pil = _to_pil(image if array is None else array, i)
            array = np.asarray(pil.resize((frame.width, frame.height), Image.Resampling.BILINEAR), dtype=np.uint8)
        out[i] = array[:, :, ::-1] if frame.channel_order == "BGR" else array
    return out if frame.dtype == "uint8" else out.astype(frame.numpy_dtype)  # float32 frames: the same values


def _rgb(image: Any, channel_order: str) -> np.ndarray | None:
    """A uint8 HWC array as RGB (BGR flipped); None for a PIL image (RGB already)."""
    if not isinstance(image, np.ndarray):
        return None
    if channel_order == "BGR" and image.ndim == 3 and image.shape[2] in (3, 4):
        return image[:, :, 2::-1]
    return image


def normalise(images: np.ndarray, metadata: ArtifactMetadata) -> np.ndarray:
    """[0, 1] NCHW images -> what the model takes: minus its mean, over its std, float32 contiguous."""
    mean = np.asarray(metadata.mean, dtype=np.float32)
    std = np.asarray(metadata.std, dtype=np.float32)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):  # NaN scores otherwise
        raise RunnerError(
            f"the model's metadata has mean {list(metadata.mean)} and std {list(metadata.std)}: each must be finite "
            "and each std above 0; re-export it with the mean and std its training data had"
        )
    return normalised(images, mean, std)
