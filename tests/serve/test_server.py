"""`resnet-deploy serve`: a real Triton (PyTriton) with the runner behind it, spoken to with tritonclient over
HTTP and gRPC. The answers are the runner's, exactly; bad requests get an error and the server goes on."""

from __future__ import annotations

import io
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_deploy.cli import main
from resnet_deploy.runtime import Runner
from tests.serve.conftest import Served, free_ports, start_server

tritonclient_http = pytest.importorskip("tritonclient.http")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException


def digits_images(count: int) -> list[np.ndarray]:
    """Test images of the embedded digits, as uint8 RGB arrays at 3x their size (the model resizes)."""
    from PIL import Image

    from resnet_deploy.data.digits import load_digits_dataset

    test = load_digits_dataset().test
    out = []
    for index in range(count):
        array = np.ascontiguousarray(test.images[index].permute(1, 2, 0).numpy())  # (32, 32, 3) uint8
        out.append(np.asarray(Image.fromarray(array).resize((96, 96))))
    return out


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(trained_resnet20) -> Iterator[tuple[Served, Path]]:
    _, onnx = trained_resnet20
    server = start_server(onnx, "--backend", "onnxruntime", "--instances", "2", "--max-batch", "16", "--topk", "3")
    yield server, onnx
    server.stop()


@pytest.fixture(scope="module")
def runner(served) -> Iterator[Runner]:
    with Runner.load(served[1], backend="onnxruntime") as r:
        yield r


def test_ready_line_describes_both_models_and_their_input(served) -> None:
    server, _ = served
    ready = server.ready
    assert ready["model"] == "resnet20" and ready["images_model"] == "resnet20_images"
    assert ready["input"] == {"name": "input", "shape": [3, 32, 32], "datatype": "FP32"}
    assert ready["classes"] == 10 and ready["max_batch"] == 16
    with urllib.request.urlopen(f"http://{server.http}/v2/health/ready") as answer:
        assert answer.status == 200


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_logits_are_the_runners_exactly(served, runner, protocol: str) -> None:
    server, _ = served
    client_module = tritonclient_http if protocol == "http" else tritonclient_grpc
    client = client_module.InferenceServerClient(server.http if protocol == "http" else server.grpc)
    batch = runner.preprocess(digits_images(5))
    request = client_module.InferInput("input", list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    answer = client.infer("resnet20", [request])
    expected = runner.infer(batch)
    assert answer.as_numpy("logits").dtype == np.float32
    np.testing.assert_array_equal(answer.as_numpy("logits"), expected)
    probabilities = answer.as_numpy("probabilities")
    scores = [[p.score for p in row] for row in runner.predictions(expected, topk=10)]
    np.testing.assert_allclose(np.sort(probabilities, axis=1)[:, ::-1], scores, rtol=1e-6)


def test_the_classification_extension_gives_the_runners_topk(served, runner) -> None:
    server, _ = served
    client = tritonclient_grpc.InferenceServerClient(server.grpc)
    batch = runner.preprocess(digits_images(4))
    request = tritonclient_grpc.InferInput("input", list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    wanted = tritonclient_grpc.InferRequestedOutput("probabilities", class_count=3)
    answer = client.infer("resnet20", [request], outputs=[wanted]).as_numpy("probabilities")
    expected = runner.predictions(runner.infer(batch), topk=3)
    for row, best in zip(answer, expected, strict=True):
        parsed = [item.decode().split(":") for item in row]
        assert [int(index) for _, index in parsed] == [p.index for p in best]
        np.testing.assert_allclose([float(score) for score, _ in parsed], [p.score for p in best], rtol=1e-5)


def test_encoded_images_give_the_runners_classes(served, runner) -> None:
    server, _ = served
    images = digits_images(6)
    client = tritonclient_http.InferenceServerClient(server.http)
    data = np.array([[png(image)] for image in images], dtype=np.object_)
    request = tritonclient_http.InferInput("image", list(data.shape), "BYTES")
    request.set_data_from_numpy(data)
    answer = client.infer("resnet20_images", [request])
    expected = runner.classify(images, topk=3)
    top = answer.as_numpy("top")
    assert top.shape == (6, 3)
    assert [[item.decode() for item in row] for row in top] == [
        [f"{p.score:.6f}:{p.index}:{p.label}" for p in row] for row in expected
    ]
    np.testing.assert_array_equal(answer.as_numpy("logits"), runner.infer(runner.preprocess(images)))


def test_bad_requests_get_an_error_and_the_server_goes_on(served, runner) -> None:
    server, _ = served
    client = tritonclient_http.InferenceServerClient(server.http)
    wrong_dtype = tritonclient_http.InferInput("input", [1, 3, 32, 32], "FP64")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float64))
    with pytest.raises(InferenceServerException, match=r"data-type is .FP64., but model .resnet20. expects .FP32."):
        client.infer("resnet20", [wrong_dtype])
    wrong_shape = tritonclient_http.InferInput("input", [1, 3, 31, 32], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 3, 31, 32), np.float32))
    with pytest.raises(InferenceServerException, match="unexpected shape"):
        client.infer("resnet20", [wrong_shape])
    not_images = np.array([[png(digits_images(1)[0])], [b"GIF89a but not really"]], dtype=np.object_)
    request = tritonclient_http.InferInput("image", list(not_images.shape), "BYTES")
    request.set_data_from_numpy(not_images)
    with pytest.raises(InferenceServerException, match="image 1 of the request is not an image Pillow can decode"):
        client.infer("resnet20_images", [request])
    empty = np.array([[b""]], dtype=np.object_)
    request = tritonclient_http.InferInput("image", [1, 1], "BYTES")
    request.set_data_from_numpy(empty)
    with pytest.raises(InferenceServerException, match="image 0 of the request is empty"):
        client.infer("resnet20_images", [request])
    # still serving, and right
    batch = runner.preprocess(digits_images(2))
    good = tritonclient_http.InferInput("input", list(batch.shape), "FP32")
    good.set_data_from_numpy(batch)
    np.testing.assert_array_equal(client.infer("resnet20", [good]).as_numpy("logits"), runner.infer(batch))
    assert server.process.poll() is None


