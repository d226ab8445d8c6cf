"""``DeepStreamJob``: a Gst-nvinfer config of documented keys only, with the values each artifact calls for,
the normalisation's cost measured and equal to what validate's paired statistics give for the same two
preprocessings, refusals in one line, and files written whole, never over a user's."""

from __future__ import annotations

import configparser
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from resnet_deploy import plan, run
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar, EngineTargets, sidecar_path
from resnet_deploy.artifacts.onnx_io import load_onnx, onnx_props, read_onnx_props, write_props
from resnet_deploy.errors import OutputPathError, ResnetDeployError, ValidationError
from resnet_deploy.pipeline.deepstream import DeepStreamJob
from resnet_deploy.serve.nvinfer_keys import PROPERTY_KEYS, check_property
from resnet_deploy.serve.nvinfer_preprocess import NVINFER_FIT, Normalisation, best_scale, for_model, labelled
from tests.cli_helpers import assert_one_line_error, invoke

STD = (0.2, 0.25, 0.3)  # per-channel stds one nvinfer scale cannot express


def _typed(key: str, value: str) -> bool:
    """``value`` reads as the documented type of ``key`` (what check_property writes, read back)."""
    kind = PROPERTY_KEYS[key]
    items = value.split(";") if kind.endswith("list") else [value]
    scalar = kind.removesuffix(" list").replace("integer", "integer").rstrip("s")
    read = {"integer": int, "float": float, "boolean": lambda v: {"0": False, "1": True}[v], "string": str}
    parsed = [read[scalar](v) for v in items]
    return check_property(key, parsed if kind.endswith("list") else parsed[0]) == value


def properties(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",), delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(path.read_text())
    assert parser.sections() == ["property"]
    return dict(parser["property"])


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch) -> None:
    monkeypatch.setattr("resnet_deploy.runtime.machine.gpu_present", lambda: False)


@pytest.fixture(scope="module")
def digits_onnx(trained_resnet20) -> Path:
    return trained_resnet20[1]


@pytest.fixture(scope="module")
def three_stds(digits_onnx, tmp_path_factory) -> Path:
    """The trained digits model recording three different stds: its exact preprocessing is then one nvinfer
    cannot express."""
    model = load_onnx(digits_onnx)
    write_props(model, {**onnx_props(model), "std": json.dumps(list(STD))})
    path = tmp_path_factory.mktemp("stds") / "r20.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_every_key_is_documented_and_every_value_is_the_model_s(digits_onnx, tmp_path) -> None:
    result = run(plan(DeepStreamJob(digits_onnx, output=tmp_path / "ds", measure=False)))
    props = properties(result.config)
    assert set(props) <= set(PROPERTY_KEYS) and all(_typed(key, value) for key, value in props.items())
    mean, std = json.loads(read_onnx_props(digits_onnx)["mean"]), json.loads(read_onnx_props(digits_onnx)["std"])
    assert len(set(std)) == 1 and result.exact  # digits are grey: one std, so nvinfer's scale is exact
    assert props == {
        "gpu-id": "0", "gie-unique-id": "1", "process-mode": "1", "network-type": "1",
        "onnx-file": props["onnx-file"],
        "labelfile-path": "labels.txt", "batch-size": "1", "network-mode": "0", "infer-dims": "3;32;32",
        "network-input-order": "0", "model-color-format": "0",
        "net-scale-factor": repr(1 / (255 * std[0])), "offsets": ";".join(repr(255 * m) for m in mean),
        "maintain-aspect-ratio": "0", "scaling-filter": "1", "output-blob-names": "logits",
        "classifier-threshold": "0.0",
    }  # fmt: skip
    assert (result.config.parent / props["onnx-file"]).resolve() == digits_onnx.resolve()  # relative to the config
    assert float(props["net-scale-factor"]) == pytest.approx(1 / (255 * std[0]), rel=1e-15)
    assert result.config.name == "config_infer_resnet20.txt" and result.labels == tmp_path / "ds" / "labels.txt"
    assert result.labels.read_text() == "0;1;2;3;4;5;6;7;8;9\n"  # one line: the one output's labels
    assert "Not measured (measure=False)" in result.text and "exact: every channel has the same std" in result.text


