"""Preprocessing inside the graph (`convert --frame-size`): equal to the runner's CPU preprocessing bit for bit,
on every runtime, precision and frame size; the runner, validate and calibration take such models as they are."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from PIL import Image

from resnet_deploy.artifacts.frame_input import FrameInput
from resnet_deploy.artifacts.onnx_io import read_onnx_metadata
from resnet_deploy.artifacts.preprocess import Preprocess
from resnet_deploy.convert.preprocess_graph import PREFIX, fuse_preprocessing, verify_fused
from resnet_deploy.convert.resize_taps import axis_taps, vertical_first
from resnet_deploy.errors import RunnerError, ValidationError, VerificationError
from resnet_deploy.runtime import Runner
from tests.cli_helpers import assert_one_line_error, invoke

RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def pillow_in_integers(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    """Pillow's two passes with the taps of ``axis_taps``, in exact integers (int64), in Pillow's order."""
    h, w, _ = image.shape
    x = image.astype(np.int64)
    passes = [(1, (w, width)), (0, (h, height))]
    for axis, (size, out) in passes[::-1] if vertical_first(w, h, width, height) else passes:
        if size == out:
            continue
        taps = axis_taps(size, out, interpolation)
        gathered = np.take(x, taps.index, axis=axis)  # axis -> (out, k)
        weights = taps.weights[:, :, None] if axis == 1 else taps.weights[:, :, None, None]
        x = np.clip(((gathered * weights).sum(axis=axis + 1) + (1 << 21)) >> 22, 0, 255)
    return x.astype(np.uint8)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize(
    ("size", "out"),
    [
        ((1280, 720), (455, 256)),
        ((1920, 1080), (224, 224)),
        ((333, 517), (256, 397)),
        ((8, 8), (32, 32)),
        ((20, 90), (32, 32)),  # the height shrinks most: Pillow 13 runs the vertical pass first
        ((84, 105), (74, 55)),
    ],
)
def test_the_taps_are_pillows_own_integers(size, out, interpolation) -> None:
    """Downscales (antialiased), upscales and odd aspect ratios: not one pixel of 3 x W x H differs from Pillow."""
    image = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize(out, RESAMPLING[interpolation]))
    assert np.array_equal(pillow_in_integers(image, *out, interpolation), expected)


def test_the_pass_order_is_pillows_on_random_sizes() -> None:
    """Which pass runs first changes the 8-bit intermediate: on 200 random size pairs, the integers in the
    order :func:`vertical_first` gives equal Pillow's every time."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        w, h, width, height = (int(v) for v in rng.integers(4, 90, 4))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
        assert np.array_equal(pillow_in_integers(image, width, height, "bilinear"), expected), (w, h, width, height)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A CIFAR ResNet-20 (stretch to 32) and an ImageNet ResNet-50 (shorter side to 256, centre crop 224),
    random weights, and copies recording other policies (bicubic at crop 0.95, nearest stretch)."""
    import torch

    from resnet_deploy.artifacts.onnx_io import write_onnx_metadata
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    root = tmp_path_factory.mktemp("fuse")
    made = {}
    torch.manual_seed(0)
    for name, depth in (("r20", 20), ("r50", 50)):
        source = open_model(depth=depth)
        made[name] = export_onnx(source.model, root / f"{name}.onnx", source.metadata, verify=False).path
    variants = {
        "r20-bicubic": ("r20", Preprocess("crop", 0.95, "bicubic")),
        "r50-bicubic": ("r50", Preprocess("crop", 0.95, "bicubic")),
        "r50-nearest": ("r50", Preprocess("stretch", interpolation="nearest")),
    }
    for name, (base, policy) in variants.items():
        model = onnx.load(str(made[base]))
        write_onnx_metadata(model, dataclasses.replace(read_onnx_metadata(made[base]), preprocess=policy))
        made[name] = root / f"{name}.onnx"
        onnx.save(model, str(made[name]))
    return made


@pytest.mark.parametrize(
    ("model", "frame"),
    [
        ("r20", FrameInput(64, 48, "BGR")),  # stretch 64x48 -> 32x32: two antialiased downscales
        ("r20", FrameInput(32, 32)),  # the model's size: no resize, as fit does none
        ("r20", FrameInput(20, 90)),  # one axis up, one down
        ("r20-bicubic", FrameInput(100, 37)),  # bicubic's negative lobes: sums below zero, clipped
        ("r50", FrameInput(1280, 720, "BGR")),  # a 720p camera: 256 short side, centre crop 224
        ("r50", FrameInput(333, 517)),  # portrait, odd sizes
        ("r50-bicubic", FrameInput(640, 480)),
        ("r50-nearest", FrameInput(300, 200)),
    ],
)
def test_the_network_input_equals_the_runners_bit_for_bit(exports, tmp_path, model, frame) -> None:
    """fuse_preprocessing checks 4 frames (random, black, white, a hard edge) in ONNX Runtime and refuses to
    write unless the network's input equals the runner's CPU preprocessing exactly; then the logits are equal too."""
    result = fuse_preprocessing(exports[model], tmp_path / "fused.onnx", frame)
    assert (result.checked_frames, result.max_abs_logit_error) == (4, 0.0)
    metadata = read_onnx_metadata(result.path)
    assert metadata.frame_input == frame
    assert dataclasses.replace(metadata, frame_input=None) == read_onnx_metadata(exports[model])
    graph = onnx.load(str(result.path))
    (given,) = graph.graph.input[:1]
    assert given.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in given.type.tensor_type.shape.dim[1:]] == [frame.height, frame.width, 3]
    assert not any(n.op_type in ("Resize", "QuantizeLinear") for n in graph.graph.node if n.name.startswith(PREFIX))


def test_the_runner_takes_frames_and_skips_its_own_preprocessing(exports, tmp_path) -> None:
    """ONNX Runtime and OpenVINO run the fused graph; frames of the declared size pass as they are, RGB or BGR
    as the caller says; a float batch is refused with a hint; the logits equal the unfused model's on the same
    frames (ONNX Runtime: exactly; OpenVINO folds the float scaling: within float32 rounding)."""
    frame = FrameInput(64, 48, "BGR")
    fused = fuse_preprocessing(exports["r20"], tmp_path / "r20.frames.onnx", frame).path
    bgr = np.random.default_rng(1).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    with Runner.load(exports["r20"], backend="onnxruntime") as plain:
        expected = plain.infer(plain.preprocess(list(bgr), channel_order="BGR"))
    for backend, bound in (("onnxruntime", 0.0), ("openvino", 1e-5)):
        with Runner.load(fused, backend=backend) as runner:
            batch = runner.preprocess(list(bgr), channel_order="BGR")
            assert (batch.dtype, batch.shape) == (np.uint8, (5, 48, 64, 3)) and np.array_equal(batch, bgr)
            rgb_given = runner.preprocess([f[:, :, ::-1] for f in bgr], channel_order="RGB")
            assert np.array_equal(rgb_given, bgr)  # flipped to the graph's order
            assert np.abs(runner.infer(batch) - expected).max() <= bound
            with pytest.raises(RunnerError, match=r"expects uint8 input .*preprocessing is inside the graph"):
                runner.infer(np.zeros((1, 48, 64, 3), np.float32))
            other = runner.preprocess([np.zeros((30, 40, 3), np.uint8)])  # another size: resized to the frame first
            assert other.shape == (1, 48, 64, 3)


def test_validate_scores_the_frames_model_on_the_test_split_with_no_change(trained_resnet20, tmp_path) -> None:
    """The trained ResNet-20 on the 360 digits test images, made into 48x40 BGR frames: the fused model and the
    FP32 reference (which preprocesses the same frames on the CPU) agree on every image, logits equal."""
    from resnet_deploy.pipeline import ValidateJob, plan, run

    _, fp32 = trained_resnet20
    fused = fuse_preprocessing(fp32, tmp_path / "r20.frames48x40.onnx", FrameInput(48, 40, "BGR")).path
    report = run(plan(ValidateJob(fp32, (fused,), backend="onnxruntime")))
    (row,) = report.artifacts
    assert report.images == 360
    assert (row.worse, row.better, row.top1_agreement, row.max_abs_logit_error) == (0, 0, 1.0, 0.0)
    assert row.top1_error == pytest.approx(report.reference.top1_error)


def test_frames_of_two_sizes_are_validated_apart(exports, tmp_path) -> None:
    from resnet_deploy.pipeline import ValidateJob, plan, run

    a = fuse_preprocessing(exports["r20"], tmp_path / "a.onnx", FrameInput(64, 48), verify=False).path
    b = fuse_preprocessing(exports["r20"], tmp_path / "b.onnx", FrameInput(48, 64), verify=False).path
    with pytest.raises(ValidationError, match="frames of different sizes"):
        run(plan(ValidateJob(exports["r20"], (a, b), backend="onnxruntime", data="digits", limit=8)))


def test_a_broken_fusion_is_never_written(exports, tmp_path, monkeypatch) -> None:
    """The bit-for-bit check is real: a fused graph whose preprocessing is off by one level is refused."""
    import resnet_deploy.convert.preprocess_graph as graph

    frame = FrameInput(64, 48)
    original = graph.model_input
    monkeypatch.setattr(graph, "model_input", lambda *a: original(*a) + np.float32(1 / 255 / 0.25))
    out = tmp_path / "off.onnx"
    with pytest.raises(VerificationError, match=r"differs from the runner's .*max \|diff\|"):
        fuse_preprocessing(exports["r20"], out, frame)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(graph, "model_input", original)
    fused = fuse_preprocessing(exports["r20"], out, frame).path
    assert verify_fused(exports["r20"], fused, read_onnx_metadata(fused))[1] == 0.0


def test_convert_cli_names_checks_and_refuses_in_one_line(exports, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "model.onnx"
    source.write_bytes(exports["r20"].read_bytes())
    result = invoke("convert", str(source), "--frame-size", "64x48", "--channel-order", "bgr")
    assert result.exit_code == 0, result.output
    fused = tmp_path / "model.frames64x48.onnx"
    assert "bit for bit" in result.output and read_onnx_metadata(fused).frame_input == FrameInput(64, 48, "BGR")
    both = invoke("convert", str(source), "--fp16", "--frame-size", "64x48")
    assert both.exit_code == 0, both.output
    half = read_onnx_metadata(tmp_path / "model.fp16.frames64x48.onnx")
    assert half.frame_input == FrameInput(64, 48, "RGB")
    for args, message in (
        (["--frame-size", "64by48"], "is not WIDTHxHEIGHT"),
        (["--frame-size", "0x48"], "frame width 0 is not a whole number from 1 to 16384"),
        (["--frame-size", "64x48"], "exists"),  # the earlier output: not replaced without --overwrite
    ):
        assert_one_line_error(invoke("convert", str(source), *args), message)
    assert_one_line_error(
        invoke("convert", str(fused), "--frame-size", "32x32"), "has its preprocessing inside already"
    )


@pytest.mark.rtx
def test_tensorrt_rtx_builds_the_frames_model_in_every_precision(trained_resnet20, tmp_path) -> None:
    """FP32, FP16 (the FP16 twin's frames model) and INT8 (calibrated on the network alone, the preprocessing put
    back in float32): uint8 NHWC input; in INT8 every convolution reads INT8 and no Q/DQ is in the preprocessing."""
    from resnet_deploy.convert.fp16 import convert_to_fp16
    from resnet_deploy.engine.options import BuildOptions
    from resnet_deploy.pipeline import build_engine
    from resnet_deploy.quantize.calibrate import calibrate_onnx
    from resnet_deploy.quantize.options import CalibrationOptions

    _, fp32 = trained_resnet20
    frame = FrameInput(64, 48, "BGR")
    fused = fuse_preprocessing(fp32, tmp_path / "r20.frames.onnx", frame).path
    half = convert_to_fp16(fused, tmp_path / "r20.frames.fp16.onnx").path
    calibration = CalibrationOptions(method="minmax", count=64, cache_dir=None)
    int8 = calibrate_onnx(fused, tmp_path / "r20.frames.int8.onnx", calibration).path
    plain_int8 = calibrate_onnx(fp32, tmp_path / "r20.int8.onnx", calibration).path
    quantizers = [n for n in onnx.load(str(int8)).graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) == sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(plain_int8)).graph.node)
    assert not any(n.name.startswith(PREFIX) for n in quantizers)
    assert read_onnx_metadata(int8).frame_input == frame
    for graph, precision in ((fused, "fp32"), (half, "fp16"), (int8, "int8")):
        options = BuildOptions(precision=precision, target_cc=("8.6",))
        result = build_engine(graph, tmp_path / f"{precision}.engine", options, calibration=calibration)
        meta = json.loads(result.sidecar_path.read_text())
        assert meta["io"]["inputs"] == [{"name": "input", "dtype": "uint8", "shape": [-1, 48, 64, 3]}]
        assert json.loads(meta["model"]["frame_input"])["channel_order"] == "BGR"
        if precision == "int8":
            convolutions = [layer for layer in meta["layers"] if layer["macs"] > 0 and layer["type"] != "gemm"]
            assert len(convolutions) == 19 and all(layer["inputs"] == ["int8"] for layer in convolutions)
            preprocessing = [
                layer for layer in meta["layers"] if any(n.startswith(PREFIX) for n in layer["onnx_nodes"])
            ]
            assert preprocessing and preprocessing[0]["inputs"] == ["uint8"]


def test_float32_frames_take_the_same_pixel_values_and_give_the_same_logits(exports, tmp_path) -> None:
    """`frame_dtype=float32` (for feeders that write only float tensors): the input is float32 NHWC holding the
    pixel values; checked bit for bit like the uint8 model, named apart, and equal to it on the same frames."""
    from resnet_deploy.artifacts.naming import frames_twin
    from resnet_deploy.pipeline import ConvertJob, plan, run

    job = ConvertJob(exports["r20"], precision=None, frame_size=(64, 48), channel_order="BGR", frame_dtype="float32")
    run(plan(job))
    fused = frames_twin(exports["r20"], 64, 48, "float32")
    assert fused.name.endswith(".frames64x48-float32.onnx") and fused.is_file()
    frame = read_onnx_metadata(fused).frame_input
    assert frame == FrameInput(64, 48, "BGR", "float32") and frame.describe() == "64x48 float32 BGR"
    (given,) = onnx.load(str(fused)).graph.input[:1]
    assert given.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    uint8 = fuse_preprocessing(exports["r20"], tmp_path / "u8.onnx", FrameInput(64, 48, "BGR")).path
    bgr = np.random.default_rng(2).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    with Runner.load(fused, backend="onnxruntime") as floats, Runner.load(uint8, backend="onnxruntime") as bytes_:
        batch = floats.preprocess(list(bgr), channel_order="BGR")
        assert batch.dtype == np.float32 and np.array_equal(batch, bgr.astype(np.float32))
        np.testing.assert_array_equal(floats.infer(batch), bytes_.infer(bgr))
        with pytest.raises(RunnerError, match=r"expects float32 input .*preprocessing is inside the graph"):
            floats.infer(bgr)
    result = invoke("convert", str(exports["r20"]), "--frame-size", "64x48", "--frame-dtype", "int16")
    assert result.exit_code == 2 and "int16" in result.stderr


@pytest.mark.rtx
def test_tensorrt_rtx_builds_the_float32_frames_model(trained_resnet20, tmp_path) -> None:
    from resnet_deploy.engine.options import BuildOptions
    from resnet_deploy.pipeline import build_engine

    _, fp32 = trained_resnet20
    fused = fuse_preprocessing(fp32, tmp_path / "r20.f32.onnx", FrameInput(64, 48, "RGB", "float32")).path
    result = build_engine(fused, tmp_path / "f32.engine", BuildOptions(precision="fp32", target_cc=("8.6",)))
    meta = json.loads(result.sidecar_path.read_text())
    # TensorRT names float32 "float"
    assert meta["io"]["inputs"] == [{"name": "input", "dtype": "float", "shape": [-1, 48, 64, 3]}]
    assert json.loads(meta["model"]["frame_input"])["dtype"] == "float32"
