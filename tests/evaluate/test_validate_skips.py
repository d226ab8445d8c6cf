"""`validate` reports what it could not score: undecodable test images, and engines without a GPU."""

from __future__ import annotations

import json

import pytest

from resnet_deploy.runtime import machine
from tests.cli_helpers import assert_one_line_error, invoke
from tests.factories import write_image_folder

CLASSES = tuple(f"c{i}" for i in range(10))  # tiny_onnx has 10 classes


@pytest.fixture(scope="module")
def reference(tiny_onnx, tmp_path_factory):
    """A checkpoint of the weights in ``tiny_onnx`` (random ResNet-20 at 8x8), with a 10-class
    ImageFolder whose test split holds one corrupt image: (checkpoint, data spec, corrupt path)."""
    from resnet_deploy.models.checkpoint import save_checkpoint
    from resnet_deploy.models.source import open_model

    root = tmp_path_factory.mktemp("ref")
    data = root / "data"
    write_image_folder(data / "train", classes=CLASSES, per_class=1, size=12)
    write_image_folder(data / "val", classes=CLASSES, per_class=2, size=12)
    corrupt = data / "val" / "c3" / "zz-corrupt.png"
    corrupt.write_bytes(b"\x89PNG truncated")
    source = open_model(depth=20, input_size=8)  # the same seeded weights as tiny_onnx
    checkpoint = save_checkpoint(source.model, root / "model.pt", {"dataset": f"imagefolder:{data}"})
    return checkpoint, f"imagefolder:{data}", str(corrupt.resolve())


def test_a_corrupt_test_image_is_counted_named_and_warned_about(reference, tiny_onnx, tmp_path) -> None:
    checkpoint, data, corrupt = reference
    result = invoke(
        "validate", "--checkpoint", str(checkpoint), str(tiny_onnx), "--json", "--report", str(tmp_path / "v.md")
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"] == data and report["images"] == 20 and report["skipped_images"] == 1
    assert report["skipped_image_paths"] == [corrupt] and report["skipped_artifacts"] == []
    assert report["artifacts"][0]["images"] == report["reference"]["images"] == 20  # all scored on the same 20
    assert report["artifacts"][0]["top1_agreement"] == 1.0
    note = f"1 test image did not decode and was not scored: {corrupt}"
    assert f"warning: {note}" in result.stderr
    assert f"- {note}" in (tmp_path / "v.md").read_text()


def test_table_and_markdown_list_what_was_left_out() -> None:
    from resnet_deploy.evaluate.validate import Score, SkippedArtifact, ValidationReport

    ref = Score("m.pt", "pytorch", "fp32")
    report = ValidationReport(
        "imagefolder:/d",
        40,
        ref,
        [Score("m.onnx", "onnxruntime", "fp32")],
        skipped_images=5,
        skipped_image_paths=[f"/d/{i}.png" for i in range(5)],
        skipped_artifacts=[SkippedArtifact("m.engine", "no NVIDIA GPU here to run TensorRT engines (x)")],
    )
    notes = [
        "5 test images did not decode and were not scored: /d/0.png, /d/1.png, /d/2.png (+2 more)",
        "not validated: m.engine: no NVIDIA GPU here to run TensorRT engines (x)",
    ]
    assert report.notes() == notes
    assert report.table().splitlines()[-2:] == [f"note: {n}" for n in notes]
    shown = report.table(notes=False).splitlines()
    assert shown[2].startswith("m.onnx") and shown[-1].endswith("(McNemar p < 0.05).")  # the legend, no notes
    assert report.markdown().count("\n- ") == 2 and f"- {notes[1]}" in report.markdown()
    data = report.to_dict()
    assert data["skipped_images"] == 5 and len(data["skipped_image_paths"]) == 5
    assert data["skipped_artifacts"] == [{"artifact": "m.engine", "reason": notes[1].split(": ", 2)[2]}]
    clean = ValidationReport("digits", 40, ref, [])
    assert clean.notes() == [] and "note" not in clean.table() and "\n- " not in clean.markdown()


@pytest.fixture
def engine(tmp_path):
    """An engine file that cannot load (no build record beside it): what any engine is without a GPU."""
    path = tmp_path / "m.engine"
    path.write_bytes(b"not a plan")
    return path


def test_without_a_gpu_an_engine_is_skipped_and_the_rest_scored(reference, tiny_onnx, engine, monkeypatch) -> None:
    monkeypatch.setattr(machine, "gpu_present", lambda: False)
    checkpoint, _, _ = reference
    result = invoke("validate", "--checkpoint", str(checkpoint), str(engine), str(tiny_onnx), "--json", "--limit", "4")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [a["artifact"] for a in report["artifacts"]] == ["tiny.onnx"] and report["images"] == 4
    (skipped,) = report["skipped_artifacts"]
    assert skipped["artifact"] == str(engine)
    assert skipped["reason"].startswith("no NVIDIA GPU here to run TensorRT engines (")
    assert "m.engine.json not found" in skipped["reason"]  # why it would not load, kept for the user
    assert f"warning: not validating {engine}: no NVIDIA GPU here" in result.stderr


def test_without_a_gpu_engines_alone_are_refused_with_the_reason(reference, engine, monkeypatch) -> None:
    monkeypatch.setattr(machine, "gpu_present", lambda: False)
    checkpoint, _, _ = reference
    result = invoke("validate", "--checkpoint", str(checkpoint), str(engine))
    assert_one_line_error(result, f"nothing to validate on this machine: {engine}: no NVIDIA GPU here")
    assert "validate engines where they run, or pass ONNX artifacts" in result.stderr


def test_with_a_gpu_an_engine_that_fails_to_load_is_an_error(reference, tiny_onnx, engine, monkeypatch) -> None:
    monkeypatch.setattr(machine, "gpu_present", lambda: True)
    checkpoint, _, _ = reference
    result = invoke("validate", "--checkpoint", str(checkpoint), str(engine), str(tiny_onnx), "--json")
    assert_one_line_error(result, "m.engine.json not found")
    assert "nothing to validate" not in result.stderr and "not validating" not in result.stderr
    assert "artifacts" not in result.stdout  # nothing was scored


def test_a_missing_engine_is_an_error_even_without_a_gpu(reference, tiny_onnx, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(machine, "gpu_present", lambda: False)
    checkpoint, _, _ = reference
    result = invoke("validate", "--checkpoint", str(checkpoint), str(tmp_path / "typo.engine"), str(tiny_onnx))
    assert_one_line_error(result, "typo.engine not found")
