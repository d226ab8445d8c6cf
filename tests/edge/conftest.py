"""The edge tests' model, labelled test-split images, and an opened runner."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """24 images of the embedded digits' test split as uint8 RGB (32x32), and their classes."""
    from resnet_deploy.data import open_dataset

    batch = next(open_dataset("digits").test.batches(24, size=32))
    images = (batch.images.numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    return images, batch.labels.numpy()


@pytest.fixture
def runner(tiny_onnx):
    from resnet_deploy.runtime import Runner

    with Runner.load(tiny_onnx, backend="onnxruntime") as opened:
        yield opened
