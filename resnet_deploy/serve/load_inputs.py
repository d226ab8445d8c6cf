"""What a load test sends: batches for the model's input, random or from a folder of images (tensors, uint8
frames, or encoded images for a BYTES input), and the requests built from them before the clock runs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.data.unlabelled_folder import list_images
from resnet_deploy.errors import RunnerError
from resnet_deploy.serve.triton_target import TENSOR_TYPES, ModelInput, Target, one_line_message

if TYPE_CHECKING:
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http
    from PIL import Image
else:
    triton_http = lazy_import("tritonclient.http", extra="client")
    triton_grpc = lazy_import("tritonclient.grpc", extra="client")
    Image = lazy_import("PIL.Image")

RANDOM_IMAGE_SIDE = 224  # the random PNGs sent to a BYTES input: ImageNet's input size
POOL = 4  # distinct batches per setting, sent in turn (built before the window: no work in it)
MAX_FOLDER_IMAGES = 256  # files read from an images folder, at most
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def random_png(rng: np.random.Generator, side: int = RANDOM_IMAGE_SIDE) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def folder_images(folder: Path) -> list[str]:
    """The image files of ``folder`` (the first ``MAX_FOLDER_IMAGES`` in path order); one line when none."""
    if not folder.is_dir():
        raise RunnerError(f"image folder {folder} does not exist or is not a directory", field="input")
    files = list_images(folder)[:MAX_FOLDER_IMAGES]
    if not files:
        raise RunnerError(f"no images in {folder} (JPEG, PNG, ... at any depth)", field="input")
    return files


def _image_layout(m: ModelInput) -> tuple[int, int, bool] | None:
    """(height, width, channels-first) of an image-shaped input; None for another shape."""
    if len(m.shape) == 3 and m.shape[0] == 3:
        return m.shape[1], m.shape[2], True
    if len(m.shape) == 3 and m.shape[2] == 3:
        return m.shape[0], m.shape[1], False
    return None


def _decoded(path: str, m: ModelInput) -> np.ndarray:
    """A file as the model's tensor: RGB resized to its size; float inputs scaled to 0..1 and standardised
    with ImageNet's mean and std (only the load matters here, not the answers)."""
    layout = _image_layout(m)
    if layout is None:
        raise RunnerError(
            f"model {m.model}'s input {m.name} {list(m.shape)} is not an image ([3,H,W] or [H,W,3]): "
            "send random data (`input` random)",
            field="input",
        )
    height, width, first = layout
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB").resize((width, height)))
    except Exception as exc:
        raise RunnerError(
            f"{path} is not an image Pillow can decode ({one_line_message(exc)})", field="input"
        ) from None
    dtype = TENSOR_TYPES[m.datatype]
    if np.issubdtype(dtype, np.floating):
        array = ((rgb / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(dtype)
    else:
        array = rgb.astype(dtype)
    return np.ascontiguousarray(array.transpose(2, 0, 1) if first else array)


def make_batches(m: ModelInput, batch: int, files: Sequence[str] | None = None, count: int = POOL) -> list[np.ndarray]:
    """``count`` distinct requests of ``batch`` items each: random data, or the files in turn."""
    rng = np.random.default_rng(batch)
    shape = m.request_shape(batch)
    items = int(np.prod(shape[:-1])) if m.datatype == "BYTES" else 0
    out = []
    for index in range(count):
        if m.datatype == "BYTES":
            if files:
                blobs = [Path(files[(index * items + i) % len(files)]).read_bytes() for i in range(items)]
            else:
                blobs = [random_png(rng) for _ in range(items)]
            out.append(np.array(blobs, dtype=np.object_).reshape(shape))
        elif files:
            rows = batch if m.max_batch_size > 0 else 1
            arrays = [_decoded(files[(index * rows + i) % len(files)], m) for i in range(rows)]
            out.append(np.stack(arrays) if m.max_batch_size > 0 else arrays[0])
        else:
            dtype = TENSOR_TYPES[m.datatype]
            if np.issubdtype(dtype, np.floating):
                out.append(rng.standard_normal(shape).astype(dtype))
            else:
                high = 256 if dtype == np.uint8 else 10
                out.append(rng.integers(0, high, shape).astype(dtype))
    return out


def build_requests(target: Target, arrays: list[np.ndarray]) -> tuple[list[list[Any]], list[Any]]:
    """The inputs of each request, built once and shared by the threads (the clients only read them), and
    the outputs asked for (all the model's, in binary)."""
    module = triton_http if target.protocol == "http" else triton_grpc
    m = target.model
    requests = []
    for array in arrays:
        infer_input = module.InferInput(m.name, list(array.shape), m.datatype)
        infer_input.set_data_from_numpy(array)
        requests.append([infer_input])
    if target.protocol == "http":
        outputs = [module.InferRequestedOutput(name, binary_data=True) for name in m.outputs]
    else:
        outputs = [module.InferRequestedOutput(name) for name in m.outputs]
    return requests, outputs
