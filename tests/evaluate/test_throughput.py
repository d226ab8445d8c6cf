"""Throughput mode: images/s per batch size and number of streams, the best of each artifact, and the CLI."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from resnet_deploy.errors import BenchmarkError
from resnet_deploy.evaluate import bench as bench_module
from resnet_deploy.evaluate.bench import (
    REQUESTS_PER_STREAM,
    ThroughputRow,
    describe_machine,
    row_labels,
    run_throughput,
)
from tests.cli_helpers import assert_one_line_error, invoke
from tests.fake_clock import FakeClock


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """``bench``'s clock, advanced only by the scripted backends (nothing real is timed)."""
    fake = FakeClock()
    monkeypatch.setattr(bench_module, "time", SimpleNamespace(perf_counter=fake.perf_counter, sleep=fake.sleep))
    return fake


class Scripted:
    """A backend opened with ``streams`` whose timed rounds run at the scripted images/s, in turn."""

    precision, input_dtype = "fp32", np.dtype(np.float32)

    def __init__(self, name, kind, streams, rates, clock, input_shape=(1, 4, 4), chosen_because=""):
        self.path, self.kind, self.streams, self.clock = Path(name), kind, streams, clock
        self.rates = {batch: list(values) for batch, values in rates.items()}  # batch -> images/s per round
        self.input_shape, self.chosen_because, self.notes = input_shape, chosen_because, []
        self.calls: list[tuple[int, tuple[int, ...]]] = []  # (batches in the call, their shape)
        self.closed = False

    def infer_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        assert not self.closed
        (shape,) = {b.shape for b in batches}
        assert {b.dtype for b in batches} == {np.dtype(np.float32)}
        self.calls.append((len(batches), shape))
        if len(batches) == self.streams * REQUESTS_PER_STREAM:  # a timed round, not the warm-up
            self.clock.now += shape[0] * len(batches) / self.rates[shape[0]].pop(0)
        return [np.zeros((len(b), 10), np.float32) for b in batches]

    def close(self) -> None:
        self.closed = True


# images/s per (artifact, runtime) -> streams -> batch -> rounds
RATES = {
    ("a.onnx", "onnxruntime"): {1: {1: [100, 120, 110], 4: [300] * 3}, 2: {1: [150] * 3, 4: [250] * 3}},
    ("a.onnx", "openvino"): {1: {1: [90] * 3, 4: [280] * 3}, 2: {1: [200] * 3, 4: [400, 380, 420]}},
    ("b.onnx", "openvino"): {1: {1: [50] * 3, 4: [50] * 3}, 2: {1: [60] * 3, 4: [50] * 3}},
}


def test_throughput_rows_rates_and_the_best_of_each_artifact(clock) -> None:
    opened: list[Scripted] = []
    counts: list[int] = []

    def open_all(count: int) -> list[Scripted]:
        counts.append(count)
        assert all(b.closed for b in opened)  # the previous stream count's backends were let go first
        now = [Scripted(name, kind, count, RATES[(name, kind)][count], clock) for name, kind in RATES]
        opened.extend(now)
        return now

    report = run_throughput(open_all, [1, 4], [1, 2], rounds=3)
    assert counts == [1, 2] and all(b.closed for b in opened)
    for backend in opened:  # each batch size: one warm call of one batch per stream, then 3 timed rounds
        n = backend.streams
        warm_then_timed = [(n, (1, 1, 4, 4))] + [(n * 4, (1, 1, 4, 4))] * 3
        assert backend.calls == warm_then_timed + [(c, (4, *s[1:])) for c, s in warm_then_timed]
    assert clock.sleeps == [bench_module.PAUSE_SECONDS] * (2 * 2 * 3 * 3)  # a pause before every timed round

    got = [(r.label, r.backend, r.batch, r.streams, r.images_per_second, r.best) for r in report.rows]
    approx = pytest.approx
    assert got == [
        ("a.onnx (onnxruntime)", "onnxruntime", 1, 1, approx(110), False),  # the median of 100, 120, 110
        ("a.onnx (onnxruntime)", "onnxruntime", 1, 2, approx(150), False),
        ("a.onnx (onnxruntime)", "onnxruntime", 4, 1, approx(300), True),
        ("a.onnx (onnxruntime)", "onnxruntime", 4, 2, approx(250), False),
        ("a.onnx (openvino)", "openvino", 1, 1, approx(90), False),
        ("a.onnx (openvino)", "openvino", 1, 2, approx(200), False),
        ("a.onnx (openvino)", "openvino", 4, 1, approx(280), False),
        ("a.onnx (openvino)", "openvino", 4, 2, approx(400), True),
        ("b.onnx", "openvino", 1, 1, approx(50), False),
        ("b.onnx", "openvino", 1, 2, approx(60), True),
        ("b.onnx", "openvino", 4, 1, approx(50), False),
        ("b.onnx", "openvino", 4, 2, approx(50), False),
    ]
    for label in ("a.onnx (onnxruntime)", "a.onnx (openvino)", "b.onnx"):
        rows = [r for r in report.rows if r.label == label]
        (best,) = [r for r in rows if r.best]
        assert best.images_per_second == max(r.images_per_second for r in rows)
    assert report.rows[0].spread == pytest.approx((115 - 105) / 110)  # IQR / median of the rounds
    assert report.rows[7].spread == pytest.approx((410 - 390) / 400) and report.rows[1].spread == pytest.approx(0)
    assert {(r.artifact, r.precision, r.rounds) for r in report.rows} == {("a.onnx", "fp32", 3), ("b.onnx", "fp32", 3)}
    assert [(r.label, r.images_per_second) for r in report.best()] == [
        ("a.onnx (openvino)", approx(400)),
        ("a.onnx (onnxruntime)", approx(300)),
        ("b.onnx", approx(60)),
    ]

    table = report.table().splitlines()
    assert "streams" in table[0] and "vs best" in table[0]
    assert sum(line.endswith(" *") for line in table) == 3
    assert table[-3:] == [
        "best for a.onnx (openvino): batch 4 on 2 streams, 400.0 images/s",
        "best for a.onnx (onnxruntime): batch 4 on 1 stream, 300.0 images/s",
        "best for b.onnx: batch 1 on 2 streams, 60.0 images/s",
    ]
    assert table[1].split()[-1] == "0.37x"  # a.onnx on ONNX Runtime, batch 1, 1 stream: 110 / 300 of its best
    data = report.to_dict()
    assert (data["mode"], data["requests_per_stream"]) == ("throughput", REQUESTS_PER_STREAM)
    assert set(data["rows"][0]) == {f.name for f in fields(ThroughputRow)} and data["rows"][2]["best"] is True


