"""``folder:PATH``: unlabelled images at any depth, read for calibration as the model preprocesses them,
undecodable files skipped and counted; refused where labels are needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_deploy.artifacts.model_spec import model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.artifacts.preprocess import Preprocess
from resnet_deploy.data import open_dataset, open_unlabelled
from resnet_deploy.data.spec import DATASET_SPECS_HELP, check_spec
from resnet_deploy.errors import DatasetError
from resnet_deploy.quantize.calib_data import load_calibration_set, load_held_out_set
from resnet_deploy.runtime.images import preprocess
from tests.cli_helpers import assert_one_line_error, invoke

# (relative path, height, width, mode): every type and depth the folder reader must find
IMAGES = (
    ("cam1/day/0001.JPG", 21, 34, "RGB"),
    ("cam1/day/0002.png", 30, 17, "L"),
    ("cam1/night/0003.webp", 12, 12, "RGB"),
    ("cam2/0004.PNG", 40, 25, "RGBA"),
    ("top.jpeg", 19, 23, "RGB"),
)
BROKEN = "cam2/0005.jpg"


def _write(path: Path, height: int, width: int, mode: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").convert(mode).save(path)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five images of assorted types, sizes and modes at three depths, one file that does not decode,
    and files that are not images (a note, a hidden file, a hidden folder)."""
    root = tmp_path_factory.mktemp("frames")
    for seed, (name, height, width, mode) in enumerate(IMAGES):
        _write(root / name, height, width, mode, seed)
    (root / BROKEN).write_bytes(b"\xff\xd8 truncated jpeg")
    (root / "notes.txt").write_text("not an image")
    (root / "cam1" / ".0006.jpg").write_bytes(b"AppleDouble")
    _write(root / ".thumbs" / "0007.png", 8, 8, "RGB", 99)
    return root


def _metadata(policy: Preprocess, size: int = 16) -> ArtifactMetadata:
    config = model_config(20, input_size=size, num_classes=3)
    return ArtifactMetadata(config=config, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), preprocess=policy)


def test_every_image_is_found_at_any_depth_in_path_order(frames: Path) -> None:
    folder = open_unlabelled(f"folder:{frames}")
    assert folder.spec == f"folder:{frames.resolve()}"
    assert [Path(f).relative_to(frames).as_posix() for f in folder.files] == [
        "cam1/day/0001.JPG",
        "cam1/day/0002.png",
        "cam1/night/0003.webp",
        "cam2/0004.PNG",
        "cam2/0005.jpg",
        "top.jpeg",
    ]
    assert folder.sample_order(0) == open_unlabelled(f"folder:{frames}").sample_order(0)  # seeded: stable
    assert sorted(folder.sample_order(0)) == sorted(folder.files)


@pytest.mark.parametrize("policy", [Preprocess("crop"), Preprocess("stretch", interpolation="bicubic")])
def test_calibration_images_are_the_models_preprocessing_of_each_file(frames: Path, policy: Preprocess) -> None:
    metadata = _metadata(policy)
    calib = load_calibration_set(metadata, f"folder:{frames}", 512, batch_size=2)
    assert calib.count == 5 and [len(b) for b in calib.batches] == [2, 2, 1]
    assert calib.skipped == [str(frames.resolve() / BROKEN)] and not calib.fallback
    readable = [path for path in open_unlabelled(f"folder:{frames}").sample_order(0) if not path.endswith(BROKEN)]
    with_runner = preprocess([Image.open(path) for path in readable], metadata)  # what deployment feeds the model
    np.testing.assert_array_equal(np.concatenate(calib.batches), with_runner)
    assert calib.batches[0].dtype == np.float32 and calib.batches[0].shape[1:] == (3, 16, 16)


