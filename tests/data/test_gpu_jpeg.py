"""Training JPEGs decoded and augmented on the device: the same crops, flips and skips as the CPU path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_deploy.data import Shard, gpu_jpeg, open_dataset
from resnet_deploy.data.imagefolder import load_imagefolder
from resnet_deploy.errors import DatasetError, TrainingError
from resnet_deploy.training.trainer import Trainer, TrainOptions


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEGs of several sizes, a PNG per class (not a JPEG: decoded on the CPU) and a broken JPEG. The
    noise is grey, the same in every channel: detail in luma, which both decoders keep alike. Detail in
    chroma would measure nvJPEG's repeated chroma samples against libjpeg-turbo's interpolated ones
    (up to 3.1 of the 4 levels allowed below, emulated), not the crops."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for label in range(2):
        folder = root / f"class{label}"
        folder.mkdir()
        for i in range(6):
            ramp = np.add.outer(np.arange(60 + 7 * i), np.arange(80)) % 200
            noise = rng.integers(0, 55, ramp.shape)
            rgb = np.stack([ramp, ramp[::-1], (ramp + 100) % 200], -1) + noise[..., None]
            Image.fromarray(rgb.astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
        Image.fromarray(noise.astype(np.uint8)).convert("RGB").save(folder / "grey.png")
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


def test_a_decoder_that_cannot_start_is_refused_in_one_line_before_any_file(tree: Path, monkeypatch) -> None:
    """Not a quiet fall back to the CPU for every file (slower than no `gpu_decode`, and unnoticed)."""

    def no_nvjpeg(*_a, **_k):
        raise RuntimeError("Failed to initialize nvjpeg with hardware backend\n(more lines)")

    monkeypatch.setattr(gpu_jpeg.tv_io, "decode_jpeg", no_nvjpeg)
    monkeypatch.setattr(gpu_jpeg, "_WORKING", set())
    message = (
        "`gpu_decode`: nvJPEG cannot decode on cuda:0 (Failed to initialize nvjpeg with hardware backend); "
        "drop `gpu_decode` to decode on the CPU"
    )
    with pytest.raises(DatasetError) as refused:
        load_imagefolder(tree, decode_on=torch.device("cuda", 0))
    assert str(refused.value) == message and refused.value.field == "gpu_decode"


def test_the_decoder_is_tried_once_per_device_and_the_cpus_not_at_all(tree: Path, monkeypatch) -> None:
    tried: list[str] = []
    real = gpu_jpeg.tv_io.decode_jpeg

    def on_the_cpu(data, *, mode, device):
        tried.append(str(device))
        return real(data, mode=mode, device="cpu").to("meta" if str(device) != "cpu" else "cpu")

    monkeypatch.setattr(gpu_jpeg.tv_io, "decode_jpeg", on_the_cpu)
    monkeypatch.setattr(gpu_jpeg, "_WORKING", set())
    load_imagefolder(tree, decode_on=torch.device("cpu"))
    assert tried == []
    for _ in range(2):
        gpu_jpeg.check_decoder(torch.device("meta"))
    assert tried == ["meta"]


def test_encoded_files_are_not_pinned_for_nvjpeg(tree: Path) -> None:
    """nvJPEG reads host bytes through its own pinned buffers: pinning them first is wasted work."""
    split = load_imagefolder(tree, decode_on=torch.device("cpu")).train
    encoded, _ = split._loader(32, True, None, pin=True)
    decoded, _ = load_imagefolder(tree).train._loader(32, True, None, pin=True)
    assert (encoded.pin_memory, decoded.pin_memory) == (False, True)


@pytest.mark.gpu
def test_on_the_gpu_the_crops_are_the_cpu_paths_and_pixels_close(tree: Path, monkeypatch) -> None:
    """Every JPEG decoded by nvJPEG (a fall back to the CPU fails the test), the same crops and flips as
    the CPU path's, the pixels within 4 levels on average (the decoders' chroma and IDCT rounding)."""
    gpu = torch.device("cuda")
    on_cpu = _batches(load_imagefolder(tree).train)
    cpu_decode = gpu_jpeg.tv_io.decode_image

    def png_only(data, *args, **kwargs):
        assert bytes(data[:2].tolist()) != gpu_jpeg.JPEG_MAGIC or len(data) < 100, "a JPEG decoded on the CPU"
        return cpu_decode(data, *args, **kwargs)

    monkeypatch.setattr(gpu_jpeg.tv_io, "decode_image", png_only)
    on_gpu = _batches(load_imagefolder(tree, decode_on=gpu).train, device=gpu)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert b.images.device.type == "cuda" and torch.equal(a.labels, b.labels.cpu())
        assert a.skipped_paths == b.skipped_paths
        assert (a.images - b.images.cpu()).abs().mean() < 4 / 255


@pytest.mark.gpu
def test_on_the_gpu_the_same_pixels_crop_and_flip_to_within_a_level(tree: Path) -> None:
    """The augmentation alone, on the same decoded pixels: CUDA's antialiased resize against the CPU's."""
    from torchvision.transforms import v2

    augment = v2.Compose([v2.RandomResizedCrop(32, antialias=True), v2.RandomHorizontalFlip()])
    for i, path in enumerate(sorted(tree.glob("class*/[0-9].jpg"))):
        image = gpu_jpeg.tv_io.decode_image(str(path), mode=gpu_jpeg.tv_io.ImageReadMode.RGB)
        crops = []
        for device in ("cpu", "cuda"):
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(i)
                crops.append(augment(image.to(device)).cpu().int())
        assert (crops[0] - crops[1]).abs().max() <= 1