def test_one_scale_for_three_stds_is_the_least_squares_one() -> None:
    scale = best_scale(STD)
    assert scale == pytest.approx(sum(STD) / (255 * sum(s * s for s in STD)))
    # no other single scale has a smaller sum of squared relative input errors
    errors = [sum((s * 255 * sd - 1) ** 2 for sd in STD) for s in np.linspace(scale * 0.9, scale * 1.1, 201)]
    assert min(errors) == pytest.approx(sum((scale * 255 * sd - 1) ** 2 for sd in STD), rel=1e-6)
    norm = for_model((0.5, 0.4, 0.3), STD)
    assert norm.offsets == pytest.approx((127.5, 102.0, 76.5))
    pixels = np.full((1, 3, 1, 1), 200.0)
    assert norm.apply(pixels).ravel() == pytest.approx([scale * 72.5, scale * 98.0, scale * 123.5], rel=1e-6)
    classes, has = labelled(np.array([[-1.0, -0.5], [0.2, 0.7], [0.3, 0.1]]), threshold=0.25)
    assert classes.tolist() == [1, 1, 0] and has.tolist() == [False, True, True]  # parser: above 0 and threshold


def test_the_measured_cost_is_what_validate_pairs_for_the_same_two_preprocessings(three_stds, tmp_path) -> None:
    from resnet_deploy import runtime
    from resnet_deploy.evaluate.validate import validate

    result = run(plan(DeepStreamJob(three_stds, output=tmp_path, data="digits", backend="onnxruntime")))
    cost, scale = result.cost, best_scale(STD)
    assert cost is not None and not result.exact and cost.images == 360 and cost.unlabelled == 0
    props = properties(result.config)
    assert float(props["net-scale-factor"]) == scale and props["offsets"] == result.text.split("offsets=")[1].split()[0]

    # validate scores the model, and a copy whose recorded std is the one nvinfer's scale stands for
    model = load_onnx(three_stds)
    write_props(model, {**onnx_props(model), "std": json.dumps([1 / (255 * scale)] * 3)})
    nvinfer_like = tmp_path / "nvinfer-like.onnx"
    nvinfer_like.write_bytes(model.SerializeToString())
    with (
        runtime.open_backend(three_stds, "onnxruntime") as ref,
        runtime.open_backend(nvinfer_like, "onnxruntime") as art,
    ):
        report = validate(ref, [art], data="digits")
    assert NVINFER_FIT.resize == "stretch"  # digits are 32x32: both fit the same way, as validate does
    assert report.reference is not None and report.images == cost.images
    assert (
        cost.exact.error_pct == report.reference.top1_error and cost.nvinfer.error_pct == report.artifacts[0].top1_error
    )
    change = report.artifacts[0].top1_change()
    assert (cost.change.worse, cost.change.better) == (change.worse, change.better)
    assert (cost.change.low_pp, cost.change.high_pp, cost.change.p_value) == (
        change.low_pp,
        change.high_pp,
        change.p_value,
    )
    assert cost.change.delta_pp == pytest.approx(change.delta_pp, abs=1e-9)  # validate's is a difference of errors
    text = result.config.read_text()
    assert f"  change: {change.describe()}, McNemar p = {change.p_value:.3g}" in text
    assert f"top-1 error, exact preprocessing:  {cost.exact.describe()}" in text
    errors = ", ".join(f"{100 * (scale * 255 * s - 1):+.2f}%" for s in STD)
    assert f"input is then off by {errors} (R, G, B)" in text


def test_precision_sets_network_mode_and_an_int8_onnx_needs_no_calibration_file(digits_onnx, tmp_path) -> None:
    from resnet_deploy.convert.fp16 import convert_to_fp16
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    fp16 = convert_to_fp16(digits_onnx, tmp_path / "r20.fp16.onnx").path
    int8 = calibrate_onnx(digits_onnx, tmp_path / "r20.int8.onnx", method="minmax", count=32, cache_dir=None).path
    modes = {}
    for model in (digits_onnx, fp16, int8):
        props = properties(run(plan(DeepStreamJob(model, output=tmp_path / model.stem, measure=False))).config)
        modes[model.name] = props["network-mode"]
        assert "int8-calib-file" not in props and "model-engine-file" not in props
    assert modes == {"resnet20.onnx": "0", "r20.fp16.onnx": "2", "r20.int8.onnx": "1"}