def test_throughput_refusals(clock) -> None:
    def never(count: int) -> list:
        raise AssertionError("nothing should be opened")

    for batches, streams, rounds, needle in [
        ([0], [1], 1, "batch sizes (`batches`) must be >= 1"),
        ([], [1], 1, "batch sizes (`batches`) must be >= 1"),
        ([1], [0, 2], 1, "`streams` must be >= 1, got [0, 2]"),
        ([1], [], 1, "`streams` must be >= 1"),
        ([1], [1], 0, "`iters` (timed rounds) must be >= 1"),
    ]:
        with pytest.raises(BenchmarkError) as info:
            run_throughput(never, batches, streams, rounds=rounds)
        assert needle in str(info.value)
    with pytest.raises(BenchmarkError, match="nothing to benchmark"):
        run_throughput(lambda count: [], [1], [1])
    rates = {1: [1.0]}
    mixed = [
        Scripted("a.onnx", "openvino", 1, rates, clock),
        Scripted("b.onnx", "openvino", 1, rates, clock, (3, 8, 8)),
    ]
    with pytest.raises(BenchmarkError, match="different inputs"):
        run_throughput(lambda count: mixed, [1], [1])
    assert all(b.closed for b in mixed) and all(b.calls == [] for b in mixed)  # closed, never run


def test_row_labels_add_the_runtime_only_where_a_file_runs_on_several() -> None:
    def backend(name: str, kind: str, because: str = "") -> SimpleNamespace:
        return SimpleNamespace(path=Path("/x") / name, kind=kind, chosen_because=because)

    assert row_labels([backend("a.onnx", "openvino"), backend("b.pt", "pytorch")]) == ["a.onnx", "b.pt"]
    assert row_labels(
        [
            backend("a.onnx", "onnxruntime"),
            backend("a.onnx", "openvino"),
            backend("a.onnx", "openvino", "auto: OpenVINO; measured here"),
            backend("b.onnx", "onnxruntime", "auto: OpenVINO cannot run it"),
        ]
    ) == ["a.onnx (onnxruntime)", "a.onnx (openvino)", "a.onnx (auto)", "b.onnx"]


def test_files_of_one_name_in_different_folders_keep_apart() -> None:
    """runs/r20/model.onnx and runs/r56/model.onnx are two artifacts: their rows, bests and ratios stay apart."""

    def backend(path: str, kind: str = "onnxruntime") -> SimpleNamespace:
        return SimpleNamespace(path=Path(path), kind=kind, chosen_because="")

    assert row_labels([backend("/runs/r20/model.onnx"), backend("/runs/r56/model.onnx")]) == [
        "r20/model.onnx",
        "r56/model.onnx",
    ]
    assert row_labels(
        [
            backend("/runs/r20/model.onnx"),
            backend("/runs/r56/model.onnx", "openvino"),
            backend("/runs/r20/model.onnx", "openvino"),
        ]
    ) == ["r20/model.onnx (onnxruntime)", "r56/model.onnx", "r20/model.onnx (openvino)"]