def test_reads_and_skips_are_counted_and_the_count_asked_is_clamped(frames: Path) -> None:
    spec = f"folder:{frames.resolve()}"
    calib = load_calibration_set(_metadata(Preprocess("crop")), f"folder:{frames}", 512)
    assert calib.clamp_note() == f"asked for 512 calibration images; {spec} has 6; calibrating on 5"
    assert calib.read_note() == f"{spec}: 5 images read, 1 skipped ({frames.resolve() / BROKEN} did not decode)"
    every = load_calibration_set(_metadata(Preprocess("crop")), f"folder:{frames}", 6)
    assert every.sha256 == calib.sha256  # clamped to what exists: the same images, the same cache key
    fewer = load_calibration_set(_metadata(Preprocess("crop")), f"folder:{frames}", 2)
    assert fewer.count == 2 and fewer.clamp_note() is None
    np.testing.assert_array_equal(fewer.batches[0], calib.batches[0][:2])  # the first two of the same sample


def test_a_skipped_file_is_replaced_by_the_next_one_sampled(frames: Path) -> None:
    order = open_unlabelled(f"folder:{frames}").sample_order(0)
    broken_at = next(i for i, path in enumerate(order) if path.endswith(BROKEN))
    metadata = _metadata(Preprocess("crop"))
    calib = load_calibration_set(metadata, f"folder:{frames}", broken_at + 1)
    assert calib.count == broken_at + 1 and calib.skipped == [order[broken_at]]
    read = order[: broken_at + 2]  # the broken file's place taken by the next one
    with_runner = preprocess([Image.open(path) for path in read if path != order[broken_at]], metadata)
    np.testing.assert_array_equal(np.concatenate(calib.batches), with_runner)
    images = "image" if broken_at == 0 else "images"
    assert calib.read_note() == (
        f"folder:{frames.resolve()}: {broken_at + 1} {images} read, 1 skipped ({order[broken_at]} did not decode)"
    )


def test_empty_missing_and_unreadable_folders_are_one_line(tmp_path: Path) -> None:
    metadata = _metadata(Preprocess("crop"))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"holds no image files \(\.jpg, \.png, .*\) at any depth$"):
        load_calibration_set(metadata, f"folder:{tmp_path / 'empty'}", 8)
    with pytest.raises(DatasetError, match=r"image folder .*missing does not exist or is not a directory"):
        check_spec(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "bad").mkdir()
    for name in ("a.jpg", "b.png", "c.webp", "d.tif"):
        (tmp_path / "bad" / name).write_bytes(b"garbage")
    with pytest.raises(DatasetError) as caught:
        load_calibration_set(metadata, f"folder:{tmp_path / 'bad'}", 8)
    message = str(caught.value)
    assert (
        message.startswith(f"none of the 4 image files of folder:{tmp_path / 'bad'} decoded") and "+1 more" in message
    )
    assert "\n" not in message


def test_where_labels_are_needed_a_folder_is_refused(frames: Path) -> None:
    spec = f"folder:{frames}"
    with pytest.raises(DatasetError, match=r"has no labels to train, validate or score accuracy on; use imagefolder"):
        open_dataset(spec)
    with pytest.raises(DatasetError, match=r"has no labels to measure INT8 accuracy on; use imagefolder:PATH"):
        load_held_out_set(_metadata(Preprocess("crop")), spec, 8)
    with pytest.raises(DatasetError, match="has no labels to rank"):
        check_spec(spec, labels_for="rank")
    check_spec(spec)  # calibration: fine
    assert "folder:PATH" in DATASET_SPECS_HELP


def test_validate_refuses_a_folder_in_one_line(trained_resnet20, frames: Path) -> None:
    checkpoint, onnx_path = trained_resnet20
    result = invoke("validate", "--checkpoint", str(checkpoint), str(onnx_path), "--data", f"folder:{frames}")
    assert_one_line_error(result, "has no labels to train, validate or score accuracy on; use imagefolder:PATH")


def test_calibration_images_come_without_torch(frames: Path) -> None:
    code = f"""
import sys
sys.modules["torch"] = None  # what `import torch` meets where torch is not installed
from resnet_deploy.artifacts.model_spec import model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.quantize.calib_data import load_calibration_set
metadata = ArtifactMetadata(config=model_config(20, input_size=8, num_classes=3), mean=(0.5,) * 3, std=(0.25,) * 3)
calib = load_calibration_set(metadata, "folder:{frames}", 512)
print(calib.count, len(calib.skipped))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["5", "1"], run.stdout + run.stderr
