"""Real engine builds with TensorRT-RTX on the CPU (ahead of time for SM86/SM89): files, sidecar, refusals."""

from __future__ import annotations

import json

import onnx
import pytest

from resnet_deploy._io import sha256_file
from resnet_deploy.engine.options import BuildOptions
from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.pipeline import build_engine
from resnet_deploy.quantize.options import CalibrationOptions
from tests.cli_helpers import assert_one_line_error, invoke
from tests.factories import Collected

pytestmark = pytest.mark.rtx
TARGETS = ("8.6", "8.9")


@pytest.fixture(scope="module")
def onnx_fp32(trained_resnet20):
    return trained_resnet20[1]


def build(onnx_path, out, precision="fp32", **kw):
    calibrate = CalibrationOptions(method="minmax", count=64, cache_dir=None)
    return build_engine(
        onnx_path, out, BuildOptions(precision=precision, target_cc=TARGETS, **kw), calibration=calibrate
    )


@pytest.mark.parametrize(
    ("precision", "low", "high"), [("fp32", 1.0e6, 4e6), ("fp16", 0.6e6, 3e6), ("int8", 1.0e6, 8e6)]
)
def test_resnet20_engines_and_sidecars(onnx_fp32, tmp_path, precision, low, high) -> None:
    result = build(onnx_fp32, tmp_path / f"r20.{precision}.engine", precision)
    size = result.path.stat().st_size
    assert low < size < high  # 0.27 M parameters, two targets' kernels
    meta = json.loads(result.sidecar_path.read_text())
    assert meta["format"] == "resnet-deploy-engine/1" and meta["backend"] == "tensorrt-rtx"
    assert meta["precision"] == precision and meta["strongly_typed"] is True and meta["builder_flags"] == []
    assert meta["targets"] == {"compute_capabilities": list(TARGETS)}
    assert meta["engine_sha256"] == sha256_file(result.path) and meta["engine_bytes"] == size
    assert meta["profile"] == {"input": "input", "min": [1, 3, 32, 32], "opt": [8, 3, 32, 32], "max": [32, 3, 32, 32]}
    assert meta["io"]["inputs"] == [{"name": "input", "dtype": "float", "shape": [-1, 3, 32, 32]}]
    assert meta["io"]["outputs"] == [{"name": "logits", "dtype": "float", "shape": [-1, 10]}]
    assert meta["model"]["architecture"] == "resnet20" and meta["model"]["num_classes"] == "10"
    graph = onnx.load(meta["source_onnx"])
    props = {p.key: p.value for p in graph.metadata_props}
    assert meta["source_onnx_sha256"] == sha256_file(meta["source_onnx"])
    assert props.get("precision", "fp32") == precision
    if precision == "int8":
        assert meta["calibration_id"] == props["calibration_id"] and result.derived == [tmp_path / "r20.int8.onnx"]
        assert sum(n.op_type == "QuantizeLinear" for n in graph.graph.node) == 22
    else:
        assert meta["calibration_id"] is None


def test_resnet18_fp32_and_int8(tmp_path) -> None:
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    source = open_model(depth=18)
    export_onnx(source.model, tmp_path / "r18.onnx", source.metadata, verify=False)
    fp32 = build(tmp_path / "r18.onnx", tmp_path / "r18.engine", batch=None)
    int8 = build(tmp_path / "r18.onnx", tmp_path / "r18.int8.engine", "int8")
    # 11.7 M parameters: ~47 MB of fp32 weights, ~12 MB in int8
    assert 40e6 < fp32.size_bytes < 120e6 and 10e6 < int8.size_bytes < fp32.size_bytes
    assert json.loads(int8.sidecar_path.read_text())["profile"]["max"] == [32, 3, 224, 224]