def test_metrics_count_the_requests_served(served, runner) -> None:
    server, _ = served
    client = tritonclient_grpc.InferenceServerClient(server.grpc)
    batch = runner.preprocess(digits_images(1))
    request = tritonclient_grpc.InferInput("input", list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)

    def successes() -> int:
        with urllib.request.urlopen(server.metrics) as answer:
            text = answer.read().decode()
        lines = [line for line in text.splitlines() if line.startswith('nv_inference_request_success{model="resnet20"')]
        return int(float(lines[0].rsplit(" ", 1)[1])) if lines else 0

    before = successes()
    for _ in range(3):
        client.infer("resnet20", [request])
    assert successes() == before + 3


def test_dynamic_batching_serves_concurrent_requests_with_the_same_answers(served, runner) -> None:
    server, _ = served
    client = tritonclient_grpc.InferenceServerClient(server.grpc)
    images = digits_images(16)
    batches = [runner.preprocess(images[i : i + 1]) for i in range(16)]
    results: dict[int, np.ndarray] = {}

    def done(index: int):
        def callback(result, error) -> None:
            assert error is None, error
            results[index] = result.as_numpy("logits")

        return callback

    for index, batch in enumerate(batches):
        request = tritonclient_grpc.InferInput("input", list(batch.shape), "FP32")
        request.set_data_from_numpy(batch)
        client.async_infer("resnet20", [request], callback=done(index))
    import time

    deadline = time.monotonic() + 60
    while len(results) < 16 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(results) == 16
    expected = runner.infer(np.concatenate(batches))
    got = np.concatenate([results[i] for i in range(16)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)  # batched by Triton: another batch size
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_a_frames_model_takes_raw_uint8_frames(serve, trained_resnet20, tmp_path: Path) -> None:
    from resnet_deploy.pipeline import ConvertJob, plan, run

    _, onnx = trained_resnet20
    frames_model = tmp_path / "f.onnx"
    run(plan(ConvertJob(onnx, precision=None, frame_size=(48, 40), output=frames_model)))
    server = serve(frames_model, "--backend", "onnxruntime", "--name", "digits-frames")
    assert server.ready["input"] == {"name": "input", "shape": [40, 48, 3], "datatype": "UINT8"}
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    client = tritonclient_http.InferenceServerClient(server.http)
    request = tritonclient_http.InferInput("input", list(frames.shape), "UINT8")
    request.set_data_from_numpy(frames)
    with Runner.load(frames_model, backend="onnxruntime") as frames_runner:
        expected = frames_runner.infer(frames)
    np.testing.assert_array_equal(client.infer("digits-frames", [request]).as_numpy("logits"), expected)
    code, final, stderr = server.stop(signal.SIGINT)
    assert code == 0 and final["ended"] == "interrupted", (code, server.stdout_rest, stderr)


def test_sigterm_lets_requests_in_flight_finish(serve, trained_resnet20) -> None:
    import time

    _, onnx = trained_resnet20
    server = serve(onnx, "--backend", "onnxruntime", "--max-batch", "1024", "--exit-timeout", "60")
    client = tritonclient_grpc.InferenceServerClient(server.grpc)
    images = digits_images(1) * 800  # decoding and preprocessing 800 images: seconds in flight
    data = np.array([[png(image)] for image in images], dtype=np.object_)
    request = tritonclient_grpc.InferInput("image", list(data.shape), "BYTES")
    request.set_data_from_numpy(data)
    answers: list[tuple[float, object]] = []
    client.async_infer(
        "resnet20_images", [request], callback=lambda result, error: answers.append((time.monotonic(), error or result))
    )
    time.sleep(0.3)  # the request is in the server
    signalled = time.monotonic()
    code, final, stderr = server.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert final.get("ended") == "terminated" and "requests in flight finish first" in stderr
    assert len(answers) == 1, answers
    answered, answer = answers[0]
    assert not isinstance(answer, Exception), str(answer)
    assert answered > signalled  # it was in flight when the signal came, and it was answered
    assert answer.as_numpy("top").shape == (800, 5)  # type: ignore[attr-defined]


# --- refusals, in one line, before any server starts (this environment has no PyTriton) ----------------


def test_a_port_in_use_is_refused_in_one_line(trained_resnet20) -> None:
    import socket

    _, onnx = trained_resnet20
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc, metrics = free_ports(2)
        result = CliRunner().invoke(
            main,
            ["serve", str(onnx), "--http-port", str(port), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        )
    assert result.exit_code != 0
    assert f"error: port {port} on 127.0.0.1 is in use: choose another --http-port" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preferred-batch", "4,32"], "--preferred-batch [4, 32] has a size over --max-batch 8"),
        (["--preferred-batch", "4,x"], "is not a comma-separated list of batch sizes"),
        (["--name", "my model"], "model name 'my model' has characters Triton refuses"),
        (["--host", "example.org"], "--host 'example.org' is not an IP address"),
        (["--http-port", "8001"], "--http-port, --grpc-port and --metrics-port must differ"),
        (["--instances", "0"], "--instances must be a whole number of at least 1"),
    ],
)
def test_bad_options_are_refused_in_one_line(trained_resnet20, args: list[str], message: str) -> None:
    _, onnx = trained_resnet20
    result = CliRunner().invoke(main, ["serve", str(onnx), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_without_pytriton_serve_says_how_to_make_the_serving_environment(trained_resnet20) -> None:
    from resnet_deploy._lazy import is_available

    if is_available("pytriton"):
        pytest.skip("PyTriton is installed here")
    _, onnx = trained_resnet20
    http, grpc, metrics = free_ports(3)
    args = ["serve", str(onnx), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "PyTriton in an environment of its own (it requires numpy<2): `bash scripts/serve.sh MODEL`" in result.output


def test_the_log_file_is_tritons_own_and_replaces_only_an_earlier_one(serve, trained_resnet20, tmp_path) -> None:
    from resnet_deploy.pipeline import ServeJob, plan
    from resnet_deploy.serve.server import is_triton_log, processes_log

    _, onnx = trained_resnet20
    log = tmp_path / "triton.log"
    code, _, stderr = serve(onnx, "--backend", "onnxruntime", "--log-file", str(log)).stop()
    assert code == 0, stderr
    assert is_triton_log(log) and log.stat().st_size > 0 and processes_log(log).exists()
    plan(ServeJob(onnx, log_file=log))  # a rerun may replace it: planned without a refusal
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    http, grpc, metrics = free_ports(3)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    result = CliRunner().invoke(main, ["serve", str(onnx), *ports, "--log-file", str(notes)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "notes.txt" in result.output and "--overwrite" in result.output
    assert notes.read_text() == "my notes\n"
