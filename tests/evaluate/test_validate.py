"""`validate` and `convert --fp16`: every artifact scored against the original on the same images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet_deploy.errors import AccuracyGateError, ResnetDeployError
from resnet_deploy.evaluate.paired_stats import METHOD, change_from_counts
from resnet_deploy.evaluate.validate import Score, ValidationReport, check_gate, validate
from resnet_deploy.runtime import open_backend
from tests.cli_helpers import assert_one_line_error, invoke


@pytest.fixture(scope="module")
def trained(trained_resnet20, tmp_path_factory):
    """The shared trained ResNet-20: checkpoint, FP32 ONNX and its FP16 twin."""
    from resnet_deploy.convert.fp16 import convert_to_fp16

    checkpoint, fp32 = trained_resnet20
    fp16 = tmp_path_factory.mktemp("fp16") / "r20.fp16.onnx"
    convert_to_fp16(fp32, fp16)
    return checkpoint, fp32, fp16


def test_validate_scores_every_artifact_against_the_reference(trained) -> None:
    checkpoint, fp32, fp16 = trained
    ort = {"backend": "onnxruntime"}  # auto times OpenVINO against it: on a model this small either may win
    with open_backend(checkpoint) as ref, open_backend(fp32, **ort) as a, open_backend(fp16, **ort) as b:
        report = validate(ref, [a, b], limit=100)
    assert report.images == 100 and report.dataset == "digits"
    ref_score, fp32_score, fp16_score = report.rows()
    assert (ref_score.backend, fp32_score.backend, fp16_score.precision) == ("pytorch", "onnxruntime", "fp16")
    assert fp32_score.top1_error == pytest.approx(ref_score.top1_error) and fp32_score.top1_agreement == 1.0
    assert fp32_score.max_abs_logit_error < 1e-3 and fp32_score.delta_top1_pp == pytest.approx(0)
    assert abs(fp16_score.delta_top1_pp) <= 1.0 and fp16_score.top1_agreement >= 0.98
    assert 0 <= ref_score.top1_error <= 100 and ref_score.top5_error <= ref_score.top1_error
    assert "| artifact | backend |" in report.markdown()


def test_an_artifact_identical_to_the_reference_changes_nothing_yet_bounds_a_change(trained) -> None:
    """Same top-1 on all 100 images: 0 worse, 0 better, and still an interval of about +-3.84/100."""
    checkpoint, fp32, fp16 = trained
    with open_backend(checkpoint) as ref, open_backend(fp32) as a, open_backend(fp16) as b:
        report = validate(ref, [a, b], limit=100)
    ref_score, same, half = report.rows()
    assert (same.worse, same.better, same.p_value, same.significant) == (0, 0, 1.0, False)
    assert same.delta_top1_low_pp < 0 < same.delta_top1_high_pp
    assert same.delta_top1_high_pp == pytest.approx(100 * 1.96**2 / (100 + 1.96**2), abs=1e-3)  # 3.70 pp
    assert same.delta_top1_low_pp == pytest.approx(-same.delta_top1_high_pp)
    assert half.worse - half.better == pytest.approx(half.delta_top1_pp)  # 100 images: one image is 1 pp
    expected = change_from_counts(100, half.worse, half.better)
    assert (half.delta_top1_low_pp, half.delta_top1_high_pp, half.p_value) == (
        expected.low_pp,
        expected.high_pp,
        expected.p_value,
    )
    neutral = (ref_score.worse, ref_score.better, ref_score.delta_top1_low_pp, ref_score.delta_top1_high_pp)
    assert neutral == (0, 0, 0.0, 0.0) and (ref_score.p_value, ref_score.significant) == (1.0, False)
    row = next(line for line in report.table().splitlines() if line.startswith("resnet20.onnx"))
    assert "+0.00 pp [-3.70, +3.70]" in row and row.split()[8] == "0/0"


def test_cli_table_json_report_and_gate(trained, tmp_path) -> None:
    checkpoint, fp32, fp16 = trained
    args = ["validate", "--checkpoint", str(checkpoint), "--artifacts", str(fp32), str(fp16), "--limit", "64"]
    result = invoke(*args, "--json", "--report", str(tmp_path / "v.md"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [a["precision"] for a in data["artifacts"]] == ["fp32", "fp16"] and data["images"] == 64
    markdown = (tmp_path / "v.md").read_text()
    assert markdown.startswith("# Validation: model.pt")
    assert "top-1 agree" in result.stderr  # the table still goes to the human (stderr under --json)
    assert "Δ top-1 [95% CI]" in result.stderr and "McNemar p < 0.05" in result.stderr  # the legend too
    assert data["statistics"] == METHOD and f"Statistics: {METHOD}." in markdown
    for row in data["artifacts"]:
        assert_markdown_row_carries(markdown, row)
    assert invoke(*args, "--max-top1-drop", "5").exit_code == 0
    assert invoke(*args, "--max-top1-drop", "5", "--gate-on", "estimate").exit_code == 0


def assert_markdown_row_carries(markdown: str, row: dict) -> None:
    """The report's row of ``row["artifact"]`` shows its JSON change, interval, counts, p and verdict."""
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {row['artifact']} |"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    star = "\\*" if row["significant"] else ""
    interval = f"{row['delta_top1_pp']:+.2f} pp [{row['delta_top1_low_pp']:+.2f}, {row['delta_top1_high_pp']:+.2f}]"
    assert cells[4:7] == [interval + star, f"{row['worse']}/{row['better']}", f"{row['p_value']:.2g}"]
    assert {"worse", "better", "delta_top1_low_pp", "delta_top1_high_pp", "p_value", "significant"} <= set(row)


