"""`validate` and `convert --fp16`: every artifact scored against the original on the same images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet_deploy.errors import AccuracyGateError, ResnetDeployError
from resnet_deploy.runtime import open_backend
from resnet_deploy.validate import Score, ValidationReport, check_gate, validate
from tests.cli_helpers import assert_one_line_error, invoke


@pytest.fixture(scope="module")
def trained(trained_resnet20, tmp_path_factory):
    """The shared trained ResNet-20: checkpoint, FP32 ONNX and its FP16 twin."""
    from resnet_deploy.fp16 import convert_to_fp16

    checkpoint, fp32 = trained_resnet20
    fp16 = tmp_path_factory.mktemp("fp16") / "r20.fp16.onnx"
    convert_to_fp16(fp32, fp16)
    return checkpoint, fp32, fp16


def test_validate_scores_every_artifact_against_the_reference(trained) -> None:
    checkpoint, fp32, fp16 = trained
    with open_backend(checkpoint) as ref, open_backend(fp32) as a, open_backend(fp16) as b:
        report = validate(ref, [a, b], limit=100)
    assert report.images == 100 and report.dataset == "digits"
    ref_score, fp32_score, fp16_score = report.rows()
    assert (ref_score.backend, fp32_score.backend, fp16_score.precision) == ("pytorch", "onnxruntime", "fp16")
    assert fp32_score.top1_error == pytest.approx(ref_score.top1_error) and fp32_score.top1_agreement == 1.0
    assert fp32_score.max_abs_logit_error < 1e-3 and fp32_score.delta_top1_pp == pytest.approx(0)
    assert abs(fp16_score.delta_top1_pp) <= 1.0 and fp16_score.top1_agreement >= 0.98
    assert 0 <= ref_score.top1_error <= 100 and ref_score.top5_error <= ref_score.top1_error
    assert "| artifact | backend |" in report.markdown()


def test_cli_table_json_report_and_gate(trained, tmp_path) -> None:
    checkpoint, fp32, fp16 = trained
    args = ["validate", "--checkpoint", str(checkpoint), "--artifacts", str(fp32), str(fp16), "--limit", "64"]
    result = invoke(*args, "--json", "--report", str(tmp_path / "v.md"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [a["precision"] for a in data["artifacts"]] == ["fp32", "fp16"] and data["images"] == 64
    assert (tmp_path / "v.md").read_text().startswith("# Validation: model.pt")
    assert "top-1 agree" in result.stderr  # the table still goes to the human (stderr under --json)
    assert invoke(*args, "--max-top1-drop", "5").exit_code == 0


def test_gate_fails_with_the_offenders_named() -> None:
    ref = Score("m.pt", "pytorch", "fp32", top1_error=2.0)
    bad = Score("m.int8.onnx", "onnxruntime", "int8", top1_error=3.5, delta_top1_pp=1.5)
    report = ValidationReport("digits", 10, ref, [bad])
    check_gate(report, 2.0)
    with pytest.raises(AccuracyGateError, match=r"more than 0.5 pp: m.int8.onnx \+1.50 pp"):
        check_gate(report, 0.5)
    assert AccuracyGateError.exit_code == 4


def test_artifact_of_another_model_is_refused(trained, tmp_path) -> None:
    from resnet_deploy import build_model, save_checkpoint
    from resnet_deploy.export import export_onnx
    from resnet_deploy.model_source import open_model

    checkpoint, _, _ = trained
    other = open_model(save_checkpoint(build_model(20), tmp_path / "other.pt", {"dataset": "digits"}))
    export_onnx(other.model, tmp_path / "other.onnx", other.metadata, verify=False)
    with open_backend(checkpoint) as ref, open_backend(tmp_path / "other.onnx") as art:
        with pytest.raises(ResnetDeployError, match="exported from another checkpoint"):
            validate(ref, [art], limit=8)


def test_backend_input_checks_and_close(trained) -> None:
    _, fp32, _ = trained
    backend = open_backend(fp32)
    with pytest.raises(ResnetDeployError, match=r"expects input \(N, 3, 32, 32\) float32, got \(2, 3, 64, 64\)"):
        backend.infer(np.zeros((2, 3, 64, 64), np.float32))
    with pytest.raises(ResnetDeployError, match="expects float32 input, got float64"):
        backend.infer(np.zeros((2, 3, 32, 32)))
    assert backend.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)
    backend.close()
    with pytest.raises(ResnetDeployError, match="was closed"):
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))


def test_fp16_file_is_half_the_size_with_float32_io(trained) -> None:
    import onnx
    import onnxruntime as ort

    _, fp32, fp16 = trained
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    session = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].type == "tensor(float)"
    model = onnx.load(str(fp16))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    dtypes = {i.data_type for i in model.graph.initializer if i.name in conv_weights}
    assert dtypes == {onnx.TensorProto.FLOAT16}
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16"


def test_cli_errors(trained, tmp_path) -> None:
    checkpoint, fp32, fp16 = trained
    assert_one_line_error(invoke("validate", "--checkpoint", str(checkpoint), str(tmp_path / "x.onnx")), "not found")
    assert_one_line_error(invoke("validate", "--checkpoint", str(checkpoint), str(tmp_path / "x.txt")), "not found")
    (tmp_path / "model.bin.engine").write_bytes(b"x")
    assert_one_line_error(
        invoke("validate", "--checkpoint", str(checkpoint), str(tmp_path / "model.bin.engine")),
        "model.bin.engine.json not found: engines built by `resnet-deploy build-engine` carry it",
    )
    assert_one_line_error(
        invoke("validate", "--checkpoint", str(checkpoint), str(fp32), "--max-top1-drop", "-1"), "not in the range x>=0"
    )
    assert_one_line_error(invoke("convert", str(fp16), "--fp16", "-o", str(tmp_path / "y.onnx")), "not an FP32 model")
    assert invoke("convert", str(fp32)).exit_code == 2  # a precision must be chosen
    assert not (tmp_path / "y.onnx").exists()


def test_class_counts_must_agree(trained, tmp_path) -> None:
    from resnet_deploy.export import export_onnx
    from resnet_deploy.model_source import open_model
    from tests.factories import write_tiny_cifar

    checkpoint, fp32, _ = trained
    five = open_model(depth=20, num_classes=5)
    export_onnx(five.model, tmp_path / "five.onnx", five.metadata, verify=False)
    assert_one_line_error(
        invoke("validate", "--checkpoint", str(checkpoint), str(tmp_path / "five.onnx")),
        "five.onnx has 5 classes but the reference has 10",
    )
    cifar100 = write_tiny_cifar(tmp_path / "c100", kind="cifar100")
    assert_one_line_error(
        invoke("validate", "--checkpoint", str(checkpoint), str(fp32), "--data", f"cifar100:{cifar100}"),
        "has 100 classes but the model has 10; pass the right --data",
    )
