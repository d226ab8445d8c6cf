"""`resnet-deploy triton`: real artifacts (the session's ResNet-20 export, a frames model made by convert,
engines built on the TensorRT 10.3 stand-in and on the real TensorRT-RTX) into a Triton repository whose
every config is parsed with Triton's own model_config.proto and checked field by field."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.evaluate.bench import BenchReport, BenchRow
from resnet_deploy.pipeline import plan, run
from resnet_deploy.pipeline.triton import TritonJob
from resnet_deploy.runtime.images import preprocess
from resnet_deploy.serve import triton_releases
from resnet_deploy.serve.triton_config import parse_config
from resnet_deploy.serve.triton_preprocess import preprocess_encoded
from tests.cli_helpers import assert_one_line_error, invoke

pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2]
DIGITS = tuple(str(d) for d in range(10))


def config_of(repo: Path, name: str):
    """The model's config.pbtxt, parsed by Triton's own proto."""
    return parse_config((repo / name / "config.pbtxt").read_text(), name)


@pytest.fixture(scope="module")
def named_onnx(resnet20_export, tmp_path_factory):
    """The session's ResNet-20 export with class names in its metadata (digits)."""
    from resnet_deploy.convert.export import export_onnx

    source, _ = resnet20_export
    path = tmp_path_factory.mktemp("named") / "r20.onnx"
    export_onnx(source.model, path, dataclasses.replace(source.metadata, class_names=DIGITS), verify=False)
    return path


def test_an_onnx_becomes_a_classifier_a_preprocessing_model_and_an_ensemble(named_onnx, tmp_path) -> None:
    repo = tmp_path / "models"
    report = run(plan(TritonJob((named_onnx,), output=repo)))
    assert report.checked_against_proto is True
    assert [(m.name, m.role, m.runs_on) for m in report.models] == [
        ("r20", "classifier", "onnxruntime_onnx"),
        ("r20_preprocess", "preprocess", "python"),
        ("r20_ensemble", "ensemble", "ensemble"),
    ]
    config = config_of(repo, "r20")
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    (tensor_in,), (tensor_out,) = config.input, config.output
    assert (tensor_in.name, list(tensor_in.dims), tensor_in.data_type) == (
        "input",
        [3, 32, 32],
        model_config_pb2.TYPE_FP32,
    )
    assert (tensor_out.name, list(tensor_out.dims), tensor_out.data_type) == (
        "logits",
        [10],
        model_config_pb2.TYPE_FP32,
    )
    assert tensor_out.label_filename == "labels.txt"
    assert (repo / "r20" / "labels.txt").read_text().splitlines() == list(DIGITS)
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = config.instance_group
    assert group.count == 1 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    (warmup,) = config.model_warmup
    sample = warmup.inputs["input"]
    assert warmup.batch_size == 1 and sample.zero_data and list(sample.dims) == [3, 32, 32]
    assert (repo / "r20" / "1" / "model.onnx").read_bytes() == named_onnx.read_bytes()

    pre = config_of(repo, "r20_preprocess")
    assert pre.backend == "python" and pre.max_batch_size == 32
    assert pre.input[0].name == "IMAGE" and pre.input[0].data_type == model_config_pb2.TYPE_STRING
    assert list(pre.output[0].dims) == [3, 32, 32]
    model_py = (repo / "r20_preprocess" / "1" / "model.py").read_text()
    compile(model_py, "model.py", "exec")  # valid Python, for Triton's stub to import
    assert "preprocess_encoded" in model_py and 'pb_utils.Tensor("input", batch)' in model_py
    props = json.loads((repo / "r20_preprocess" / "1" / "metadata.json").read_text())
    assert json.loads(props["class_names"]) == list(DIGITS)

    ensemble = config_of(repo, "r20_ensemble")
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 32
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["r20_preprocess", "r20"]
    assert dict(steps[0].output_map) == {"input": "preprocessed"} and dict(steps[1].input_map) == {
        "input": "preprocessed"
    }
    assert dict(steps[1].output_map) == {"logits": "logits"} and ensemble.output[0].name == "logits"
    assert (repo / "r20_ensemble" / "1").is_dir()


