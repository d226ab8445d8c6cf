"""A `resnet-deploy triton` repository's preprocessing model (Triton's Python backend) loaded by a real Triton
server (the binary PyTriton ships, started alone on the repository): it answers encoded images with the
runner's own preprocessing, bit for bit, and a bad image with an error."""

from __future__ import annotations

import io
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from resnet_deploy.pipeline import TritonJob, plan, run
from resnet_deploy.runtime import Runner
from tests.serve.conftest import ROOT, free_ports, serving_environment

tritonclient_http = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_preprocessing_model_runs_in_triton_as_the_runner_preprocesses(trained_resnet20, tmp_path: Path) -> None:
    python = serving_environment()
    _, onnx = trained_resnet20
    repository = tmp_path / "models"
    run(plan(TritonJob((onnx,), output=repository)))
    model = "resnet20_preprocess"
    assert (repository / model / "1" / "model.py").is_file()
    http, grpc, metrics = free_ports(3)
    server = subprocess.Popen(
        [str(python), str(ROOT / "tests" / "serve" / "tritonserver_alone.py"), str(repository), str(http), str(grpc),
         str(metrics), model],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{http}")
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.is_model_ready(model):
                    break
            except Exception:  # not listening yet
                pass
            assert server.poll() is None, server.stdout.read()[-3000:] if server.stdout else ""
            assert time.monotonic() < deadline, "Triton did not load the preprocessing model"
            time.sleep(0.2)
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 40), (32, 32), (97, 131))]
        data = np.array([[png(image)] for image in images], dtype=np.object_)
        request = tritonclient_http.InferInput("IMAGE", list(data.shape), "BYTES")
        request.set_data_from_numpy(data)
        got = client.infer(model, [request]).as_numpy("input")
        with Runner.load(onnx, backend="onnxruntime") as runner:
            np.testing.assert_array_equal(got, runner.preprocess(images))
        bad = np.array([[png(images[0])], [b"\x89PNG but cut short"]], dtype=np.object_)
        request = tritonclient_http.InferInput("IMAGE", list(bad.shape), "BYTES")
        request.set_data_from_numpy(bad)
        with pytest.raises(InferenceServerException, match="image 1 of the request is not an image Pillow can decode"):
            client.infer(model, [request])
        assert client.is_model_ready(model)  # and it goes on
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