def test_cli_upper_bound_gate_fails_where_the_estimate_gate_passes(trained) -> None:
    """64 identical predictions: the estimate is +0.00 pp, but 64 images bound a change only at 5.66 pp."""
    checkpoint, fp32, _ = trained
    args = ["validate", "--checkpoint", str(checkpoint), str(fp32), "--limit", "64", "--max-top1-drop", "2"]
    assert invoke(*args).exit_code == 0
    assert_one_line_error(
        invoke(*args, "--gate-on", "upper-bound"),
        "top-1 error rose more than 2 pp (upper bound of the 95% interval): resnet20.onnx +5.66 pp; "
        "64 images cannot bound a change below 5.66 pp even when every image agrees",
        code=4,
    )


def scored(artifact: str, images: int, worse: int, better: int) -> Score:
    """An artifact's row as ``validate`` fills it, from its discordant counts."""
    change = change_from_counts(images, worse, better)
    score = Score(artifact, "onnxruntime", "int8", images, top1_error=2.0 + change.delta_pp)
    score.delta_top1_pp = change.delta_pp
    score.record_change(change)
    return score


def test_gate_fails_with_the_offenders_named() -> None:
    ref = Score("m.pt", "pytorch", "fp32", top1_error=2.0)
    report = ValidationReport("digits", 200, ref, [scored("m.int8.onnx", 200, 3, 0), scored("m.fp16.onnx", 200, 0, 0)])
    check_gate(report, 2.0)
    with pytest.raises(AccuracyGateError, match=r"more than 0.5 pp \(point estimate\): m.int8.onnx \+1.50 pp$"):
        check_gate(report, 0.5)
    assert AccuracyGateError.exit_code == 4


def test_the_upper_bound_gate_fails_where_the_estimate_passes() -> None:
    """1 worse of 360 images: +0.28 pp, within a 0.5 pp budget; its interval reaches +1.56 pp."""
    ref = Score("r20.pt", "pytorch", "fp32", images=360, top1_error=2.0)
    report = ValidationReport("digits", 360, ref, [scored("r20.int8.onnx", 360, 1, 0)])
    check_gate(report, 0.5)
    check_gate(report, 0.5, gate="estimate")
    with pytest.raises(AccuracyGateError) as failed:
        check_gate(report, 0.5, gate="upper-bound")
    assert str(failed.value) == (
        "top-1 error rose more than 0.5 pp (upper bound of the 95% interval): r20.int8.onnx +1.56 pp; "
        "360 images cannot bound a change below 1.06 pp even when every image agrees: "
        "validate on more images, or gate on the estimate"
    )
    check_gate(report, 1.6, gate="upper-bound")
    with pytest.raises(
        AccuracyGateError,
        match=r"more than 1.5 pp \(upper bound of the 95% interval\): r20.int8.onnx "
        r"\+1.56 pp$",
    ):
        check_gate(report, 1.5, gate="upper-bound")  # 1.06 pp is reachable: no advice about the image count
    with pytest.raises(ValueError, match="unknown gate 'upper'"):
        check_gate(report, 0.5, gate="upper")


