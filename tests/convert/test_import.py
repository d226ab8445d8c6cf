"""`import`: outside ResNets (plain torch.onnx exports, NHWC graphs, old opsets, torchvision and timm state
dicts) become artifacts every later command takes, verified; what cannot be taken is refused in one line.

The end-to-end cases run import -> calibrate -> build-engine (TensorRT-RTX, --target-cc 8.9) -> validate
against the imported model -> inspect, on 32x32 models of 10 classes and the embedded digits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from onnx import helper

from resnet_deploy._lazy import is_available
from resnet_deploy.artifacts.onnx_io import read_onnx_metadata, read_onnx_props
from resnet_deploy.pipeline import ImportJob, plan, run
from tests.cli_helpers import assert_one_line_error, invoke

LABELS = [f"digit {i}" for i in range(10)]
PREPROCESS = "0.485/0.456/0.406,0.229/0.224/0.225,32,stretch"
NEEDS_RTX = pytest.mark.skipif(not is_available("tensorrt_rtx"), reason="needs tensorrt-rtx")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibration caches and default outputs land in the test's folder, not the checkout."""
    monkeypatch.chdir(tmp_path)


def _torchvision18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _export(model: torch.nn.Module, path: Path, example: torch.Tensor, **kw) -> Path:
    with warnings.catch_warnings():  # the TorchScript exporter, deliberately: what most users' files come from
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, example, path, dynamo=False, **kw)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A torchvision ResNet-18 as a plain torch.onnx export (static batch 1), as an NHWC graph at opset 11,
    and as a state dict; the labels file."""
    root = tmp_path_factory.mktemp("sources")
    model = _torchvision18()
    x = torch.randn(1, 3, 32, 32)

    class Nhwc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.net(images.permute(0, 3, 1, 2))

    torch.save(model.state_dict(), root / "tv18.pth")
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return {
        "onnx": _export(model, root / "tv18.onnx", x),
        "nhwc": _export(Nhwc().eval(), root / "tv18_nhwc.onnx", x.permute(0, 2, 3, 1), opset_version=11),
        "pth": root / "tv18.pth",
        "labels": root / "labels.txt",
    }


def _run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def test_a_plain_torch_onnx_export_comes_in_with_a_dynamic_batch_and_our_metadata(sources, tmp_path) -> None:
    out = tmp_path / "r18.onnx"
    result = run(
        plan(ImportJob(sources["onnx"], out, preprocess=PREPROCESS, labels=sources["labels"], dataset="digits"))
    )
    assert (result.architecture, result.layout, result.batch, result.max_abs_error) == (
        "resnet18",
        "NCHW",
        "dynamic",
        0,
    )
    metadata = read_onnx_metadata(out)
    assert metadata.config.name == "resnet18" and metadata.config.num_classes == 10
    assert metadata.class_names == tuple(LABELS) and metadata.dataset == "digits"
    assert metadata.mean == (0.485, 0.456, 0.406) and metadata.eval_preprocess.resize == "stretch"
    props = read_onnx_props(out)
    assert props["imported_from"] == "tv18.onnx" and props["imported_layout"] == "NCHW"
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    batch = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    one_by_one = np.concatenate([_run(sources["onnx"], batch[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(_run(out, batch), one_by_one, rtol=1e-5, atol=1e-5)


def test_an_nhwc_graph_at_opset_11_gets_a_transpose_and_opset_13(sources, tmp_path) -> None:
    out = tmp_path / "nhwc.onnx"
    result = run(plan(ImportJob(sources["nhwc"], out, preprocess="imagenet")))
    assert (result.layout, result.source_opset, result.opset) == ("NHWC", 11, 13)
    assert "opset 11 converted to 13 (per-channel INT8 needs it)" in result.notes
    batch = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32)
    theirs = np.concatenate([_run(sources["nhwc"], batch[i : i + 1].transpose(0, 2, 3, 1)) for i in range(3)])
    np.testing.assert_allclose(_run(out, batch), theirs, rtol=1e-5, atol=1e-5)
    assert read_onnx_metadata(out).config.input_size == 32


def test_the_cli_says_what_it_chose_and_what_it_did_not_get(sources, tmp_path) -> None:
    done = invoke("import", str(sources["onnx"]), "-o", str(tmp_path / "a.onnx"))
    assert done.exit_code == 0, done.output
    assert "imported " in done.stdout and "as resnet18" in done.stdout and "max |difference| 0.00e+00" in done.stdout
    assert "preprocessing: the family's default" in done.stdout and "no class names recorded" in done.stdout
    dry = invoke("import", str(sources["onnx"]), "--dry-run", "--json", "-o", str(tmp_path / "b.onnx"))
    assert dry.exit_code == 0 and json.loads(dry.stdout)["dry_run"] and not (tmp_path / "b.onnx").exists()


def _graph(tmp_path: Path, name: str, nodes, inputs, outputs, initializers=()) -> Path:
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, list(initializers)), opset_imports=[helper.make_opsetid("", 17)]
    )
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _value(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def test_what_cannot_be_taken_is_refused_in_one_line(sources, tmp_path) -> None:
    two_out = _graph(
        tmp_path,
        "two.onnx",
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"])],
        [_value("x", [1, 3, 8, 8])],
        [_value("a", [1, 3, 8, 8]), _value("b", [1, 3, 8, 8])],
    )
    flat = _graph(
        tmp_path, "flat.onnx", [helper.make_node("Relu", ["x"], ["y"])], [_value("x", [1, 20])], [_value("y", [1, 20])]
    )
    sine = _graph(
        tmp_path,
        "sin.onnx",
        [helper.make_node("Sin", ["x"], ["y"], name="wave")],
        [_value("x", [1, 3, 8, 8])],
        [_value("y", [1, 10])],
    )
    cases = [
        (two_out, [], "has 1 inputs and 2 outputs; an image classifier has one image in and one score per class out"),
        (flat, [], "input is 1x20: not an image batch (N, 3, H, W) or (N, H, W, 3)"),
        (sine, [], "has a Sin node ('wave'), which is not part of a ResNet and which INT8 calibration does not place"),
        (
            sources["onnx"],
            ["--labels", str(sources["labels"]), "--preprocess", "0.5,0.5,64,0.875"],
            "says 64x64 images",
        ),
        (sources["onnx"], ["--preprocess", "big"], "--preprocess 'big' is not imagenet, cifar, or MEAN,STD,SIZE,CROP"),
        (sources["onnx"], ["-o", str(sources["onnx"])], "the import would replace its source"),
        (sources["onnx"], ["--dataset", "nope:x"], "unknown dataset 'nope:x'"),
    ]
    for path, extra, needle in cases:
        output = [] if "-o" in extra else ["-o", str(tmp_path / "out.onnx")]
        assert_one_line_error(invoke("import", str(path), *extra, *output), needle)
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    assert_one_line_error(
        invoke("import", str(sources["onnx"]), "--labels", str(labels), "-o", str(tmp_path / "l.onnx")),
        "the labels name 3 classes but",
    )
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "l.onnx").exists()


def test_a_quantized_graph_and_one_of_ours_are_refused(tmp_path, trained_resnet20) -> None:
    _, ours = trained_resnet20
    assert_one_line_error(
        invoke("import", str(ours), "-o", str(tmp_path / "x.onnx")), "is a resnet-deploy artifact already"
    )
    quantized = _graph(
        tmp_path,
        "q.onnx",
        [
            helper.make_node("QuantizeLinear", ["x", "s"], ["q"], name="quant"),
            helper.make_node("DequantizeLinear", ["q", "s"], ["y"]),
        ],
        [_value("x", [1, 3, 8, 8])],
        [_value("y", [1, 10])],
        [onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s")],
    )
    assert_one_line_error(
        invoke("import", str(quantized), "-o", str(tmp_path / "q2.onnx")),
        "is quantized already (node 'quant' is QuantizeLinear); import the FP32 model and calibrate it here",
    )


def _downstream(imported: Path, tmp_path: Path) -> str:
    """calibrate -> build-engine (TensorRT-RTX for CC 8.9) -> validate against the import -> inspect the engine."""
    int8 = tmp_path / "m.int8.onnx"
    engine = tmp_path / "m.int8.engine"
    calibrated = invoke("calibrate", str(imported), "--calib-images", "16", "-o", str(int8))
    assert calibrated.exit_code == 0, calibrated.output
    built = invoke("build-engine", "--onnx", str(int8), "--int8", "--target-cc", "8.9", "-o", str(engine))
    assert built.exit_code == 0, built.output
    validated = invoke("validate", "--reference", str(imported), str(int8), "--limit", "64", "--json")
    assert validated.exit_code == 0, validated.output
    report = json.loads(validated.stdout)
    assert report["images"] == 64 and len(report["artifacts"]) >= 1
    inspected = invoke("inspect", str(engine), "--json")
    assert inspected.exit_code == 0, inspected.output
    found = json.loads(inspected.stdout)
    int8_layers = [layer for layer in found["layers"] if layer["precision"] == "int8" and layer["modules"]]
    assert int8_layers and found["summary"].startswith(f"{len(int8_layers)} of ")
    return found["summary"]


@NEEDS_RTX
def test_a_torch_onnx_resnet18_goes_import_calibrate_build_validate_inspect(sources, tmp_path) -> None:
    imported = tmp_path / "r18.onnx"
    done = invoke(
        "import", str(sources["onnx"]), "--labels", str(sources["labels"]), "--dataset", "digits",
        "--preprocess", PREPROCESS, "-o", str(imported),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    summary = _downstream(imported, tmp_path)
    assert summary == "21 of 21 Conv/Gemm layers INT8, 100.0% of MACs"


@NEEDS_RTX
def test_a_classifier_that_is_no_resnet_comes_in_as_it_is_and_goes_the_same_way(tmp_path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    ).eval()  # fmt: skip
    source = _export(net, tmp_path / "small.onnx", torch.randn(1, 3, 32, 32))
    imported = tmp_path / "small.imported.onnx"
    done = invoke("import", str(source), "--dataset", "digits", "--preprocess", PREPROCESS)
    assert done.exit_code == 0, done.output
    assert "as external" in done.stdout and "not a ResNet of the zoo: imported as it is" in done.stdout
    metadata = read_onnx_metadata(imported)
    assert (metadata.config.name, metadata.config.num_classes, metadata.config.input_size) == ("external", 10, 32)
    assert _downstream(imported, tmp_path) == "3 of 3 Conv/Gemm layers INT8, 100.0% of MACs"
    found = json.loads(invoke("inspect", str(imported), "--json").stdout)
    assert found["model"]["architecture"].startswith("external (imported as it is")


@NEEDS_RTX
def test_a_torchvision_state_dict_goes_the_same_way(sources, tmp_path) -> None:
    imported = tmp_path / "r18w.onnx"
    done = invoke("import", str(sources["pth"]), "--dataset", "digits", "--preprocess", PREPROCESS, "-o", str(imported))
    assert done.exit_code == 0, done.output
    assert "verified against PyTorch in ONNX Runtime" in done.stdout
    assert read_onnx_metadata(imported).config.name == "resnet18"
    _downstream(imported, tmp_path)


@NEEDS_RTX
def test_a_timm_resnet50_state_dict_goes_the_same_way(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / "timm50.pth")
    imported = tmp_path / "r50.onnx"
    done = invoke(
        "import", str(tmp_path / "timm50.pth"), "--dataset", "digits", "--preprocess", PREPROCESS, "-o", str(imported)
    )
    assert done.exit_code == 0, done.output
    metadata = read_onnx_metadata(imported)
    assert (metadata.config.name, metadata.config.variant) == ("resnet50", "v1.5")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(_run(imported, x.numpy()), expected, rtol=1e-4, atol=1e-4)  # timm's own function
    summary = _downstream(imported, tmp_path)
    assert summary.startswith("54 of 54 Conv/Gemm layers INT8")


# --- graphs exporters really make, each a defect found once -------------------------------------------------


def test_an_open_height_and_width_get_the_models_size_so_every_command_takes_it(tmp_path) -> None:
    source = _export(
        _torchvision18(),
        tmp_path / "hw.onnx",
        torch.randn(1, 3, 32, 32),
        input_names=["x"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
    )
    out = tmp_path / "hw.imported.onnx"
    run(plan(ImportJob(source, out, preprocess=PREPROCESS)))
    dims = [d.dim_param or d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 32, 32]
    planned = invoke("build-engine", "--onnx", str(out), "--target-cc", "8.6", "--dry-run")
    assert planned.exit_code == 0, planned.output  # the graph agrees with its metadata
    found = run(plan(__import__("resnet_deploy").InspectJob(out)))
    assert found.layers[0]["macs"] == 64 * 3 * 7 * 7 * 16 * 16  # conv1 at 32x32: per-position x positions


def test_the_torchscript_export_of_a_shortcut_a_resnet_is_recognised(tmp_path) -> None:
    from resnet_deploy.models.registry import build_model

    torch.manual_seed(0)
    source = _export(build_model(20).eval(), tmp_path / "r20.onnx", torch.randn(1, 3, 32, 32))
    result = run(plan(ImportJob(source, tmp_path / "r20.imported.onnx")))
    assert result.architecture == "resnet20" and result.max_abs_error < 1e-5


def test_an_nhwc_input_already_named_input_keeps_a_sound_graph(sources, tmp_path) -> None:
    model = onnx.load(sources["nhwc"])
    old = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["input" if name == old else name for name in node.input]
    model.graph.input[0].name = "input"
    onnx.save(model, tmp_path / "named.onnx")
    result = run(plan(ImportJob(tmp_path / "named.onnx", tmp_path / "named.imported.onnx", preprocess="imagenet")))
    assert result.layout == "NHWC" and result.max_abs_error < 1e-5


def test_what_the_readers_would_refuse_is_never_written(sources, tmp_path) -> None:
    from onnx import numpy_helper

    half = onnx.load(sources["onnx"])
    for tensor in half.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.dims) == 4:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
            break
    onnx.save(half, tmp_path / "half.onnx")
    assert_one_line_error(
        invoke("import", str(tmp_path / "half.onnx"), "-o", str(tmp_path / "h.onnx")), "holds FP16 weights"
    )
    grey_model = torchvision.models.resnet18(num_classes=10)
    grey_model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    grey = _export(grey_model.eval(), tmp_path / "grey.onnx", torch.randn(1, 1, 32, 32))
    assert_one_line_error(invoke("import", str(grey), "-o", str(tmp_path / "g.onnx")), "takes 1-channel images")
    one_mean = invoke("import", str(grey), "--preprocess", "0.5,0.25,32,stretch", "-o", str(tmp_path / "g.onnx"))
    assert one_mean.exit_code == 0 and read_onnx_metadata(tmp_path / "g.onnx").config.in_chans == 1
    assert_one_line_error(
        invoke("import", str(sources["pth"]), "--preprocess", "0.5,0.5,16,stretch", "-o", str(tmp_path / "s.onnx")),
        "input size 16 is too small for resnet18",
    )
    assert not (tmp_path / "h.onnx").exists() and not (tmp_path / "s.onnx").exists()