def test_preferred_batch_sizes_come_from_bench_results(named_onnx, tmp_path) -> None:
    """Every measured batch within 90% of the best throughput, on the runtime Triton uses."""

    def row(backend, batch, ips):
        return BenchRow(str(named_onnx), backend, "fp32", batch, 1, 1, 1, 1, ips, 20)

    rows = [row("onnxruntime", 1, 500.0), row("onnxruntime", 8, 1850.0), row("onnxruntime", 32, 2000.0)]
    rows += [row("openvino", 1, 900.0), row("openvino", 8, 1000.0), row("openvino", 16, 3000.0)]
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"ok": True, **BenchReport({"cpu": "x"}, rows).to_dict()}))
    run(plan(TritonJob((named_onnx,), output=tmp_path / "ort", bench=bench, ensemble=False)))
    assert list(config_of(tmp_path / "ort", "r20").dynamic_batching.preferred_batch_size) == [8, 32]
    job = TritonJob((named_onnx,), output=tmp_path / "ov", bench=bench, backend="openvino", max_batch_size=16)
    run(plan(dataclasses.replace(job, ensemble=False, name="digits", version=3)))
    config = config_of(tmp_path / "ov", "digits")
    assert config.backend == "openvino" and config.default_model_filename == "model.onnx" and config.platform == ""
    assert config.max_batch_size == 16 and list(config.dynamic_batching.preferred_batch_size) == [16]
    assert (tmp_path / "ov" / "digits" / "3" / "model.onnx").is_file()
    bench.write_text(json.dumps({"rows": [{"artifact": "x.onnx"}]}))
    with pytest.raises(ResnetDeployError, match="is not a `resnet-deploy bench` result"):
        plan(TritonJob((named_onnx,), output=tmp_path / "bad", bench=bench))


def test_a_frames_model_takes_uint8_frames_and_needs_no_ensemble(resnet20_export, tmp_path) -> None:
    from resnet_deploy.pipeline import ConvertJob

    _, exported = resnet20_export
    frames = tmp_path / "r20.frames64x48.onnx"
    run(plan(ConvertJob(exported.path, output=frames, precision=None, frame_size=(64, 48))))
    repo = tmp_path / "models"
    report = run(plan(TritonJob((frames,), output=repo, instance_kind="gpu", instances=2)))
    assert [m.name for m in report.models] == ["r20_frames64x48"]  # no ensemble: clients send raw frames
    config = config_of(repo, "r20_frames64x48")
    (tensor_in,) = config.input
    assert list(tensor_in.dims) == [48, 64, 3] and tensor_in.data_type == model_config_pb2.TYPE_UINT8
    assert config.model_warmup[0].inputs["input"].data_type == model_config_pb2.TYPE_UINT8
    assert config.output[0].label_filename == ""  # the random-init model has no class names
    (group,) = config.instance_group
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert "raw 64x48 uint8 RGB frames" in (repo / "r20_frames64x48" / "config.pbtxt").read_text()


@pytest.fixture(scope="module")
def trt103_engine(resnet20_export, tmp_path_factory):
    """A ResNet-20 FP32 engine built through build_engine on the strict TensorRT 10.3 stand-in (10.3.0.30,
    JetPack 6.1's build), with its real sidecar."""
    from resnet_deploy.engine.options import BuildOptions, parse_batch
    from resnet_deploy.pipeline import build_engine
    from resnet_deploy.trt.flavours import choose
    from tests.trt_matrix import environment

    _, exported = resnet20_export
    path = tmp_path_factory.mktemp("trt103") / "r20.engine"
    with pytest.MonkeyPatch.context() as patch, environment("10.3", patch):
        build_engine(exported.path, path, BuildOptions(batch=parse_batch("1:4:16")), backend=choose("tensorrt"))
    return path


