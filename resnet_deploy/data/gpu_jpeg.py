"""Training images decoded on the GPU (nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")``).

At ImageNet scale the CPU's JPEG decode is most of the input pipeline's cost (see
``scripts/bench_input_pipeline.py``); a GPU decodes a batch in a fraction of the time. Here the
DataLoader workers only read the files' bytes; the training process decodes each batch on the device
and crops and flips every image there, with the same per-image seeds as the CPU path, so the crops
and flips are the same ones. The pixels differ a little: nvJPEG (as torchvision starts it) repeats each
chroma sample over its 2x2 block where libjpeg-turbo, Pillow's decoder, interpolates between them, and
rounds its IDCT its own way; luma detail is the same, colour edges are a few levels apart.

nvJPEG is tried once per process and device (:func:`check_decoder`) before any training: where it cannot
start, the run is refused in one line instead of decoding every file on the CPU unnoticed. After that,
files that are not JPEGs (PNG...) and the rare JPEG nvJPEG parses and rejects (CMYK, say) are decoded by
torchvision on the CPU; a file neither can decode is skipped and named, as on the CPU path. Evaluation
stays on the CPU path: it must match the deployed runner's resizing.

``device`` may be the CPU too (torchvision's libjpeg-turbo): that is how CI runs this path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import DatasetError

if TYPE_CHECKING:
    from torchvision import io as tv_io
else:
    tv_io = lazy_import("torchvision.io", extra="train")

JPEG_MAGIC = b"\xff\xd8"

Encoded = tuple[torch.Tensor, int, int | None, str]  # (file bytes as uint8, label, augmentation seed, path)
_WORKING: set[str] = set()  # devices whose decoder has been tried and works


def check_decoder(device: torch.device) -> None:
    """nvJPEG tried on ``device`` with a small JPEG of known size; a decoder that cannot start (no
    hardware or CUDA backend, a library mismatch) is refused in one line. Once per process and device."""
    if str(device) in _WORKING:
        return
    buffer = io.BytesIO()
    gradient = np.add.outer(np.arange(16), np.arange(24)).astype(np.uint8) * 8
    Image.fromarray(np.stack([gradient, 255 - gradient, gradient[::-1]], -1)).save(buffer, format="JPEG", quality=90)
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    try:
        image = tv_io.decode_jpeg(data, mode=tv_io.ImageReadMode.RGB, device=device)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(
            f"`gpu_decode`: nvJPEG cannot decode on {device} ({reason}); drop `gpu_decode` to decode on the CPU",
            field="gpu_decode",
        ) from None
    if tuple(image.shape) != (3, 16, 24) or image.device.type != device.type:
        raise DatasetError(
            f"`gpu_decode`: nvJPEG on {device} returned a {tuple(image.shape)} image on {image.device} for a 16x24 "
            "JPEG; drop `gpu_decode` to decode on the CPU",
            field="gpu_decode",
        )
    _WORKING.add(str(device))


class EncodedFiles(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The files' bytes, read in the workers; ``(index, seed)`` items as the CPU path's."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int | None]) -> Encoded | str:
        index, seed = item
        path, label = self.samples[index]
        try:
            with open(path, "rb") as handle:  # plain Python: torchvision.io.read_file hung in forked workers
                data = bytearray(handle.read())
        except OSError:
            return path
        return (
            torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8),
            label,
            seed,
            path,
        )


def collate_encoded(items: list[Encoded | str]) -> tuple[list[Encoded], tuple[str, ...]]:
    return [item for item in items if not isinstance(item, str)], tuple(i for i in items if isinstance(i, str))


def decode(data: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Each file's (3, H, W) uint8 image on ``device``, None where it does not decode. JPEGs are
    decoded as one batch on the device; anything else, or a batch that fails, one by one."""

    out: list[torch.Tensor | None] = [None] * len(data)
    jpegs = [i for i, d in enumerate(data) if bytes(d[:2].tolist()) == JPEG_MAGIC]
    try:
        decoded = (
            tv_io.decode_jpeg([data[i] for i in jpegs], mode=tv_io.ImageReadMode.RGB, device=device) if jpegs else []
        )
        for i, image in zip(jpegs, decoded, strict=True):
            out[i] = image
    except torch.OutOfMemoryError:
        raise  # the device's trouble, not a file's: no quiet decoding on the CPU
    except RuntimeError:  # one bad file fails the batch: find it
        for i in jpegs:
            out[i] = _one(data[i], device)
    for i in range(len(data)):
        if out[i] is None:
            try:
                out[i] = tv_io.decode_image(data[i], mode=tv_io.ImageReadMode.RGB).to(device)
            except RuntimeError:
                out[i] = None
    return out


def _one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """One JPEG on ``device``, None where nvJPEG rejects this file (the caller tries the CPU)."""
    try:
        return tv_io.decode_jpeg(data, mode=tv_io.ImageReadMode.RGB, device=device)  # type: ignore[no-any-return]
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        return None


def augmented(
    encoded: list[Encoded], bad: tuple[str, ...], transform: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """A batch decoded on ``device`` and augmented there: (N, 3, S, S) uint8, labels, undecodable paths."""
    images = decode([e[0] for e in encoded], device)
    kept, labels, failed = [], [], list(bad)
    for image, (_, label, seed, path) in zip(images, encoded, strict=True):
        if image is None:
            failed.append(path)
            continue
        if seed is None:
            kept.append(transform(image))
        else:
            with torch.random.fork_rng(
                devices=[]
            ):  # the crop's and flip's draws: the CPU generator, as on the CPU path
                torch.default_generator.manual_seed(
                    seed
                )  # CPU only: torch.manual_seed also queues CUDA seeding, 0.3 ms an image
                kept.append(transform(image))
        labels.append(label)
    if not kept:
        return torch.empty(0, dtype=torch.uint8, device=device), torch.empty(0, dtype=torch.int64), tuple(failed)
    return torch.stack(kept), torch.tensor(labels), tuple(failed)