def _engine(tmp_path: Path, onnx: Path, **fields) -> Path:
    """A stand-in engine file with the sidecar `build-engine` writes beside it."""
    engine = tmp_path / "r20.int8.engine"
    engine.write_bytes(b"serialized engine")
    record = EngineSidecar(
        engine_bytes=engine.stat().st_size,
        engine_sha256=hashlib.sha256(engine.read_bytes()).hexdigest(),
        backend="tensorrt",
        backend_version="10.3.0",
        model=read_onnx_props(onnx),
        engine=engine.name,
        precision="int8",
        source_onnx=str(onnx),
        profile={"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]},
        **fields,
    )
    sidecar_path(engine).write_text(record.to_text())
    return engine


def test_an_implicit_int8_dla_engine_keeps_its_onnx_and_cache_to_rebuild(digits_onnx, tmp_path) -> None:
    onnx = shutil.copy(digits_onnx, tmp_path / "r20.onnx")
    cache = tmp_path / "abc.calib.cache"
    cache.write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    engine = _engine(
        tmp_path,
        Path(onnx),
        build_options={"precision": "int8", "implicit": True, "calib_cache": str(cache)},
        targets=EngineTargets(dla_core=1),
    )
    planned = plan(DeepStreamJob(engine, output=tmp_path / "ds", batch_size=8, limit=40, backend="onnxruntime"))
    assert planned.describe()[0] == (
        "1. measure what nvinfer's preprocessing costs r20.int8.engine in top-1 on digits "
        "(with r20.onnx, which it was built from)"
    )
    result = run(planned)
    props = properties(result.config)
    assert props["model-engine-file"] == "../r20.int8.engine" and props["onnx-file"] == "../r20.onnx"
    assert props["int8-calib-file"] == "../abc.calib.cache" and props["network-mode"] == "1"
    assert (props["enable-dla"], props["use-dla-core"], props["batch-size"]) == ("1", "1", "8")
    assert result.cost is not None and result.cost.images == 40 and result.cost.measured_with == "r20.onnx"
    with pytest.raises(ResnetDeployError, match=r"`batch_size` 9 is more than the 8 r20\.int8\.engine was built for"):
        plan(DeepStreamJob(engine, output=tmp_path / "ds", batch_size=9, measure=False))
    cache.unlink()  # the FP32 ONNX alone builds no INT8 engine: no rebuild, and it says why
    result = run(plan(DeepStreamJob(engine, output=tmp_path / "ds2", measure=False)))
    props = properties(result.config)
    assert "onnx-file" not in props and "int8-calib-file" not in props
    assert "nvinfer cannot build another where it does not load" in result.text


def test_an_engine_whose_onnx_is_gone_is_measured_nowhere_here(digits_onnx, tmp_path) -> None:
    onnx = Path(shutil.copy(digits_onnx, tmp_path / "gone.onnx"))
    engine = _engine(tmp_path, onnx)
    onnx.unlink()
    with pytest.raises(ValidationError, match=r"no NVIDIA GPU runs r20\.int8\.engine, and the ONNX") as caught:
        plan(DeepStreamJob(engine, output=tmp_path / "ds"))
    assert caught.value.field == "measure" and "`measure=False`" in str(caught.value)


def test_secondary_mode_names_the_detector_it_works_for(digits_onnx, tmp_path) -> None:
    job = DeepStreamJob(digits_onnx, output=tmp_path, secondary=True, operate_on_class_ids=(0, 2), measure=False)
    result = run(plan(job))
    props = properties(result.config)
    assert (props["process-mode"], props["gie-unique-id"], props["operate-on-gie-id"]) == ("2", "2", "1")
    assert props["operate-on-class-ids"] == "0;2"
    assert "classifies the objects of classes 0, 2 that gie-unique-id 1 detects" in result.text
    with pytest.raises(ResnetDeployError, match="`operate_on_class_ids` picks the detected objects"):
        plan(DeepStreamJob(digits_onnx, output=tmp_path, operate_on_class_ids=(1,)))


def test_a_uint8_frames_model_is_refused_nvinfer_feeds_float_tensors(digits_onnx, tmp_path) -> None:
    from resnet_deploy.pipeline import ConvertJob

    frames = run(plan(ConvertJob(digits_onnx, precision=None, frame_size=(48, 40), output=tmp_path / "f.onnx")))
    result = invoke("deepstream", str(frames.path), "-o", str(tmp_path / "ds"))
    assert_one_line_error(result, "takes 48x40 uint8 RGB frames, but nvinfer hands TensorRT float tensors only")
    assert "--frame-dtype float32" in result.stderr
    assert not (tmp_path / "ds").exists()


def test_a_float32_frames_model_gets_raw_pixels_and_is_exact(digits_onnx, tmp_path) -> None:
    """nvinfer passes net-scale-factor * (x - offsets) = the pixel values, NHWC, in the frames' channel order:
    the float32 frames model then computes what the uint8 one computes from the same frames, bit for bit."""
    from resnet_deploy.pipeline import ConvertJob
    from resnet_deploy.runtime import Runner

    convert = dict(precision=None, frame_size=(48, 40), channel_order="BGR")
    uint8_model, float_model = tmp_path / "u8.onnx", tmp_path / "f32.onnx"
    run(plan(ConvertJob(digits_onnx, output=uint8_model, **convert)))
    run(plan(ConvertJob(digits_onnx, output=float_model, frame_dtype="float32", **convert)))
    job = DeepStreamJob(float_model, output=tmp_path / "ds")
    assert [type(step).__name__ for step in plan(job).steps] == ["Write"]  # exact: nothing to measure
    result = run(plan(job))
    props = properties(result.config)
    assert all(key in PROPERTY_KEYS and _typed(key, value) for key, value in props.items())
    assert props["infer-dims"] == "3;40;48" and props["network-input-order"] == "1"
    assert props["model-color-format"] == "1"  # BGR
    assert (props["net-scale-factor"], props["offsets"], props["maintain-aspect-ratio"]) == ("1.0", "0.0;0.0;0.0", "0")
    assert result.exact and result.cost is None
    assert "exact when nvstreammux's width and height are 48 and 40" in result.text
    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    fed = result.normalisation.scale * (frames.astype(np.float32) - np.float32(0))  # what nvinfer hands TensorRT
    with Runner.load(uint8_model, backend="onnxruntime") as u8, Runner.load(float_model, backend="onnxruntime") as f32:
        np.testing.assert_array_equal(f32.infer(fed.astype(np.float32)), u8.infer(frames))
    refused = invoke("deepstream", str(float_model), "-o", str(tmp_path / "ds2"), "--maintain-aspect-ratio")
    assert_one_line_error(refused, "takes whole 48x40 frames and fits them itself")


def test_refusals_are_one_line_and_write_nothing(resnet20_export, digits_onnx, tmp_path) -> None:
    _, export = resnet20_export
    result = invoke("deepstream", str(export.path), "-o", str(tmp_path / "a"))  # random weights, no dataset
    assert_one_line_error(result, "records no dataset to measure nvinfer's preprocessing on")
    assert "--data SPEC" in result.stderr and "--no-measure" in result.stderr
    foreign = tmp_path / "detector.onnx"
    model = load_onnx(digits_onnx)
    del model.metadata_props[:]
    foreign.write_bytes(model.SerializeToString())
    assert_one_line_error(invoke("deepstream", str(foreign), "--no-measure"), "carries no resnet-deploy metadata")
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"x")
    assert_one_line_error(invoke("deepstream", str(checkpoint)), "nvinfer runs TensorRT engines")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector.onnx", "model.pt"]


