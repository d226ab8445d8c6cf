"""`inspect`: what an ONNX file, an engine or a checkpoint is and holds, in one summary line first."""

from __future__ import annotations

import json

from resnet_deploy.artifacts.engine_sidecar import sidecar_path
from resnet_deploy.pipeline import InspectJob, plan, run
from tests.cli_helpers import assert_one_line_error, invoke


def test_an_fp32_export_lists_every_conv_and_gemm_with_module_and_macs(trained_resnet20) -> None:
    _, onnx_path = trained_resnet20
    found = run(plan(InspectJob(onnx_path)))
    assert found.kind == "onnx" and found.summary == "20 Conv/Gemm layers, none INT8 (FP32)"
    assert [layer["module"] for layer in found.layers][:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert found.layers[-1]["op"] == "Gemm" and found.layers[-1]["module"] == "fc"
    assert sum(layer["macs"] for layer in found.layers) == 40_551_040  # ResNet-20 at 32x32: the paper's 41 M
    assert found.model["architecture"] == "resnet20" and found.model["dataset"] == "digits"
    assert found.lineage == {"precision": "fp32"}


def test_a_checkpoint_is_described_by_its_training_record(trained_resnet20) -> None:
    checkpoint, _ = trained_resnet20
    done = invoke("inspect", str(checkpoint), "--json")
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    assert found["kind"] == "checkpoint" and found["summary"].startswith(
        "resnet20: 20 weighted layers, 269,722 parameters, 40,551,040 multiply-adds, FP32"
    )
    assert found["lineage"]["training"]["epochs"] == 3


def test_an_engine_whose_builder_reported_no_layers_says_so(trained_resnet20, tmp_path) -> None:
    _, onnx_path = trained_resnet20
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    record = {
        "format": "resnet-deploy-engine/1",
        "engine_bytes": 4,
        "engine_sha256": "0" * 64,
        "backend": "tensorrt",
        "backend_version": "10.16.0",
        "precision": "fp16",
        "model": dict(__import__("resnet_deploy").read_onnx_metadata(onnx_path).to_props()),
    }
    sidecar_path(engine).write_text(json.dumps(record))
    found = run(plan(InspectJob(engine)))
    assert found.summary.startswith("fp16 engine; its builder (tensorrt 10.16.0) reported no layers")
    assert found.layers == [] and found.build["backend"] == "tensorrt 10.16.0"
    text = invoke("inspect", str(engine))
    assert text.exit_code == 0 and "built by     tensorrt 10.16.0, fp16" in text.stdout
    for damaged in ([1], [{"name": "conv", "macs": "lots"}], [{"name": "conv", "modules": "layer1"}]):
        sidecar_path(engine).write_text(json.dumps({**record, "layers": damaged}))
        assert_one_line_error(invoke("inspect", str(engine)), "field 'layers[0]' must be an object")


def test_what_inspect_cannot_read_is_one_line(tmp_path) -> None:
    assert_one_line_error(invoke("inspect", str(tmp_path / "none.onnx")), "artifact")
    (tmp_path / "notes.txt").write_text("x")
    assert_one_line_error(invoke("inspect", str(tmp_path / "notes.txt")), "is not an artifact inspect reads")
    (tmp_path / "bare.engine").write_bytes(b"x")
    assert_one_line_error(invoke("inspect", str(tmp_path / "bare.engine")), "bare.engine.json not found")