def test_an_engine_is_served_by_the_triton_releases_of_its_tensorrt(trt103_engine, tmp_path) -> None:
    sidecar = json.loads(Path(f"{trt103_engine}.json").read_text())
    assert sidecar["backend_version"] == "10.3.0.30" and sidecar["profile"]["max"][0] == 16
    with pytest.raises(
        ResnetDeployError,
        match=r"built with TensorRT 10\.3\.0\.30 but Triton 24\.08 ships TensorRT "
        r"10\.3\.0\.26, which cannot load it \(no Triton release in the table ships it\)",
    ):
        plan(TritonJob((trt103_engine,), output=tmp_path / "m", triton_release="24.08"))
    repo = tmp_path / "models"
    run(plan(TritonJob((trt103_engine,), output=repo)))
    config = config_of(repo, "r20")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 16
    assert list(config.input[0].dims) == [3, 32, 32] and list(config.output[0].dims) == [10]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert (repo / "r20" / "1" / "model.plan").read_bytes() == trt103_engine.read_bytes()
    assert (
        "no Triton release in resnet-deploy's table ships TensorRT 10.3.0.30"
        in (repo / "r20" / "config.pbtxt").read_text()
    )
    with pytest.raises(ResnetDeployError, match=r"`max_batch_size` 32 is above the 16 r20\.engine was built for"):
        plan(TritonJob((trt103_engine,), output=repo, max_batch_size=32, overwrite=True))
    with pytest.raises(ResnetDeployError, match="it runs on a GPU only"):
        plan(TritonJob((trt103_engine,), output=repo, instance_kind="cpu", overwrite=True))

    # the same engine as the data-centre 10.3.0.26 built it: 24.08 is the one release that loads it
    copy = tmp_path / "dc" / "r20.plan"
    copy.parent.mkdir()
    shutil.copyfile(trt103_engine, copy)
    Path(f"{copy}.json").write_text(json.dumps({**sidecar, "backend_version": "10.3.0.26"}))
    run(plan(TritonJob((copy,), output=tmp_path / "dc-models", triton_release="24.08", name="r20_dc")))
    text = (tmp_path / "dc-models" / "r20_dc" / "config.pbtxt").read_text()
    assert "Triton containers with TensorRT 10.3.0.26: 24.08" in text
    assert "nvcr.io/nvidia/tritonserver:24.08-py3" in text
    with pytest.raises(
        ResnetDeployError, match=r"Triton 24\.09 ships TensorRT 10\.4\.0\.26.*\(Triton 24\.08 ships it\)"
    ):
        plan(TritonJob((copy,), output=tmp_path / "x", triton_release="24.09"))
    result = invoke("triton", str(copy), "--triton-release", "24.07", "-o", str(tmp_path / "y"))
    assert_one_line_error(
        result, "rebuild the engine inside nvcr.io/nvidia/tritonserver:24.07-py3, or give the matching --triton-release"
    )


@pytest.mark.rtx
def test_a_tensorrt_rtx_engine_is_refused_with_what_to_serve_instead(resnet20_export, tmp_path) -> None:
    from resnet_deploy.engine.options import BuildOptions
    from resnet_deploy.pipeline import build_engine

    _, exported = resnet20_export
    result = build_engine(exported.path, tmp_path / "r20.rtx.engine", BuildOptions(target_cc=("8.9",)))
    with pytest.raises(
        ResnetDeployError,
        match=r"tensorrt-rtx engine and Triton has no TensorRT-RTX backend: serve "
        rf"{re.escape(str(exported.path))} instead .* or build the engine with full TensorRT",
    ):
        plan(TritonJob((result.path,), output=tmp_path / "models"))
    assert not (tmp_path / "models").exists()