def test_a_user_s_file_is_never_replaced_and_our_own_is(digits_onnx, tmp_path) -> None:
    (tmp_path / "labels.txt").write_text("mine\n")
    result = invoke("deepstream", str(digits_onnx), "-o", str(tmp_path), "--no-measure")
    assert_one_line_error(result, "labels.txt exists and is not `resnet-deploy deepstream`'s label file")
    assert "--overwrite" in result.stderr and (tmp_path / "labels.txt").read_text() == "mine\n"
    assert not (tmp_path / "config_infer_resnet20.txt").exists()  # neither file: both or none
    with pytest.raises(OutputPathError):
        plan(DeepStreamJob(digits_onnx, output=tmp_path, measure=False))
    first = run(plan(DeepStreamJob(digits_onnx, output=tmp_path, measure=False, overwrite=True)))
    again = plan(DeepStreamJob(digits_onnx, output=tmp_path, measure=False, threshold=0.5))  # ours: replaced
    assert again.replacing == (
        f"replacing {tmp_path / 'labels.txt'}: this command's label file from the same inputs",
        f"replacing {first.config}: this command's nvinfer config from the same inputs",
    )
    assert properties(run(again).config)["classifier-threshold"] == "0.5"


def test_the_command_prints_its_json(digits_onnx, tmp_path) -> None:
    result = invoke("deepstream", str(digits_onnx), "-o", str(tmp_path), "--no-measure", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] and payload["config"] == str(tmp_path / "config_infer_resnet20.txt")
    assert payload["measured"] is None and payload["normalisation_exact"] is True
    assert Normalisation(payload["net_scale_factor"], tuple(payload["offsets"])).scale > 0
