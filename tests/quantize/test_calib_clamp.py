"""More calibration images asked for than the data has: all of them are used, with a note; an
unlabelled folder calibrates end to end, and is refused where the accuracy budget needs labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from resnet_deploy.artifacts.model_spec import model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.quantize.calib_data import load_calibration_set
from tests.cli_helpers import assert_one_line_error, invoke
from tests.factories import write_tiny_cifar


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small images in nested folders (jpg, png, webp) and one file that does not decode."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for i, name in enumerate(("a/0.jpg", "a/1.png", "a/b/2.webp", "a/b/3.jpg", "4.png", "c/5.webp")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20 + i, 24 - i, 3), dtype=np.uint8)).save(root / name)
    (root / "c" / "6.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    return root


def test_more_images_than_the_training_split_has_are_clamped_with_a_note(tmp_path) -> None:
    spec = f"cifar10:{write_tiny_cifar(tmp_path, train=60, test=4)}"
    config = model_config(20, num_classes=10)
    metadata = ArtifactMetadata(config=config, mean=(0.5,) * 3, std=(0.25,) * 3, dataset=spec)
    clamped = load_calibration_set(metadata, None, 512, batch_size=16)
    assert clamped.count == 60 and [len(b) for b in clamped.batches] == [16, 16, 16, 12]
    assert (clamped.asked, clamped.available) == (512, 60)
    assert clamped.clamp_note() == f"asked for 512 calibration images; {spec} has 60 training images; calibrating on 60"
    assert clamped.read_note() is None and clamped.skipped == []
    exact = load_calibration_set(metadata, None, 60, batch_size=16)
    assert exact.clamp_note() is None and exact.sha256 == clamped.sha256  # the same images, the same cache key
    for got, want in zip(clamped.batches, exact.batches, strict=True):
        np.testing.assert_array_equal(got, want)


def _scales(path: Path) -> np.ndarray:
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    quantize = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert quantize, "no Q/DQ pair was written"
    return np.concatenate([inits[n.input[1]].ravel() for n in quantize])


def test_calibrating_on_a_folder_writes_finite_positive_scales(trained_resnet20, frames: Path, tmp_path) -> None:
    _, onnx_path = trained_resnet20
    output = tmp_path / "q.onnx"
    args = ("calibrate", str(onnx_path), "--data", f"folder:{frames}", "--method", "minmax", "--no-cache")
    result = invoke(*args, "-o", str(output), "--json")
    assert result.exit_code == 0, result.output
    spec, broken = f"folder:{frames.resolve()}", frames.resolve() / "c" / "6.jpg"
    assert f"asked for 512 calibration images; {spec} has 7; calibrating on 6" in result.stderr
    assert f"warning: {spec}: 6 images read, 1 skipped ({broken} did not decode)" in result.stderr
    report = json.loads(result.stdout)
    assert (report["images"], report["images_asked"], report["dataset"]) == (6, 512, spec)
    assert report["skipped_images"] == 1 and report["skipped_image_paths"] == [str(broken)]
    scales = _scales(output)
    assert np.isfinite(scales).all() and (scales > 0).all()
    props = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert props["precision"] == "int8" and props["calibration_images"] == "6"
    assert props["calibration_dataset"] == spec


def test_an_accuracy_budget_on_a_folder_is_refused_before_any_work(trained_resnet20, frames: Path, tmp_path) -> None:
    _, onnx_path = trained_resnet20
    output = tmp_path / "q.onnx"
    result = invoke(
        "calibrate", str(onnx_path), "--data", f"folder:{frames}", "--max-top1-drop", "0.5", "-o", str(output)
    )
    assert_one_line_error(result, "has no labels to measure INT8 accuracy on; use imagefolder:PATH")
    assert not output.exists()
