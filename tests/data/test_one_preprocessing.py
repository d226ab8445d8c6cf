"""validate, calibration and training's eval feed a model exactly what the runner feeds it.

The runner resized with PIL and ``round()``; ImageFolder eval used torchvision's antialiased tensor
resize and its own centre-crop rounding: on a 1024x683 image the crop moved a pixel and pixels
differed by up to 0.46. Both now call :func:`resnet_deploy.artifacts.preprocess.fit`; these tests compare
the two paths bit for bit on large, non-square, grayscale and RGBA images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_deploy.artifacts.model_spec import model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.artifacts.preprocess import Preprocess
from resnet_deploy.data.imagefolder import FolderSplit
from resnet_deploy.data.tensor_split import TensorSplit
from resnet_deploy.runtime.images import preprocess

SHAPES = [((1024, 683), "RGB"), ((333, 500), "RGB"), ((640, 480), "L"), ((500, 375), "RGBA"), ((97, 301), "RGB")]


def metadata(depth: int, size: int, policy: Preprocess | None = None) -> ArtifactMetadata:
    config = model_config(depth, input_size=size)
    return ArtifactMetadata(config=config, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), preprocess=policy)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[tuple[str, Image.Image]]:
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    out = []
    for i, ((w, h), mode) in enumerate(SHAPES):
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        smooth = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, channels), dtype=np.uint8)
        array = np.kron(smooth, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]  # edges: resampling shows
        image = Image.fromarray(array[:, :, 0] if channels == 1 else array, mode)
        path = root / f"{i}.png"
        image.save(path)
        out.append((str(path), image))
    return out


@pytest.mark.parametrize(
    ("depth", "size", "policy"),
    [
        (18, 224, None),
        (50, 160, None),
        (20, 32, None),
        (18, 96, Preprocess("crop", crop_pct=0.95, interpolation="bicubic")),
    ],
)
def test_validate_and_calibration_see_what_the_runner_feeds(images, depth, size, policy) -> None:
    meta = metadata(depth, size, policy)
    split = FolderSplit([(path, 0) for path, _ in images])
    (batch,) = split.batches(len(images), size=size, preprocess=meta.eval_preprocess)
    with Image.open(images[0][0]) as first:
        assert first.size == (1024, 683)
    runner = preprocess([Image.open(path) for path, _ in images], meta)
    assert batch.images.shape == (len(images), 3, size, size)
    assert np.array_equal(batch.images.numpy(), runner)  # bit for bit, every image


def test_the_policy_is_recorded_in_the_artifact_and_read_back() -> None:
    meta = metadata(50, 224, Preprocess("crop", crop_pct=0.95, interpolation="bicubic"))
    back = ArtifactMetadata.from_props(meta.to_props())
    assert back.eval_preprocess == Preprocess("crop", crop_pct=0.95, interpolation="bicubic")
    old = {k: v for k, v in metadata(50, 224).to_props().items() if k != "preprocess"}  # before the prop existed
    assert ArtifactMetadata.from_props(old).eval_preprocess == Preprocess("crop", crop_pct=224 / 256)
    assert metadata(20, 32).eval_preprocess.resize == "stretch"


def test_in_memory_data_of_another_size_is_resized_as_the_runner_resizes() -> None:
    rng = np.random.default_rng(1)
    hwc = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    split = TensorSplit(torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous(), torch.zeros(6, dtype=torch.int64))
    meta = metadata(18, 64)  # an ImageNet-family model evaluated on 32x32 data (the calibration fallback)
    (batch,) = split.batches(6, size=64, preprocess=meta.eval_preprocess)
    assert np.array_equal(batch.images.numpy(), preprocess(list(hwc), meta))
