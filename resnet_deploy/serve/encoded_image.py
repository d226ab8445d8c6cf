"""One encoded image of a request (JPEG, PNG... bytes) decoded to RGB, or refused in one line saying which
and why: what ``serve``'s images model and a ``triton`` repository's preprocessing model both do."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import RunnerError

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy_import("PIL.Image")

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # one encoded image; larger is refused before decoding
MAX_IMAGE_PIXELS = 64_000_000  # a decompression bomb's guard, per image


def decode_image(data: Any, index: int) -> Any:
    """One request item's encoded bytes as an RGB PIL image; one line when they are not an image."""
    raw = bytes(data) if not isinstance(data, bytes) else data
    if not raw:
        raise RunnerError(f"image {index} of the request is empty: send the encoded file's bytes (JPEG, PNG...)")
    if len(raw) > MAX_IMAGE_BYTES:
        raise RunnerError(f"image {index} of the request is {len(raw)} bytes, over {MAX_IMAGE_BYTES}: send it smaller")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise RunnerError(
                    f"image {index} of the request is {image.width}x{image.height} pixels, over "
                    f"{MAX_IMAGE_PIXELS}: resize it before sending"
                )
            return image.convert("RGB")
    except RunnerError:
        raise
    except Exception as exc:  # Pillow raises many kinds on bytes that are not an image
        why = "not an image file" if isinstance(exc, Image.UnidentifiedImageError) else f"{type(exc).__name__}: {exc}"
        raise RunnerError(
            f"image {index} of the request is not an image Pillow can decode ({why}): send the encoded file's bytes "
            "(JPEG, PNG, BMP, WebP...)"
        ) from None
