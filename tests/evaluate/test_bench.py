"""`bench`: percentiles and throughput per artifact and batch size, side by side, with the machine named."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.evaluate import bench as bench_module
from resnet_deploy.evaluate.bench import BenchReport, BenchRow, run_bench, summarise
from resnet_deploy.runtime import open_backend
from tests.cli_helpers import assert_one_line_error, invoke


def test_bench_cli_rows_json_and_plot(trained_resnet20, tmp_path) -> None:
    import torch

    checkpoint, onnx_path = trained_resnet20
    torch.set_num_threads(2)
    plot = tmp_path / "bench.png"
    args = [str(checkpoint), str(onnx_path), "--batch", "1,4", "--iters", "4", "--warmup", "1", "--threads", "1"]
    args += ["--backend", "onnxruntime"]  # auto would time OpenVINO against it and may pick either
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
    assert "IQR/p50" in text.stdout and "* p99 of N<100 runs is their max (N = 4)" in text.stdout


def test_speedups_are_ratios_of_medians() -> None:
    row = dict(backend="onnxruntime", precision="fp32", p90_ms=0, p99_ms=0, mean_ms=0, images_per_second=0, iters=1)
    report = BenchReport({}, [BenchRow("a", batch=1, p50_ms=50.0, **row), BenchRow("b", batch=1, p50_ms=25.0, **row)])
    assert report.speedups("a") == {("a", 1): 1.0, ("b", 1): 2.0}
    assert "2.00x" in report.table()


def test_bench_refusals(trained_resnet20, tmp_path) -> None:
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    _, onnx_path = trained_resnet20

    big = open_model(depth=20, input_size=64)
    export_onnx(big.model, tmp_path / "r64.onnx", big.metadata, verify=False)
    with open_backend(onnx_path) as a, open_backend(tmp_path / "r64.onnx") as b:
        with pytest.raises(ResnetDeployError, match="different inputs"):
            run_bench([a, b], [1])
        with pytest.raises(ResnetDeployError, match=r"batch sizes \(`batches`\) must be >= 1"):
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


# Synthetic timings (milliseconds): the same 20 values in every order below
STABLE = [10.0, 10.5] * 10  # p50 10.25, IQR 0.5 (5% of p50), max 10.5
LOADED = [10.0, 30.0] * 10  # bimodal under load: p50 20, IQR 20 (100% of p50)
OUTLIER = [10.0] * 19 + [40.0]  # one call 4x p50, IQR 0


class ScriptedBackend:
    """A backend whose ``timed_infer`` returns the given timings in turn (the clock is never read)."""

    kind, precision, timer, input_shape = "onnxruntime", "fp32", "perf_counter", (1, 4, 4)
    input_dtype = np.dtype(np.float32)
    chosen_because, notes = "", ()  # how a runtime was chosen (auto), and what could not be used

    def __init__(self, name: str, ms: Iterable[float]) -> None:
        self.path = Path(name)
        self.timings = iter([m / 1000 for m in ms])
        self.untimed = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.untimed += 1
        return np.zeros((len(batch), 10), np.float32)

    def timed_infer(self, batch: np.ndarray) -> float:
        return next(self.timings)

    def __enter__(self) -> ScriptedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_module, "PAUSE_SECONDS", 0)


def test_spread_of_synthetic_timings() -> None:
    stats = summarise([m / 1000 for m in STABLE])
    assert stats["p50_ms"] == pytest.approx(10.25)
    assert stats["iqr_ms"] == pytest.approx(0.5)  # p75 10.5 - p25 10.0
    assert stats["std_ms"] == pytest.approx(np.sqrt(20 * 0.25**2 / 19))  # sample std, ddof 1
    assert stats["max_ms"] == stats["p99_ms"] == pytest.approx(10.5)
    loaded = summarise([m / 1000 for m in LOADED])
    assert (loaded["p50_ms"], loaded["iqr_ms"]) == (pytest.approx(20.0), pytest.approx(20.0))


def test_unstable_rows_are_flagged_and_stable_ones_are_not(no_pause) -> None:
    backends = [
        ScriptedBackend(n, t) for n, t in (("stable.onnx", STABLE), ("loaded.onnx", LOADED), ("outlier.onnx", OUTLIER))
    ]
    report = run_bench(backends, [1], warmup=2, iters=20)
    rows = {r.artifact: r for r in report.rows}
    assert all(b.untimed == 2 + (bench_module.BLOCKS - 1) for b in backends)  # warm-up, then one per later block
    assert rows["stable.onnx"].spread == pytest.approx(0.5 / 10.25) and not rows["stable.onnx"].unstable
    assert rows["loaded.onnx"].spread == pytest.approx(1.0) and rows["loaded.onnx"].unstable  # IQR > 25% of p50
    assert rows["outlier.onnx"].spread == 0 and rows["outlier.onnx"].max_over_p50 == pytest.approx(4.0)
    assert rows["outlier.onnx"].unstable  # max > 3x p50
    warnings = report.warnings()
    assert [w.split(":")[0] for w in warnings] == ["loaded.onnx batch 1", "outlier.onnx batch 1"]
    assert "IQR 100% of p50, max 1.5x p50 over 20 runs" in warnings[0]
    assert "IQR 0% of p50, max 4.0x p50 over 20 runs" in warnings[1]
    lines = report.table().splitlines()
    assert [line.split()[-3] for line in lines[1:4]] == ["5%", "100%!", "0%!"]
    assert lines[-1].startswith("! unstable: IQR above 25% of p50 or max above 3x p50")
    row = report.to_dict()["rows"][1]
    assert row["iqr_ms"] == pytest.approx(20.0) and row["std_ms"] == pytest.approx(np.std(LOADED, ddof=1))
    assert row["spread"] == pytest.approx(1.0) and row["unstable"] is True and row["max_ms"] == pytest.approx(30.0)
    assert report.to_dict()["unstable_when"] == {"iqr_over_p50_above": 0.25, "max_over_p50_above": 3.0}


def test_p99_is_labelled_the_max_below_100_runs(no_pause) -> None:
    few = run_bench([ScriptedBackend("a.onnx", STABLE)], [1], warmup=0, iters=20)
    assert few.rows[0].p99_ms == few.rows[0].max_ms == pytest.approx(10.5) and few.rows[0].p99_is_max
    assert "p99* ms" in few.table().splitlines()[0]
    assert few.table().splitlines()[-1] == "* p99 of N<100 runs is their max (N = 20)"
    assert few.to_dict()["rows"][0]["p99_is_max"] is True

    ramp = list(np.arange(1.0, 101.0))  # 1..100 ms: p99 interpolates to 99.01, the max is 100
    many = run_bench([ScriptedBackend("a.onnx", ramp)], [1], warmup=0, iters=100)
    assert many.rows[0].p99_ms == pytest.approx(99.01) and many.rows[0].max_ms == 100.0
    assert not many.rows[0].p99_is_max and "p99 ms" in many.table() and "p99*" not in many.table()


def test_bench_cli_warns_once_per_unstable_row(no_pause, monkeypatch) -> None:
    import resnet_deploy.runtime

    timings = {"stable.onnx": STABLE, "loaded.onnx": LOADED}
    monkeypatch.setattr(resnet_deploy.runtime, "open_backend", lambda path, **_: ScriptedBackend(path, timings[path]))
    result = invoke("bench", "stable.onnx", "loaded.onnx", "--batch", "1", "--iters", "20", "--warmup", "0", "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: loaded.onnx batch 1: unstable timings (IQR 100%")
    rows = json.loads(result.stdout)["rows"]
    assert [(r["artifact"], r["unstable"]) for r in rows] == [("stable.onnx", False), ("loaded.onnx", True)]
    assert "p99* ms" in result.stderr and "* p99 of N<100 runs is their max (N = 20)" in result.stderr
