"""Training JPEGs decoded and augmented on the device: the same crops, flips and skips as the CPU path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_deploy.data import Shard, open_dataset
from resnet_deploy.data.imagefolder import load_imagefolder
from resnet_deploy.errors import DatasetError, TrainingError
from resnet_deploy.training.trainer import Trainer, TrainOptions


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEGs of several sizes, a PNG per class (not a JPEG: decoded on the CPU) and a broken JPEG."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for label in range(2):
        folder = root / f"class{label}"
        folder.mkdir()
        for i in range(6):
            ramp = (np.add.outer(np.arange(60 + 7 * i), np.arange(80)) % 255).astype(np.uint8)
            noise = rng.integers(0, 255, ramp.shape, dtype=np.uint8)
            Image.fromarray(np.stack([ramp, ramp[::-1], noise], -1)).save(folder / f"{i}.jpg", quality=90)
        Image.fromarray(noise).convert("RGB").save(folder / "grey.png")
    (root / "class0" / "broken.jpg").write_bytes(b"\xff\xd8 not a whole JPEG")
    return root


def _batches(split, **kw):
    return list(split.batches(4, size=32, train=True, seed=3, **kw))


def test_device_path_on_the_cpu_is_the_cpu_path_bit_for_bit(tree: Path) -> None:
    """torchvision's CPU decoder is libjpeg-turbo, as Pillow's: so even the pixels agree here."""
    on_cpu = _batches(load_imagefolder(tree).train)
    on_device = _batches(load_imagefolder(tree, decode_on=torch.device("cpu")).train)
    assert len(on_cpu) == len(on_device) == 4
    for a, b in zip(on_cpu, on_device, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert a.skipped_paths == b.skipped_paths
    assert [p for b in on_device for p in b.skipped_paths] == [str(tree / "class0" / "broken.jpg")]


def test_device_path_shards_and_uses_workers_alike(tree: Path) -> None:
    split = load_imagefolder(tree, workers=2, decode_on=torch.device("cpu")).train
    whole = _batches(split)
    halves = [_batches(split, shard=Shard(r, 2)) for r in range(2)]
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([h[i].images for h in halves]), batch.images)


def test_evaluation_stays_on_the_runners_cpu_resizing(tree: Path) -> None:
    plain = load_imagefolder(tree).test
    device = load_imagefolder(tree, decode_on=torch.device("cpu")).test
    a, b = list(plain.batches(8, size=32)), list(device.batches(8, size=32))
    assert all(torch.equal(x.images, y.images) for x, y in zip(a, b, strict=True))


def test_gpu_decode_is_refused_where_it_cannot_help(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="digits data is held in memory already; drop it"):
        open_dataset("digits", decode_on=torch.device("cpu"))
    trainer = Trainer(TrainOptions.of(depth=20, epochs=1, device="cpu", gpu_decode=True), tmp_path / "r")
    with pytest.raises(TrainingError, match="`gpu_decode` decodes on the training GPU, and this run trains on the CPU"):
        trainer.run()
    assert not (tmp_path / "r").exists()


@pytest.mark.gpu
def test_on_the_gpu_the_crops_are_the_cpu_paths_and_pixels_close(tree: Path) -> None:
    """nvJPEG rounds its IDCT and colour conversion its own way: a few levels apart, not more."""
    gpu = torch.device("cuda")
    on_cpu = _batches(load_imagefolder(tree).train)
    on_gpu = _batches(load_imagefolder(tree, decode_on=gpu).train, device=gpu)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert b.images.device.type == "cuda" and torch.equal(a.labels, b.labels.cpu())
        assert (a.images - b.images.cpu()).abs().mean() < 4 / 255
