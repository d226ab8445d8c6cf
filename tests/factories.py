"""Tiny datasets written in the real on-disk formats, for tests (no downloads); scripts as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module, so tests call its functions."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def class_pattern_images(labels: np.ndarray, size: int = 32, seed: int = 0) -> np.ndarray:
    """(N, size, size, 3) uint8 images whose class is learnable: a bright bar at a class-dependent row."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (len(labels), size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = (int(label) * 3) % (size - 4)
        images[i, row : row + 4, :, int(label) % 3] = 250
    return images


def write_tiny_cifar(root: Path, kind: str = "cifar10", train: int = 60, test: int = 20, seed: int = 0) -> Path:
    from resnet_deploy.data.cifar import write_cifar

    classes = 10 if kind == "cifar10" else 100
    rng = np.random.default_rng(seed)
    train_labels = rng.integers(0, classes, train)
    test_labels = rng.integers(0, classes, test)
    names = [f"class{i}" for i in range(classes)]
    return write_cifar(
        kind,
        root,
        (class_pattern_images(train_labels, seed=seed), train_labels),
        (class_pattern_images(test_labels, seed=seed + 1), test_labels),
        names,
    )


def write_image_folder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 4, size: int = 40, fmt: str = "png"
) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = class_pattern_images(np.array([c]), size=size, seed=int(rng.integers(1 << 30)))[0]
            Image.fromarray(pixels).save(root / name / f"{i:03d}.{fmt}")
    return root


class Collected:
    """A pipeline's ``out`` (``say`` and ``warn``) that keeps the lines for the test to check."""

    def __init__(self, warnings: list[str] | None = None) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = [] if warnings is None else warnings

    def say(self, message: str = "") -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
