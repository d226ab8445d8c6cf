"""`validate` and `convert --fp16`: every artifact scored against the original on the same images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet_deploy.errors import AccuracyGateError, ResnetDeployError
from resnet_deploy.evaluate.binomial import METHOD as EXACT_METHOD
from resnet_deploy.evaluate.binomial import clopper_pearson
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
    """An outside model has no checkpoint: its FP32 ONNX is the reference; alone, it is scored alone.
    Any other artifact may be the reference too: the FP16 twin, with every change measured against it."""
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
    against_fp16 = run(plan(ValidateJob(fp16, (fp32,), **ort)))
    assert (against_fp16.reference.artifact, against_fp16.reference.precision) == ("r20.fp16.onnx", "fp16")
    fp32_row = against_fp16.artifacts[0]
    assert fp32_row.top1_error == pytest.approx(both.reference.top1_error)
    assert (fp32_row.worse, fp32_row.better) == (both.artifacts[0].better, both.artifacts[0].worse)
    assert fp32_row.delta_top1_pp == pytest.approx(-both.artifacts[0].delta_top1_pp)


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


def exact_percent(errors: int, images: int) -> tuple[float, float]:
    """The Clopper-Pearson 95% interval of ``errors`` of ``images``, in percent."""
    low, high = clopper_pearson(errors, images)
    return 100 * low, 100 * high


def assert_exact_intervals(row: Score | dict, images: int) -> None:
    """Each error rate holds its count of ``images`` and the exact interval of that count around it."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    for k in ("top1", "top5"):
        error, low, high = get(f"{k}_error"), get(f"{k}_error_low"), get(f"{k}_error_high")
        errors = round(error * images / 100)
        assert error == pytest.approx(100 * errors / images)
        assert (low, high) == pytest.approx(exact_percent(errors, images), abs=1e-9)
        assert low <= error <= high


def test_labels_only_scores_each_artifact_as_the_reference_row_of_a_paired_run(trained) -> None:
    """No reference: the same images give each file the error it has as a row of a paired run, with
    its exact interval, and nothing that needs a reference (no change, agreement or logit error)."""
    checkpoint, fp32, fp16 = trained
    ort = {"backend": "onnxruntime"}
    with open_backend(checkpoint) as ref, open_backend(fp32, **ort) as a, open_backend(fp16, **ort) as b:
        paired = validate(ref, [a, b], limit=100)
        labels = validate(None, [a, b], limit=100)
    assert labels.reference is None and labels.labels_only and not paired.labels_only
    assert (labels.images, labels.dataset) == (100, "digits")  # the dataset fp32's metadata records
    fp32_row, fp16_row = labels.rows()
    assert fp32_row.top1_error == pytest.approx(paired.reference.top1_error)
    assert (fp32_row.top1_error, fp32_row.top5_error) == pytest.approx(
        (paired.rows()[1].top1_error, paired.rows()[1].top5_error)
    )
    assert (fp16_row.top1_error, fp16_row.top5_error) == pytest.approx(
        (paired.rows()[2].top1_error, paired.rows()[2].top5_error)
    )
    for row in [*labels.rows(), *paired.rows()]:
        assert_exact_intervals(row, 100)
    data = labels.to_dict()
    assert (data["labels_only"], data["reference"], data["statistics"]) == (True, None, EXACT_METHOD)
    assert not {"delta_top1_pp", "worse", "top1_agreement", "max_abs_logit_error"} & set(data["artifacts"][0])
    assert data["artifacts"][1]["top1_error_high"] == fp16_row.top1_error_high
    head, first, _, legend = labels.table().splitlines()
    assert head.split()[3:] == ["top-1", "err", "[95%", "CI]", "top-5", "err", "[95%", "CI]", "img/s"]
    cell = f"{fp32_row.top1_error:.2f}% [{fp32_row.top1_error_low:.2f}, {fp32_row.top1_error_high:.2f}]"
    assert first.startswith("resnet20.onnx") and cell in first
    assert "exact Clopper-Pearson binomial interval" in legend and "no reference" in legend
    markdown = labels.markdown()
    assert markdown.startswith("# Validation against the labels: resnet20.onnx, r20.fp16.onnx")
    assert f"| resnet20.onnx | onnxruntime | fp32 | {cell} |" in markdown and "Δ" not in markdown


