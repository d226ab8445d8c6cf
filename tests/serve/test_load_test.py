"""`resnet-deploy load-test` against a real Triton server (`resnet-deploy serve`, started once for the module):
its numbers agree with what was sent and with the server's own count of requests; both protocols, the
tensor and the encoded-images models; the report and chart written; the refusals one line each."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_deploy.cli import main
from resnet_deploy.errors import OutputPathError, RunnerError
from resnet_deploy.pipeline import plan, run
from resnet_deploy.pipeline.load_test import LoadTestJob
from resnet_deploy.serve.load_test import LoadReport
from tests.serve.conftest import Served, free_ports, start_server

tritonclient_http = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def served(trained_resnet20) -> Iterator[Served]:
    _, onnx = trained_resnet20
    server = start_server(onnx, "--backend", "onnxruntime", "--max-batch", "8", "--threads", "1")
    yield server
    server.stop()


def metrics_successes(server: Served, model: str) -> int:
    """The server's own count of the model's successful requests (Triton's Prometheus counter)."""
    with urllib.request.urlopen(server.metrics) as answer:
        text = answer.read().decode()
    prefix = f'nv_inference_request_success{{model="{model}"'
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return int(float(lines[0].rsplit(" ", 1)[1])) if lines else 0


def statistics_successes(server: Served, model: str) -> int | None:
    """The same count through Triton's statistics API; None where the server restricts it (PyTriton's default)."""
    client = tritonclient_http.InferenceServerClient(server.http)
    try:
        stats = client.get_inference_statistics(model)
    except Exception:
        return None
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


def eventually(read, expected: int) -> int:
    """``read()`` once it reaches ``expected`` (the server counts just after it answers), or after 3 s."""
    import time

    deadline = time.monotonic() + 3
    value = read()
    while value < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def check_rows(report: LoadReport, *, requests: int | None = None) -> None:
    for row in report.rows:
        if requests is not None:
            assert row.requests == requests
        assert row.requests > 0 and row.errors == 0 and row.first_error is None
        assert row.images == row.requests * row.batch
        assert 0 < row.p50_ms <= row.p90_ms <= row.p99_ms <= row.max_ms
        assert row.p50_ms <= row.mean_ms * 3 and row.mean_ms <= row.max_ms
        assert row.requests_per_s == pytest.approx(row.requests / row.seconds)
        assert row.images_per_s == pytest.approx(row.requests_per_s * row.batch)
        # with c requests outstanding a request takes at least the wall time / (requests / c), roughly
        assert row.mean_ms / 1000 >= row.seconds / row.requests * row.concurrency * 0.5
        assert row.client_cpu > 0
        assert row.warmup == report.settings.warmup


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_counts_agree_with_what_was_sent_and_with_the_server(served, protocol: str) -> None:
    url = served.http if protocol == "http" else served.grpc
    before = metrics_successes(served, "resnet20")
    before_stats = statistics_successes(served, "resnet20")
    job = LoadTestJob(url, model="resnet20", protocol=protocol, concurrency=(1, 3), batch=(1, 4), requests=18, warmup=4)
    report = run(plan(job))
    assert [(r.batch, r.concurrency) for r in report.rows] == [(1, 1), (1, 3), (4, 1), (4, 3)]
    check_rows(report, requests=18)
    sent = sum(r.requests + r.warmup for r in report.rows)
    assert sent == 4 * (18 + 4)
    assert eventually(lambda: metrics_successes(served, "resnet20"), before + sent) == before + sent
    if before_stats is not None:  # a server that answers Triton's statistics API: the same count there
        assert statistics_successes(served, "resnet20") == before_stats + sent
        assert all(r.server is not None and r.server.success == r.requests for r in report.rows)
    assert report.model.to_dict()["shape"] == [3, 32, 32] and report.model.datatype == "FP32"
    assert report.model.max_batch_size == 8 and set(report.model.outputs) == {"logits", "probabilities"}
    assert report.local and any("share its" in note for note in report.notes)


def test_a_duration_window_counts_what_it_sent(served) -> None:
    before = metrics_successes(served, "resnet20")
    job = LoadTestJob(
        served.grpc, model="resnet20", protocol="grpc", concurrency=(2,), batch=(2,), duration=0.5, warmup=3
    )
    report = run(plan(job))
    check_rows(report)
    (row,) = report.rows
    assert 0.5 <= row.seconds < 5
    expected = before + row.requests + 3
    assert eventually(lambda: metrics_successes(served, "resnet20"), expected) == expected


def png_files(folder: Path, count: int) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def test_the_images_model_gets_encoded_files_and_the_report_and_chart_are_written(served, tmp_path: Path) -> None:
    folder = png_files(tmp_path / "photos", 5)
    report_path, chart = tmp_path / "load.json", tmp_path / "load.png"
    args = ["load-test", served.http, "--model", "resnet20_images", "--concurrency", "1,2", "--batch", "3"]
    args += ["--requests", "6", "--warmup", "2", "--input", str(folder), "-o", str(report_path), "--plot", str(chart)]
    before = metrics_successes(served, "resnet20_images")
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(report_path.read_text())
    printed = json.loads(result.stdout)
    assert printed["ok"] and printed["rows"] == written["rows"]
    assert written["model"] == "resnet20_images" and written["source"] == str(folder)
    assert written["input"] == {
        "name": "image", "datatype": "BYTES", "shape": [1], "max_batch_size": 8,
        "outputs": ["logits", "probabilities", "top"], "platform": "python",
    }  # fmt: skip
    assert [(r["batch"], r["concurrency"], r["requests"], r["images"], r["errors"]) for r in written["rows"]] == [
        (3, 1, 6, 18, 0),
        (3, 2, 6, 18, 0),
    ]
    assert {"cpu", "instruction_sets", "cores", "tritonclient"} <= set(written["machine"])
    assert written["server_on_this_machine"] is True
    expected = before + 2 * (6 + 2)
    assert eventually(lambda: metrics_successes(served, "resnet20_images"), expected) == expected
    from PIL import Image

    with Image.open(chart) as image:
        assert image.format == "PNG" and image.width > 600
        assert image.info["Description"] == written["written_by"]
    # a rerun replaces its own report and chart; a file of someone else's is refused
    again = CliRunner().invoke(main, [*args[:-4], "-o", str(report_path), "--plot", str(chart)])
    assert again.exit_code == 0, again.output
    assert "resnet20_images at http://" in again.output and "p50 ms" in again.output
    foreign = tmp_path / "mine.json"
    foreign.write_text("{}")
    with pytest.raises(OutputPathError, match=r"mine\.json"):
        plan(LoadTestJob(served.http, model="resnet20", output=foreign))


def test_a_frames_model_gets_uint8_frames(serve, trained_resnet20, tmp_path: Path) -> None:
    from resnet_deploy.pipeline import ConvertJob

    _, onnx = trained_resnet20
    frames_model = tmp_path / "f.onnx"
    run(plan(ConvertJob(onnx, precision=None, frame_size=(48, 40), output=frames_model)))
    server = serve(frames_model, "--backend", "onnxruntime", "--name", "frames")
    for source in ("random", str(png_files(tmp_path / "photos", 3))):
        report = run(
            plan(LoadTestJob(server.http, model="frames", concurrency=(2,), batch=(2,), requests=6, input=source))
        )
        check_rows(report, requests=6)
        assert report.model.datatype == "UINT8" and report.model.shape == (40, 48, 3)


# --- one-line refusals ------------------------------------------------------------------------------------


def refusal(args: list[str]) -> str:
    result = CliRunner().invoke(main, ["load-test", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output.strip()


def test_an_unreachable_server_is_named_with_what_to_start() -> None:
    (port,) = free_ports(1)
    message = refusal([f"127.0.0.1:{port}", "--model", "m"])
    assert message.startswith(f"error: no Triton server answers HTTP at 127.0.0.1:{port}")
    assert "`resnet-deploy serve MODEL`, or NVIDIA's Triton container" in message
    grpc = refusal([f"http://127.0.0.1:{port}", "--protocol", "grpc"])
    assert f"no Triton server answers GRPC at 127.0.0.1:{port}" in grpc


def test_an_unknown_model_is_refused_with_the_served_ones(served) -> None:
    message = refusal([served.http, "--model", "resnet21"])
    assert f"error: model 'resnet21' is not on the server at {served.http}: " in message
    if statistics_successes(served, "resnet20") is not None:
        assert "the server has resnet20, resnet20_images" in message
    else:  # PyTriton's default restricts the APIs that list models: the message says where to find them
        assert "the server does not list its models" in message and "`resnet-deploy serve` prints them" in message


def test_a_batch_over_the_models_max_is_refused(served) -> None:
    message = refusal([served.grpc, "--protocol", "grpc", "--model", "resnet20", "--batch", "4,16"])
    assert message == (
        f"error: --batch 16 is over the max_batch_size 8 of model resnet20 on {served.grpc}: send batches of 8 at "
        "most (or serve it with a larger max batch)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "1,x"], "'1,x' is not a comma-separated list of integers"),
        (["--concurrency", "4,0"], "--concurrency must be whole numbers of at least 1, got [4, 0]"),
        (["--batch", ""], "--batch is empty"),
        (["--requests", "10", "--duration", "2"], "give --requests or --duration, not both"),
        (["--duration", "0"], "--duration must be above 0 seconds"),
        (["-o", "report.txt"], "the load-test report is JSON: give a path ending in .json (-o), not report.txt"),
        (["--plot", "chart.jpg"], "the chart is a PNG: give a path ending in .png (--plot), not chart.jpg"),
        (["--input", "no-such-folder"], "image folder no-such-folder does not exist"),
    ],
)
def test_bad_options_are_refused_before_any_request(args: list[str], message: str) -> None:
    (port,) = free_ports(1)  # nothing listens: the refusal comes before any connection
    assert message in refusal([f"127.0.0.1:{port}", *args])


def test_a_bad_url_is_refused() -> None:
    with pytest.raises(RunnerError, match="`url` 'localhost' is not host:port"):
        plan(LoadTestJob("localhost"))
    with pytest.raises(RunnerError, match="not a ftp:// URL"):
        plan(LoadTestJob("ftp://host:21"))


def test_dry_run_says_the_plan_and_sends_nothing(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    args = ["load-test", f"127.0.0.1:{port}", "--model", "m", "--batch", "1,8", "-o", str(tmp_path / "r.json")]
    result = CliRunner().invoke(main, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"1. load m at 127.0.0.1:{port} over HTTP with random data: batch 1,8 at concurrency 1,4,16, 5 s each" in (
        result.output
    )
    assert f"writes {tmp_path / 'r.json'}  (load-test report)" in result.output
    assert not (tmp_path / "r.json").exists()
