"""The embeddable runner: light import, classify from raw images, engines refused before TensorRT sees them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from resnet_deploy.errors import EngineMismatchError, ResnetDeployError
from resnet_deploy.runtime import Runner
from resnet_deploy.runtime.tensorrt_backend import check_gpu


def test_importing_the_runner_needs_numpy_only() -> None:
    code = (
        "import sys; from resnet_deploy.runtime import Runner; "
        "print([m for m in ('torch', 'onnx', 'click', 'onnxruntime', 'tensorrt', 'PIL') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_classify_raw_images_matches_validation_preprocessing(trained_resnet20) -> None:
    from resnet_deploy.data import open_dataset
    from resnet_deploy.runtime.images import normalise

    _, onnx_path = trained_resnet20
    batch = next(open_dataset("digits").test.batches(64, size=32))
    floats = batch.images.numpy()
    images = list((floats.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8))  # what a camera gives
    with Runner.load(onnx_path) as runner:
        top = runner.classify(images, topk=3)
        reference = runner.infer(normalise(floats, runner.metadata))  # how validate feeds the model
        assert np.abs(runner.preprocess(images) - normalise(floats, runner.metadata)).max() < 1e-6
        assert runner.class_names == tuple(str(i) for i in range(10))
    assert [t[0].index for t in top] == list(reference.argmax(1))
    probs = np.exp(reference - reference.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for row, best in enumerate(top):
        assert len(best) == 3 and best[0].score >= best[1].score >= best[2].score
        assert best[0].score == pytest.approx(probs[row].max(), rel=1e-5) and best[0].label == str(best[0].index)
    with pytest.raises(ResnetDeployError, match="was closed"):
        runner.infer(np.zeros((1, 3, 32, 32), np.float32))


def test_preprocessing_follows_the_model(trained_resnet20) -> None:
    from PIL import Image

    from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
    from resnet_deploy.models.registry import build_model
    from resnet_deploy.runtime.images import preprocess

    imagenet = ArtifactMetadata(config=build_model(18).config, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    photo = Image.fromarray(np.full((300, 400, 3), 128, np.uint8))
    gray = np.full((50, 60), 255, np.uint8)
    batch = preprocess([photo, gray], imagenet)
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    assert np.allclose(batch[0], (128 / 255 - 0.5) / 0.25, atol=1e-5) and np.allclose(batch[1], 2.0, atol=1e-5)
    with pytest.raises(ResnetDeployError, match="image 0 is a float64 array"):
        preprocess([np.zeros((32, 32, 3))], imagenet)
    with pytest.raises(ResnetDeployError, match=r"image 0 has shape \(3, 32, 32\)"):
        preprocess([np.zeros((3, 32, 32), np.uint8)], imagenet)
    with pytest.raises(ResnetDeployError, match="no images"):
        preprocess([], imagenet)


@pytest.mark.rtx
def test_engines_are_checked_against_their_sidecar_before_loading(trained_resnet20, tmp_path) -> None:
    from resnet_deploy.engine.options import BuildOptions
    from resnet_deploy.pipeline import build_engine

    _, onnx_path = trained_resnet20
    result = build_engine(onnx_path, tmp_path / "r.engine", BuildOptions(target_cc=("8.9",)))
    sidecar = json.loads(result.sidecar_path.read_text())

    with pytest.raises(ResnetDeployError, match=r"needs CUDA memory from Python|no usable NVIDIA GPU"):
        Runner.load(result.path)  # right file, right version; this machine has no GPU
    (tmp_path / "copy.engine").write_bytes(result.path.read_bytes()[:1000])
    with pytest.raises(ResnetDeployError, match=r"copy.engine.json not found.*rebuild the engine"):
        Runner.load(tmp_path / "copy.engine")
    (tmp_path / "copy.engine.json").write_text(json.dumps(sidecar))
    with pytest.raises(EngineMismatchError, match="truncated, damaged or replaced; rebuild it here: resnet-deploy"):
        Runner.load(tmp_path / "copy.engine")
    old = {**sidecar, "backend_version": "1.0.0.1"}
    result.sidecar_path.write_text(json.dumps(old))
    with pytest.raises(EngineMismatchError, match=r"built with tensorrt-rtx 1\.0\.0\.1 but .* is installed"):
        Runner.load(result.path)


def test_gpu_checks() -> None:
    from resnet_deploy.artifacts import EngineSidecar, EngineTargets

    def sidecar(**fields):
        return EngineSidecar(
            engine_bytes=0, engine_sha256="", backend="tensorrt", backend_version="10.3", model={}, **fields
        )

    rtx = sidecar(targets=EngineTargets(compute_capabilities=("8.6", "8.9")), source_onnx="m.onnx", precision="int8")
    check_gpu(rtx, "RTX 4090", "8.9", "m.engine")
    with pytest.raises(
        EngineMismatchError, match=r"built for compute capabilities 8\.6, 8\.9 but this GPU \(RTX 5090\)"
    ):
        check_gpu(rtx, "RTX 5090", "12.0", "m.engine")
    orin = EngineTargets(gpu="Orin", compute_capability="8.7")
    trt = sidecar(targets=orin, rebuild_command="resnet-deploy build-engine X")
    with pytest.raises(EngineMismatchError, match="rebuild it here: resnet-deploy build-engine X"):
        check_gpu(trt, "A100", "8.0", "m.engine")
    check_gpu(sidecar(targets=orin, hardware_compat="ampere+"), "A100", "8.0", "m.engine")


def test_edge_app_classifies_a_folder(trained_resnet20, tmp_path) -> None:
    from pathlib import Path

    from PIL import Image

    from resnet_deploy.data import open_dataset

    _, onnx_path = trained_resnet20
    batch = next(open_dataset("digits").test.batches(3, size=32))
    for i, image in enumerate(batch.images.numpy()):
        Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    app = Path(__file__).resolve().parents[2] / "examples" / "edge_app.py"
    run = subprocess.run(
        [sys.executable, str(app), str(onnx_path), str(tmp_path), "--topk", "2"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.count("%") == 2 for line in lines)
    assert "broken.png: skipped" in run.stderr
    missing = subprocess.run(
        [sys.executable, str(app), str(tmp_path / "x.onnx"), str(tmp_path)], capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr


def test_options_that_do_not_fit_the_artifact_are_named(trained_resnet20) -> None:
    checkpoint, onnx_path = trained_resnet20
    with pytest.raises(
        ResnetDeployError, match="option cuda_graph does not apply to onnxruntime or openvino artifacts"
    ):
        Runner.load(onnx_path, cuda_graph=True)
    with pytest.raises(ResnetDeployError, match="option providers does not apply to pytorch artifacts"):
        Runner.load(checkpoint, providers=["CPUExecutionProvider"])
    with pytest.raises(ResnetDeployError, match=r"backend openvino does not run \S+\.pt; \.pt files run on pytorch"):
        Runner.load(checkpoint, backend="openvino")
    with Runner.load(onnx_path, backend="onnxruntime", threads=1) as runner:
        assert runner.describe()["providers"] == ["CPUExecutionProvider"]


def test_running_an_onnx_loads_onnxruntime_but_not_torch_or_onnx(trained_resnet20) -> None:
    _, onnx_path = trained_resnet20
    code = (
        "import sys, numpy as np; from resnet_deploy.runtime import Runner; "
        f"r = Runner.load({str(onnx_path)!r}); r.classify([np.zeros((32, 32, 3), np.uint8)]); "
        "print(sorted(m for m in ('torch', 'onnx', 'click', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['onnxruntime']"
