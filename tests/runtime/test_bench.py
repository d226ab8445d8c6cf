"""`bench`: percentiles and throughput per artifact and batch size, side by side, with the machine named."""

from __future__ import annotations

import json

import pytest

from resnet_deploy.bench import BenchReport, BenchRow, run_bench
from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.runtime import open_backend
from tests.cli_helpers import assert_one_line_error, invoke


def test_bench_cli_rows_json_and_plot(trained_resnet20, tmp_path) -> None:
    import torch

    checkpoint, onnx_path = trained_resnet20
    torch.set_num_threads(2)
    plot = tmp_path / "bench.png"
    args = [str(checkpoint), str(onnx_path), "--batch", "1,4", "--iters", "4", "--warmup", "1", "--threads", "1"]
    result = invoke("bench", *args, "--json", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert [(r["artifact"], r["batch"]) for r in rows] == [
        ("model.pt", 1),
        ("resnet20.onnx", 1),
        ("model.pt", 4),
        ("resnet20.onnx", 4),
    ]
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["iters"] == 4
        assert row["images_per_second"] == pytest.approx(row["batch"] * 1000 / row["p50_ms"], rel=1e-6)
    assert {r["backend"] for r in rows} == {"pytorch", "onnxruntime"} and {r["timer"] for r in rows} == {"perf_counter"}
    assert report["machine"]["cores"] >= 1 and report["machine"]["threads"] == 1 and report["machine"]["cpu"]
    assert torch.get_num_threads() == 1  # --threads reached the PyTorch backend too
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = invoke("bench", *args)
    assert "machine:" in text.stdout and "vs first" in text.stdout and "resnet20.onnx" in text.stdout


def test_speedups_are_ratios_of_medians() -> None:
    row = dict(backend="onnxruntime", precision="fp32", p90_ms=0, p99_ms=0, mean_ms=0, images_per_second=0, iters=1)
    report = BenchReport({}, [BenchRow("a", batch=1, p50_ms=50.0, **row), BenchRow("b", batch=1, p50_ms=25.0, **row)])
    assert report.speedups("a") == {("a", 1): 1.0, ("b", 1): 2.0}
    assert "2.00x" in report.table()


def test_bench_refusals(trained_resnet20, tmp_path) -> None:
    from resnet_deploy.export import export_onnx
    from resnet_deploy.model_source import open_model

    _, onnx_path = trained_resnet20

    big = open_model(depth=20, input_size=64)
    export_onnx(big.model, tmp_path / "r64.onnx", big.metadata, verify=False)
    with open_backend(onnx_path) as a, open_backend(tmp_path / "r64.onnx") as b:
        with pytest.raises(ResnetDeployError, match="different inputs"):
            run_bench([a, b], [1])
        with pytest.raises(ResnetDeployError, match="--batch sizes must be >= 1"):
            run_bench([a], [0])
    assert_one_line_error(invoke("bench", str(onnx_path), "--batch", "1,x"), "not a comma-separated list")
    assert_one_line_error(invoke("bench", str(tmp_path / "missing.onnx")), "not found")


@pytest.mark.gpu
def test_gpu_backends_are_timed_with_cuda_events(trained_resnet20) -> None:
    checkpoint, _ = trained_resnet20
    with open_backend(checkpoint, device="cuda") as gpu:
        report = run_bench([gpu], [1, 8], warmup=2, iters=5)
    assert {r.timer for r in report.rows} == {"cuda-events"} and all(r.p50_ms > 0 for r in report.rows)
    assert report.machine["gpu"]