def test_the_repository_is_written_whole_or_not_at_all(named_onnx, tmp_path, monkeypatch) -> None:
    repo = tmp_path / "models"
    (repo / "other" / "1").mkdir(parents=True)
    (repo / "other" / "config.pbtxt").write_text('name: "other"\n')
    (repo / "r20").mkdir()
    (repo / "r20" / "config.pbtxt").write_text("mine\n")
    with pytest.raises(ResnetDeployError, match=r"models/r20 exists and is not empty; pass `overwrite=True`"):
        plan(TritonJob((named_onnx,), output=repo))

    calls = []
    real_copy = shutil.copyfile

    def failing_copy(src, dst):
        calls.append(dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        run(plan(TritonJob((named_onnx,), output=repo, overwrite=True)))
    assert calls and sorted(p.name for p in repo.iterdir()) == ["other", "r20"]
    assert (repo / "r20" / "config.pbtxt").read_text() == "mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["models"]  # no temporary left beside it
    monkeypatch.setattr(shutil, "copyfile", real_copy)

    run(plan(TritonJob((named_onnx,), output=repo, overwrite=True)))
    assert sorted(p.name for p in repo.iterdir()) == ["other", "r20", "r20_ensemble", "r20_preprocess"]
    assert (repo / "other" / "config.pbtxt").read_text() == 'name: "other"\n'
    assert config_of(repo, "r20").platform == "onnxruntime_onnx"


def test_names_are_sanitised_and_unique(named_onnx, tmp_path) -> None:
    odd = tmp_path / "my model.v2.onnx"
    shutil.copyfile(named_onnx, odd)
    twin = tmp_path / "twin" / "my model.v2.onnx"
    twin.parent.mkdir()
    shutil.copyfile(named_onnx, twin)
    planned = plan(TritonJob((odd, twin), output=tmp_path / "m", ensemble=False))
    assert "my_model_v2, my_model_v2_onnx" in planned.describe()[0]
    with pytest.raises(ResnetDeployError, match="`name` names the model of one artifact"):
        plan(TritonJob((odd, twin), output=tmp_path / "m", name="x"))
    with pytest.raises(ResnetDeployError, match="is not a Triton model name"):
        plan(TritonJob((odd,), output=tmp_path / "m", name="a/b"))


def test_the_preprocessing_step_is_the_runners_own(named_onnx) -> None:
    from resnet_deploy.artifacts.onnx_io import read_onnx_metadata

    metadata = read_onnx_metadata(named_onnx)
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 50), (32, 32), (17, 90))]
    blobs = []
    for picture in pictures:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
    batch = preprocess_encoded(np.array(blobs, dtype=object).reshape(-1, 1), metadata)  # as Triton passes TYPE_STRING
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32
    assert np.array_equal(batch, preprocess(pictures, metadata))
    with pytest.raises(ResnetDeployError, match="image 1 of the request is not an image Pillow can decode"):
        preprocess_encoded([blobs[0], b"not an image"], metadata)


def test_the_release_table_and_its_doc_agree() -> None:
    assert triton_releases.tensorrt_of("24.08") == "10.3.0.26"
    assert triton_releases.tensorrt_of("24.08-py3") == "10.3.0.26"
    assert triton_releases.releases_with("10.3.0.26") == ("24.08",)
    assert triton_releases.releases_with("10.3.0.30") == ()  # JetPack 6.1's build: no Triton container has it
    assert triton_releases.releases_with("8.6.1.6") == (
        "23.04", "23.05", "23.06", "23.07", "23.08", "23.09", "23.10", "23.11", "23.12", "24.01",
    )  # fmt: skip
    assert not triton_releases.same_tensorrt("10.3.0", "10.3")  # three parts at least
    assert min(triton_releases.RELEASES) <= "23.01" and max(triton_releases.RELEASES) >= "25.12"
    with pytest.raises(ResnetDeployError, match=r"`triton_release` '19.01' is not in resnet-deploy's table"):
        triton_releases.tensorrt_of("19.01")
    doc = (ROOT / "docs" / "serving" / "triton.md").read_text()
    assert triton_releases.markdown_table() in doc, (
        "regenerate the table: python -c 'from resnet_deploy.serve."
        "triton_releases import markdown_table; print(markdown_table())'"
    )


def test_the_command_line(named_onnx, tmp_path) -> None:
    repo = tmp_path / "models"
    result = invoke("triton", str(named_onnx), "-o", str(repo), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "write the Triton repository" in result.output and not repo.exists()
    result = invoke(
        "triton", str(named_onnx), "-o", str(repo), "--no-ensemble", "--preferred-batch-sizes", "2,6", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["checked_against_proto"] and [m["name"] for m in report["models"]] == ["r20"]
    assert report["models"][0]["preferred_batch_sizes"] == [2, 6]
    assert_one_line_error(invoke("triton", str(named_onnx), "-o", str(repo)), "pass --overwrite")
    assert_one_line_error(
        invoke("triton", str(named_onnx), "-o", str(tmp_path / "z"), "--preferred-batch-sizes", "64"),
        "--preferred-batch-sizes 64 is above the model's max batch 32",
    )