def test_parser_errors_are_listed_by_node_and_op(onnx_fp32, tmp_path) -> None:
    from resnet_deploy.engine.network import parse
    from resnet_deploy.errors import EngineBuildError
    from resnet_deploy.quantize.calibrate import calibrate_onnx
    from resnet_deploy.trt.flavours import choose

    cpu = calibrate_onnx(onnx_fp32, tmp_path / "cpu.onnx", target="cpu", method="minmax", count=32, cache_dir=None)
    with pytest.raises(EngineBuildError) as info:
        parse(choose("tensorrt-rtx"), cpu.path, strongly_typed=True)
    message = str(info.value)
    assert "cannot parse" in message and "node 'conv1.weight_bias_DequantizeLinear' (DequantizeLinear)" in message
    assert "calibrate's `target=tensorrt`" in message
    # through the CLI the metadata already names the problem, before TensorRT sees the file
    assert_one_line_error(
        invoke(
            "build-engine", "--onnx", str(cpu.path), "--int8", "--target-cc", "8.9", "-o", str(tmp_path / "c.engine")
        ),
        "ONNX Runtime's CPU INT8 form",
    )
    assert not (tmp_path / "c.engine").exists()


def test_static_batch_profile_and_bad_requests(tmp_path, resnet20_export) -> None:
    from resnet_deploy.convert.export import export_onnx

    source, _ = resnet20_export
    export_onnx(source.model, tmp_path / "s4.onnx", source.metadata, static_batch=4, verify=False)
    result = build(tmp_path / "s4.onnx", tmp_path / "s4.engine")
    assert result.batch == "4:4:4"
    out = str(tmp_path / "x.engine")
    onnx_path = str(tmp_path / "s4.onnx")
    cc = ["--target-cc", "8.9"]
    for args, message in [
        (["--batch", "1:8:32", *cc], "static batch of 4, so --batch 1:8:32 cannot be built"),
        (["--batch", "8:4:2", *cc], "need min <= opt <= max"),
        (["--dla-core", "0", *cc], "TensorRT-RTX has no DLA"),
        (["--target-cc", "9.0"], "'9.0' is not a TensorRT-RTX target"),
        ([], "no NVIDIA GPU here to build for; name the target GPUs with --target-cc"),
        (["--int8", "--implicit", "--calib-cache", out, *cc], "--implicit needs TensorRT 8.6-10.x"),
        (["--fp16", "--int8", *cc], "choose one precision, not --fp16 and --int8"),
    ]:
        assert_one_line_error(invoke("build-engine", "--onnx", onnx_path, "-o", out, *args), message)
    assert_one_line_error(
        invoke("build-engine", "--onnx", onnx_path, "--target-cc", "8.9", "-o", str(tmp_path / "no" / "x.engine")),
        "does not exist",
    )
    (tmp_path / "trunc.onnx").write_bytes((tmp_path / "s4.onnx").read_bytes()[:5000])
    assert_one_line_error(
        invoke("build-engine", "--onnx", str(tmp_path / "trunc.onnx"), "--target-cc", "8.9", "-o", out),
        "trunc.onnx is not a readable ONNX model",
    )
    assert not list(tmp_path.glob("x.engine*"))


def test_timing_cache_is_ignored_with_a_warning_by_rtx(onnx_fp32, tmp_path) -> None:
    warnings: list[str] = []
    options = BuildOptions(target_cc=("8.9",), timing_cache=str(tmp_path / "timing.cache"))
    result = build_engine(onnx_fp32, tmp_path / "a.engine", options, out=Collected(warnings))
    assert result.timing_cache is None and not (tmp_path / "timing.cache").exists()
    assert warnings == [
        "TensorRT-RTX keeps no timing cache (its timing-cache calls are no-ops); `timing_cache` ignored"
    ]


@pytest.mark.tensorrt
def test_timing_cache_is_written_and_a_foreign_one_ignored(onnx_fp32, tmp_path) -> None:
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache from any TensorRT")
    warnings: list[str] = []
    options = BuildOptions(timing_cache=str(cache))
    build_engine(onnx_fp32, tmp_path / "a.engine", options, backend="tensorrt", out=Collected(warnings))
    assert any("from another TensorRT version or damaged; ignored" in w for w in warnings)
    assert cache.read_bytes() != b"not a timing cache from any TensorRT"
    warnings.clear()
    build_engine(onnx_fp32, tmp_path / "b.engine", options, backend="tensorrt", out=Collected(warnings))
    assert warnings == []