def test_cli_labels_only_takes_the_dataset_of_the_artifact(trained, tmp_path) -> None:
    _, fp32, _ = trained
    args = ["validate", "--labels-only", str(fp32), "--limit", "100", "--backend", "onnxruntime"]
    result = invoke(*args, "--json", "--report", str(tmp_path / "v.md"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["dataset"], data["images"], data["reference"], data["labels_only"]) == ("digits", 100, None, True)
    (row,) = data["artifacts"]
    assert row["artifact"] == "resnet20.onnx" and row["images"] == 100
    assert_exact_intervals(row, 100)
    assert "no reference: each artifact is scored against the labels alone" in result.stderr
    assert "top-1 err [95% CI]" in result.stderr
    assert f"Statistics: {EXACT_METHOD}." in (tmp_path / "v.md").read_text()


@pytest.fixture(scope="module")
def int8(trained, tmp_path_factory):
    """The trained model's INT8 Q/DQ ONNX (min-max ranges of 64 images)."""
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    _, fp32, _ = trained
    path = tmp_path_factory.mktemp("int8") / "r20.int8.onnx"
    return calibrate_onnx(fp32, path, method="minmax", count=64, cache_dir=None).path


def test_an_int8_onnx_is_the_reference_and_every_change_is_against_it(trained, int8) -> None:
    """The FP32 ONNX against its INT8 form: the counts and changes of INT8 against FP32, reversed."""
    from resnet_deploy.pipeline import ValidateJob, plan, run

    _, fp32, _ = trained
    against_fp32 = run(plan(ValidateJob(fp32, (int8,), backend="onnxruntime", limit=100)))
    result = invoke(
        "validate", "--reference", str(int8), str(fp32), "--limit", "100", "--backend", "onnxruntime", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["reference"]["artifact"], data["reference"]["precision"], data["labels_only"]) == (
        "r20.int8.onnx",
        "int8",
        False,
    )
    (fp32_row,) = data["artifacts"]
    int8_row = against_fp32.artifacts[0]
    assert (fp32_row["worse"], fp32_row["better"]) == (int8_row.better, int8_row.worse)
    assert fp32_row["delta_top1_pp"] == pytest.approx(fp32_row["top1_error"] - data["reference"]["top1_error"])
    assert fp32_row["delta_top1_pp"] == pytest.approx(fp32_row["worse"] - fp32_row["better"])  # 100 images: 1 pp each
    expected = change_from_counts(100, fp32_row["worse"], fp32_row["better"])
    assert (fp32_row["delta_top1_low_pp"], fp32_row["delta_top1_high_pp"]) == (expected.low_pp, expected.high_pp)
    assert data["reference"]["top1_error"] == pytest.approx(int8_row.top1_error)
    assert f"reference: {int8} (int8, onnxruntime); every Δ is against it" in result.stderr


def test_the_markdown_report_names_the_reference(trained, int8, tmp_path) -> None:
    from resnet_deploy.pipeline import ValidateJob, plan, run

    _, fp32, _ = trained
    run(plan(ValidateJob(int8, (fp32,), backend="onnxruntime", limit=20, report=tmp_path / "v.md")))
    markdown = (tmp_path / "v.md").read_text()
    assert markdown.startswith("# Validation: r20.int8.onnx")
    assert "Δ: percentage points against the reference, r20.int8.onnx (int8, onnxruntime; positive = worse)" in markdown


def test_an_engine_is_the_reference(tiny_onnx, tmp_path, monkeypatch) -> None:
    """A TensorRT engine (the stand-in of tests/trt_standin.py, on its fake CUDA device) as the reference,
    and scored alone against the labels: the same top-1 error either way."""
    from resnet_deploy.pipeline import ValidateJob, plan, run
    from tests.factories import write_image_folder
    from tests.runtime.test_tensorrt_runner import build, device

    classes = tuple(f"c{i}" for i in range(10))
    write_image_folder(tmp_path / "data" / "train", classes=classes, per_class=1, size=12)
    write_image_folder(tmp_path / "data" / "val", classes=classes, per_class=2, size=12)
    spec = f"imagefolder:{tmp_path / 'data'}"
    with device(monkeypatch, "10.16"):
        engine = build(tiny_onnx, tmp_path / "tiny.engine", "10.16")
        report = run(plan(ValidateJob(engine, (tiny_onnx,), data=spec, backend="onnxruntime")))
        alone = run(plan(ValidateJob(artifacts=(engine,), data=spec, labels_only=True)))
    assert (report.reference.artifact, report.reference.backend, report.images) == ("tiny.engine", "tensorrt", 20)
    (onnx_row,) = report.artifacts
    assert onnx_row.delta_top1_pp == pytest.approx(onnx_row.top1_error - report.reference.top1_error)
    expected = change_from_counts(20, onnx_row.worse, onnx_row.better)
    assert (onnx_row.delta_top1_low_pp, onnx_row.delta_top1_high_pp) == (expected.low_pp, expected.high_pp)
    assert onnx_row.worse + onnx_row.better <= round(20 * (1 - onnx_row.top1_agreement))  # discordant: disagree
    (engine_alone,) = alone.artifacts
    assert (engine_alone.backend, engine_alone.top1_error) == ("tensorrt", report.reference.top1_error)
    assert_exact_intervals(engine_alone, 20)


def test_labels_only_refusals_are_one_line(trained, tiny_onnx, tmp_path) -> None:
    from resnet_deploy.errors import ValidationError
    from resnet_deploy.pipeline import ValidateJob, plan

    checkpoint, fp32, _ = trained
    assert_one_line_error(
        invoke("validate", "--labels-only", str(fp32), "--max-top1-drop", "1"),
        "--max-top1-drop gates each artifact's change against a reference, and --labels-only has none: "
        "pass a reference as --checkpoint instead, or drop --max-top1-drop",
    )
    assert_one_line_error(
        invoke("validate", "--labels-only", "--checkpoint", str(checkpoint), str(fp32)),
        "--labels-only scores the artifacts against the labels alone: leave out --checkpoint",
    )
    assert_one_line_error(invoke("validate", "--labels-only"), "--labels-only scores artifacts: name at least one")
    assert_one_line_error(
        invoke("validate", str(fp32)),
        "no reference to compare with: pass --checkpoint (a checkpoint, or any artifact: ONNX or engine), "
        "or --labels-only to score the artifacts against the labels alone",
    )
    assert_one_line_error(
        invoke("validate", "--labels-only", str(tiny_onnx)),
        "no reference and no dataset: tiny.onnx records none (random or foreign weights); pass --data SPEC",
    )
    assert_one_line_error(
        invoke("validate", "--labels-only", str(fp32), str(tiny_onnx)),
        "tiny.onnx takes 8x8 inputs but resnet20.onnx takes 32x32; validate artifacts of one input size together",
    )
    (tmp_path / "m.txt").write_bytes(b"x")
    assert_one_line_error(
        invoke("validate", "--reference", str(tmp_path / "m.txt"), str(fp32)),
        "the reference is the original model (a .pt/.pth checkpoint) or any artifact of it (an .onnx, or a "
        f"TensorRT .engine/.plan/.trt engine), not {tmp_path / 'm.txt'}",
    )
    with pytest.raises(ValidationError, match=r"^`max_top1_drop` gates .* `labels_only` has none") as refused:
        plan(ValidateJob(artifacts=(fp32,), labels_only=True, max_top1_drop=0.5))
    assert refused.value.field == "max_top1_drop"


def test_labels_only_artifacts_must_record_one_dataset(trained, tmp_path) -> None:
    import onnx

    _, fp32, _ = trained
    model = onnx.load(str(fp32))
    next(p for p in model.metadata_props if p.key == "dataset").value = "cifar10:/elsewhere"
    onnx.save(model, str(tmp_path / "other.onnx"))
    assert_one_line_error(
        invoke("validate", "--labels-only", str(fp32), str(tmp_path / "other.onnx")),
        "the artifacts record different datasets (digits, cifar10:/elsewhere); pass --data SPEC to score them all",
    )


def test_an_engine_reference_that_cannot_run_here_is_one_line(tiny_onnx, tmp_path, monkeypatch) -> None:
    from resnet_deploy.runtime import machine

    monkeypatch.setattr(machine, "gpu_present", lambda: False)
    (tmp_path / "m.engine").write_bytes(b"not a plan")
    assert_one_line_error(
        invoke("validate", "--reference", str(tmp_path / "m.engine"), str(tiny_onnx)),
        f"the reference {tmp_path / 'm.engine'} cannot run here: no NVIDIA GPU here to run TensorRT engines (",
    )


def test_a_labels_only_report_has_no_changes_to_gate() -> None:
    from resnet_deploy.errors import ValidationError

    report = ValidationReport("digits", 100, None, [Score("m.onnx", "onnxruntime", "int8", 100, top1_error=3.0)])
    check_gate(report, None)
    with pytest.raises(ValidationError, match="scored against the labels alone") as refused:
        check_gate(report, 0.5)
    assert refused.value.field == "max_top1_drop"