@pytest.fixture
def no_pause(monkeypatch) -> None:
    monkeypatch.setattr(bench_module, "PAUSE_SECONDS", 0)


def test_bench_compares_one_file_on_both_runtimes(trained_resnet20, no_pause) -> None:
    openvino = pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    args = ["bench", str(onnx_path), "--backend", "onnxruntime,openvino", "--batch", "1", "--iters", "3"]
    result = invoke(*args, "--warmup", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert [(r["label"], r["artifact"], r["backend"]) for r in rows] == [
        ("resnet20.onnx (onnxruntime)", "resnet20.onnx", "onnxruntime"),
        ("resnet20.onnx (openvino)", "resnet20.onnx", "openvino"),
    ]
    for row in rows:
        assert (row["batch"], row["iters"], row["precision"]) == (1, 3, "fp32") and row["p50_ms"] > 0
        assert row["images_per_second"] == pytest.approx(1000 / row["p50_ms"], rel=1e-6)
    machine = report["machine"]
    isa = describe_machine(None)["instruction_sets"]
    assert machine["instruction_sets"] == isa and machine["openvino"] == openvino.__version__.split("-")[0]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("machine: ")]
    assert f"({isa})" in line if isa else "()" not in line
    assert f"openvino {machine['openvino']}" in line and f"onnxruntime {machine['onnxruntime']}" in line
    assert "auto:" not in result.stderr  # the runtimes were named, none chosen
    assert "resnet20.onnx (openvino)" in result.stderr  # the table's rows carry the runtime too


@pytest.mark.timeout(90, method="thread")  # a deadlock closing OpenVINO after streams ends the run, with stacks
def test_bench_streams_reports_throughput_for_each_stream_count(trained_resnet20, no_pause, monkeypatch) -> None:
    pytest.importorskip("openvino")
    from resnet_deploy.runtime import onnx_choice

    probes: list[list[int]] = []

    def probe(backends):  # OpenVINO measured faster, without timing anything
        probes.append([b.streams for b in backends])
        return [0.001, 0.002]

    monkeypatch.setattr(onnx_choice, "probe", probe)
    _, onnx_path = trained_resnet20
    result = invoke("bench", str(onnx_path), "--streams", "1,2", "--batch", "1", "--iters", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mode"] == "throughput" and report["requests_per_stream"] == REQUESTS_PER_STREAM
    rows = report["rows"]
    assert [(r["label"], r["backend"], r["batch"], r["streams"], r["rounds"]) for r in rows] == [
        ("resnet20.onnx", "openvino", 1, 1, 2),
        ("resnet20.onnx", "openvino", 1, 2, 2),
    ]
    assert probes == [[1, 1], [2, 2]]  # auto chose per stream count, each opened with its streams
    assert all(r["images_per_second"] > 0 and r["spread"] >= 0 for r in rows)
    (best,) = [r for r in rows if r["best"]]
    assert best["images_per_second"] == max(r["images_per_second"] for r in rows)
    said = [line for line in result.stderr.splitlines() if "auto: OpenVINO" in line]
    assert said == ["resnet20.onnx: auto: OpenVINO; measured here on a batch of 1: OpenVINO 1 ms, ONNX Runtime 2 ms"]
    assert re.search(r"best for resnet20\.onnx: batch 1 on [12] streams?, [\d.]+ images/s", result.stderr)


def test_bench_refusals_in_one_line(trained_resnet20, tmp_path) -> None:
    checkpoint, onnx_path = trained_resnet20
    wrong = invoke("bench", str(onnx_path), "--backend", "foo")
    assert_one_line_error(wrong, "foo is not a runtime for ONNX files; use auto, onnxruntime, openvino")
    both = invoke("bench", str(onnx_path), "--backend", "onnxruntime,foo,bar")
    assert_one_line_error(both, "foo, bar is not a runtime for ONNX files")
    assert_one_line_error(
        invoke("bench", str(checkpoint), str(onnx_path), "--streams", "2", "--batch", "1"),
        f"--streams above 1 runs ONNX files (on ONNX Runtime or OpenVINO); {checkpoint} is not one",
    )
    plot = invoke("bench", str(onnx_path), "--streams", "1,2", "--plot", str(tmp_path / "t.png"))
    assert_one_line_error(plot, "--plot charts latency; throughput mode (--streams) prints its table only")
    assert not (tmp_path / "t.png").exists()
    assert_one_line_error(invoke("bench", str(onnx_path), "--streams", "0", "--batch", "1"), "--streams must be >= 1")
    assert_one_line_error(invoke("bench", str(onnx_path), "--streams", "1,x"), "not a comma-separated list")