def test_interrupted_build_leaves_nothing(onnx_fp32, tmp_path, monkeypatch) -> None:
    from resnet_deploy.engine import network

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(network, "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(onnx_fp32, tmp_path / "r.engine")
    assert list(tmp_path.iterdir()) == []


def test_cli_builds_from_a_checkpoint(trained_resnet20, tmp_path) -> None:
    import shutil

    checkpoint = tmp_path / "model.pt"
    shutil.copy(trained_resnet20[0], checkpoint)
    shutil.copy(f"{trained_resnet20[0]}.json", f"{checkpoint}.json")
    result = invoke(
        "build-engine", "--checkpoint", str(checkpoint), "--fp16", "--target-cc", "8.9", "--batch", "1:1:4", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["path"] == str(tmp_path / "model.fp16.engine") and report["batch"] == "1:1:4"
    assert report["derived"] == [str(tmp_path / "model.fp16.onnx")] and (tmp_path / "model.onnx").is_file()
    meta = json.loads((tmp_path / "model.fp16.engine.json").read_text())
    assert meta["rebuild_command"] is None or "build-engine" in meta["rebuild_command"]
    with pytest.raises(ResnetDeployError, match="is an fp16 model; --int8 builds from the FP32 export"):
        build(tmp_path / "model.fp16.onnx", tmp_path / "z.engine", "int8")


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "int8", "best"])
def test_full_tensorrt_builds_for_the_gpu_present(onnx_fp32, tmp_path, precision) -> None:
    """As on a Jetson or a data-centre GPU: full TensorRT builds for the GPU it runs on."""
    calibrate = CalibrationOptions(method="minmax", count=64, cache_dir=None)
    result = build_engine(
        onnx_fp32,
        tmp_path / f"r20.{precision}.engine",
        BuildOptions(precision=precision),
        backend="tensorrt",
        calibration=calibrate,
    )
    meta = json.loads(result.sidecar_path.read_text())
    assert meta["backend"] == "tensorrt" and meta["targets"]["compute_capability"]
    assert result.size_bytes > 200_000 and meta["engine_sha256"] == sha256_file(result.path)
    if result.strongly_typed:
        assert meta["builder_flags"] == []
    else:  # TensorRT 8.6/9, or --best on 10.x: precision flags
        assert "INT8" in meta["builder_flags"] or precision == "fp16"


def test_turing_is_refused_where_tensorrt_rtx_cannot_build_for_it(onnx_fp32, tmp_path) -> None:
    """TensorRT-RTX 1.7 fails FP32 GEMMs for SM75 (after an INT8 build's calibration): refused up front.
    If a newer TensorRT-RTX builds it, the first assertion fails: lift the refusal in check_combination."""
    from resnet_deploy.engine.network import build, configure, parse
    from resnet_deploy.engine.options import BatchProfile, BuildOptionError
    from resnet_deploy.errors import EngineBuildError
    from resnet_deploy.trt.flavours import choose

    backend = choose("tensorrt-rtx")
    builder, network, _parser, logger = parse(backend, onnx_fp32, strongly_typed=True)
    config = configure(backend, builder, network, BuildOptions(target_cc=("7.5",)), BatchProfile(1, 1, 1))
    with pytest.raises(EngineBuildError, match=r"Turing .*FP32 GEMM is not supported"):
        build(backend, builder, network, config, logger)
    for precision in ("fp32", "int8"):
        with pytest.raises(
            BuildOptionError, match=f"`target_cc=7.5` with {precision}: .*build `precision=fp16` for 7.5"
        ):
            build_engine(onnx_fp32, tmp_path / "t.engine", BuildOptions(precision=precision, target_cc=("7.5", "8.9")))
    assert build_engine(onnx_fp32, tmp_path / "t.engine", BuildOptions(precision="fp16", target_cc=("7.5",))).size_bytes