def test_text_table_marks_a_significant_change_and_explains_the_interval() -> None:
    ref = Score("r20.pt", "pytorch", "fp32", images=1000, top1_error=2.0)
    report = ValidationReport("digits", 1000, ref, [scored("a.onnx", 1000, 30, 10), scored("b.onnx", 1000, 1, 0)])
    lines = report.table().splitlines()
    assert lines[0].split()[3:10] == ["top-1", "err", "Δ", "top-1", "[95%", "CI]", "worse/better"]
    a_row, b_row = lines[2], lines[3]
    assert "+2.00 pp [+0.80, +3.36]*" in a_row and a_row.split()[8] == "30/10"
    assert "+0.10 pp [-0.28, +0.56] " in b_row and b_row.split()[8] == "1/0"  # no star; a space keeps it aligned
    assert a_row.index("]*") == b_row.index("] ")
    assert lines[4].startswith("Δ top-1 [95% CI]: the change in top-1 error on the same 1000 images")
    assert lines[5].endswith("* significant: the interval excludes 0 (McNemar p < 0.05).")
    md = report.markdown()
    assert "| a.onnx | onnxruntime | int8 | 4.00% | +2.00 pp [+0.80, +3.36]\\* | 30/10 | 0.0016 |" in md
    assert "| r20.pt | pytorch | fp32 | 2.00% | - | - | - |" in md


def test_artifact_of_another_model_is_refused(trained, tmp_path) -> None:
    from resnet_deploy import build_model, save_checkpoint
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

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
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model
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


def test_an_fp32_onnx_is_a_reference_too_and_may_stand_alone(trained) -> None:
    """An outside model has no checkpoint: its FP32 ONNX is the reference; alone, it is scored alone."""
    from resnet_deploy.pipeline import ValidateJob, plan, run

    checkpoint, fp32, fp16 = trained
    ort = {"backend": "onnxruntime", "limit": 60}
    both = run(plan(ValidateJob(fp32, (fp16,), **ort)))
    from_checkpoint = run(plan(ValidateJob(checkpoint, (fp16,), **ort)))
    assert (both.reference.backend, both.reference.precision, both.images) == ("onnxruntime", "fp32", 60)
    assert both.reference.top1_error == pytest.approx(from_checkpoint.reference.top1_error)
    assert both.artifacts[0].top1_error == pytest.approx(from_checkpoint.artifacts[0].top1_error)
    alone = run(plan(ValidateJob(fp32, (), **ort)))
    assert alone.artifacts == [] and alone.reference.top1_error == pytest.approx(both.reference.top1_error)
    with pytest.raises(ResnetDeployError, match=r"the reference .* is fp16: the original model is FP32") as info:
        run(plan(ValidateJob(fp16, (fp32,), **ort)))
    assert info.value.field == "checkpoint"


@pytest.mark.gpu
def test_a_checkpoint_on_cuda_scores_as_on_the_cpu(trained) -> None:
    """The PyTorch backend on the GPU against itself on the CPU, on all test images. Tolerance: cuDNN runs
    FP32 convolutions in TF32 on Ampere and later (PyTorch's default), rounding each input to 10 mantissa
    bits (relative 2^-11); over ResNet-20's 19 convolutions the logits (|logit| < 20 here) move by a few
    hundredths at most, so 0.05 bounds them and only near-ties could change their top-1."""
    checkpoint, _, _ = trained
    with open_backend(checkpoint, device="cpu") as cpu, open_backend(checkpoint, device="cuda") as gpu:
        report = validate(cpu, [gpu])
    _, on_gpu = report.rows()
    assert on_gpu.backend == "pytorch" and report.images >= 300
    assert on_gpu.max_abs_logit_error <= 0.05
    assert on_gpu.top1_agreement >= 0.99 and abs(on_gpu.delta_top1_pp) <= 1.0
