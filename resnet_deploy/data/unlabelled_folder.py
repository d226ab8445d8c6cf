"""Unlabelled images for calibration: ``folder:PATH``, every image below ``PATH`` at any depth.

Calibration needs images like the ones the model will classify, not their labels, so a flat folder
of production frames serves as it is. Images are the files whose suffix (any case) Pillow has a
decoder for: ``.jpg``, ``.png``, ``.webp``, ``.bmp``, ``.tif``, ``.gif`` and the rest. Hidden files
and folders (names starting with ``.``) are passed over, and so are linked sub-folders; a link to a
file counts. The files are listed in ``Path`` order (by path parts), so a seeded sample is the same
on every run.

Each image is decoded with Pillow to RGB and resized by the model's own policy
(:func:`resnet_deploy.artifacts.preprocess.fit`), as :mod:`resnet_deploy.data.plain_folder` does for
ImageFolder trees: numpy and Pillow only, no torch. Files that do not decode are skipped and named.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.preprocess import Preprocess, fit
from resnet_deploy.data.base import name_files
from resnet_deploy.data.plain_folder import decode_rgb
from resnet_deploy.errors import DatasetError

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy_import("PIL.Image")

KIND = "folder"
NAMED_SUFFIXES = ".jpg, .png, .webp, .bmp, .tif"  # what a message lists of the many Pillow reads
# Suffixes Pillow registers that name no raster image it can decode by itself: data formats it only
# identifies (stubs), vector formats that need Ghostscript or Windows, and video.
NOT_DECODED = frozenset((".bufr", ".grib", ".h5", ".hdf", ".eps", ".ps", ".wmf", ".emf", ".mpeg", ".mpg"))


@functools.cache
def image_suffixes() -> frozenset[str]:
    """The lower-case suffixes of the image files Pillow decodes."""
    registered = Image.registered_extensions()
    return frozenset(suffix for suffix, kind in registered.items() if kind in Image.OPEN) - NOT_DECODED


def resolve_folder(path: str | Path) -> Path:
    """``path`` as an absolute directory; one line when it is not one."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory", field="data")
    return root.resolve()


def _is_image(name: str, suffixes: frozenset[str]) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes


def list_images(root: Path) -> list[str]:
    """Every image file below ``root`` at any depth, in ``Path`` order."""
    suffixes = image_suffixes()
    found: list[tuple[tuple[str, ...], str]] = []
    for directory, folders, names in os.walk(root):  # linked folders are listed, never walked
        folders[:] = [name for name in folders if not name.startswith(".")]
        parts = Path(directory).relative_to(root).parts
        for name in names:
            path = os.path.join(directory, name)
            if _is_image(name, suffixes) and os.path.isfile(path):
                found.append(((*parts, name), path))
    return [path for _, path in sorted(found)]


@dataclass(frozen=True)
class UnlabelledFolder:
    """The image files of one ``folder:PATH``; they carry no labels."""

    spec: str  # "folder:" + the absolute folder
    root: Path
    files: tuple[str, ...]  # in Path order

    def __len__(self) -> int:
        return len(self.files)

    def sample_order(self, seed: int) -> list[str]:
        """Every file, in a seeded random order: a sample is its first N."""
        order = list(self.files)
        random.Random(seed).shuffle(order)
        return order


def open_folder(path: str | Path) -> UnlabelledFolder:
    """The images below ``path``; one line when there are none."""
    root = resolve_folder(path)
    files = list_images(root)
    spec = f"{KIND}:{root}"
    if not files:
        raise DatasetError(
            f"{spec} holds no image files ({NAMED_SUFFIXES} or another type Pillow reads) at any depth",
            field="data",
        )
    return UnlabelledFolder(spec, root, tuple(files))


@dataclass
class ReadCount:
    """How many images a pass decoded, and the files it skipped because they did not decode."""

    read: int = 0
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``37 images read, 2 skipped (a.jpg, b.png did not decode)``."""
        line = f"{self.read} image{'' if self.read == 1 else 's'} read, {len(self.skipped)} skipped"
        return line + (f" ({name_files(self.skipped)} did not decode)" if self.skipped else "")


def read_images(
    files: Sequence[str], count: int, *, size: int, policy: Preprocess, tally: ReadCount, batch_size: int = 32
) -> Iterator[np.ndarray]:
    """The first ``count`` of ``files`` that decode, ``batch_size`` at a time: (N, 3, size, size) float32 in
    [0, 1], resized by ``policy``. A file that does not decode is skipped, and the next one read in its
    place; ``tally`` counts both as it goes."""
    pending: list[np.ndarray] = []
    for path in files:
        if tally.read >= count:
            break
        image = decode_rgb(path)
        if image is None:
            tally.skipped.append(path)
            continue
        pending.append(fit(image, size, policy).transpose(2, 0, 1))
        tally.read += 1
        if len(pending) == batch_size:
            yield _scaled(pending)
            pending = []
    if pending:
        yield _scaled(pending)


def _scaled(images: list[np.ndarray]) -> np.ndarray:
    return np.stack(images).astype(np.float32) / 255.0
