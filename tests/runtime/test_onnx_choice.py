"""backend="auto": OpenVINO unless ONNX Runtime is faster here by more than the margin, and why, said."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from resnet_deploy.errors import RunnerError
from resnet_deploy.runtime import Runner, onnx_choice, open_backend
from resnet_deploy.runtime.onnx_choice import MARGIN, choose_faster, open_onnx
from tests.cli_helpers import invoke
from tests.fake_clock import FakeClock
from tests.runtime.test_openvino_backend import INSTALL, MISSING, with_unconvertible_op

X = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def inverse_onnx(trained_resnet20, tmp_path_factory) -> Path:
    _, onnx_path = trained_resnet20
    return with_unconvertible_op(onnx_path, tmp_path_factory.mktemp("inverse") / "inverse.onnx")


@pytest.fixture
def scripted_probe(monkeypatch):
    """Replace the timing with the milliseconds a test sets: ``script["ms"] = (openvino, onnxruntime)``."""
    script: dict = {"ms": (1.0, 1.0), "calls": []}

    def probe(backends):
        script["calls"].append([b.kind for b in backends])
        return [ms / 1000 for ms in script["ms"]]

    monkeypatch.setattr(onnx_choice, "probe", probe)
    return script


@pytest.fixture
def no_probe(monkeypatch):
    """Fail the test if anything is timed or OpenVINO is opened to be timed."""

    def refuse(*args, **kwargs):
        raise AssertionError("auto should not have timed the runtimes here")

    monkeypatch.setattr(onnx_choice, "probe", refuse)
    monkeypatch.setattr(onnx_choice, "choose_faster", refuse)


def assert_closed(backend) -> None:
    with pytest.raises(RunnerError, match="was closed; open it again to run it"):
        backend.infer(X)


def test_margin_is_ten_percent() -> None:
    assert MARGIN == 0.10


@pytest.mark.parametrize(
    ("ov_ms", "ort_ms", "winner"),
    [
        (1.0, 0.95, "openvino"),  # ONNX Runtime 5% faster: a near tie goes to OpenVINO
        (1.0, 1.0, "openvino"),
        (1.0, 1.3, "openvino"),  # OpenVINO faster
        (1.09, 1.0, "openvino"),  # just inside the margin
        (1.12, 1.0, "onnxruntime"),  # just outside it
        (1.0, 0.8, "onnxruntime"),  # ONNX Runtime 20% faster
    ],
)
def test_choose_faster_keeps_openvino_unless_onnxruntime_wins_by_the_margin(
    trained_resnet20, scripted_probe, ov_ms, ort_ms, winner
) -> None:
    pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    scripted_probe["ms"] = (ov_ms, ort_ms)
    ov, ort = open_backend(onnx_path, backend="openvino"), open_backend(onnx_path, backend="onnxruntime")
    chosen = choose_faster(ov, ort)
    assert scripted_probe["calls"] == [["openvino", "onnxruntime"]]
    assert chosen.kind == winner and chosen is (ov if winner == "openvino" else ort)
    name = "OpenVINO" if winner == "openvino" else "ONNX Runtime"
    assert chosen.chosen_because == (
        f"auto: {name}; measured here on a batch of 1: OpenVINO {ov_ms:.3g} ms, ONNX Runtime {ort_ms:.3g} ms"
    )
    assert_closed(ort if chosen is ov else ov)  # the loser lets go of its threads and memory
    assert chosen.infer(X).shape == (4, 10)
    assert chosen.describe()["chosen_because"] == chosen.chosen_because
    chosen.close()


def test_choose_faster_names_the_batch_and_streams_it_timed(monkeypatch) -> None:
    class Opened:
        def __init__(self, kind: str) -> None:
            self.kind, self.static_batch, self.streams, self.chosen_because, self.closed = kind, 3, 2, "", False

        def close(self) -> None:
            self.closed = True

    ov, ort = Opened("openvino"), Opened("onnxruntime")
    monkeypatch.setattr(onnx_choice, "probe", lambda backends: [0.004, 0.002])
    chosen = choose_faster(ov, ort)  # type: ignore[arg-type]
    assert chosen is ort and ov.closed and not ort.closed
    assert (
        ort.chosen_because
        == "auto: ONNX Runtime; measured here on a batch of 3 x 2 streams: OpenVINO 4 ms, ONNX Runtime 2 ms"
    )


class Timed:
    """A backend each call of which takes the next of ``ms`` on the fake clock."""

    input_shape, input_dtype = (3, 8, 8), np.dtype(np.float32)

    def __init__(self, name: str, ms: list[float], clock: FakeClock, log: list, streams: int = 1, static_batch=None):
        self.name, self.ms, self.clock, self.log = name, iter(ms), clock, log
        self.streams, self.static_batch = streams, static_batch

    def _call(self, arrays: list[np.ndarray]) -> None:
        self.log.append((self.name, len(arrays), arrays[0].shape, arrays[0].dtype))
        self.clock.now += next(self.ms) / 1000

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._call([batch])
        return np.zeros((len(batch), 10), np.float32)

    def infer_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        self._call(batches)
        return [np.zeros((len(b), 10), np.float32) for b in batches]


def test_probe_alternates_blocks_and_takes_medians(monkeypatch) -> None:
    clock, log = FakeClock(), []
    monkeypatch.setattr(onnx_choice, "time", SimpleNamespace(perf_counter=clock.perf_counter, sleep=clock.sleep))
    warm, timed = onnx_choice.PROBE_WARMUP, onnx_choice.PROBE_BLOCKS * onnx_choice.PROBE_CALLS
    assert (warm, timed) == (2, 9)
    spiky = [2.0] * 4 + [40.0] + [2.0] * 4  # one slow call does not move the median
    first = Timed("a", [100.0] * warm + spiky, clock, log, static_batch=3)
    second = Timed("b", [100.0] * warm + [3.0] * timed, clock, log, streams=2)
    seconds = onnx_choice.probe([first, second])
    assert seconds == [pytest.approx(0.002), pytest.approx(0.003)]
    # warm-ups, then blocks of 3 calls alternating a b a b a b; the batch has the first's fixed rows
    assert [entry[0] for entry in log] == ["a", "a", "b", "b"] + (["a"] * 3 + ["b"] * 3) * 3
    assert {entry[2:] for entry in log} == {((3, 3, 8, 8), np.dtype(np.float32))}
    assert {entry[1] for entry in log if entry[0] == "b"} == {2}  # one batch per stream, through infer_many
    assert clock.sleeps == [onnx_choice.PROBE_PAUSE] * 6  # a pause before each block


@pytest.mark.parametrize(("ms", "kind"), [((1.0, 0.5), "onnxruntime"), ((1.0, 0.98), "openvino")])
def test_auto_keeps_what_the_probe_measured(trained_resnet20, scripted_probe, ms, kind) -> None:
    pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    scripted_probe["ms"] = ms
    with Runner.load(onnx_path) as runner:
        assert runner.backend.kind == kind and scripted_probe["calls"] == [["openvino", "onnxruntime"]]
        assert runner.describe()["chosen_because"].startswith("auto: ")
        assert runner.backend.notes == [] and "notes" not in runner.describe()
    with open_onnx(onnx_path, streams=2) as two:
        assert two.kind == kind and two.streams == 2 and " x 2 streams: " in two.chosen_because


def test_auto_measures_for_real(trained_resnet20) -> None:
    pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with open_onnx(onnx_path) as chosen, open_onnx(onnx_path, backend="onnxruntime") as ort:
        assert chosen.kind in ("openvino", "onnxruntime")
        assert re.fullmatch(
            r"auto: (OpenVINO|ONNX Runtime); measured here on a batch of 1: OpenVINO \S+ ms, ONNX Runtime \S+ ms",
            chosen.chosen_because,
        ), chosen.chosen_because
        name = "OpenVINO" if chosen.kind == "openvino" else "ONNX Runtime"
        assert chosen.chosen_because.startswith(f"auto: {name};")
        assert np.abs(chosen.infer(X) - ort.infer(X)).max() < 1e-4
    assert ort.chosen_because == ""  # named, not chosen


def test_auto_without_openvino_runs_onnxruntime_and_says_why(trained_resnet20, monkeypatch, no_probe) -> None:
    from resnet_deploy.evaluate.bench import describe_machine

    _, onnx_path = trained_resnet20
    monkeypatch.setitem(sys.modules, "openvino", None)
    with Runner.load(onnx_path) as runner:
        assert runner.backend.kind == "onnxruntime"
        assert runner.describe()["chosen_because"] == f"auto: OpenVINO is not installed ({INSTALL} may run it faster)"
        assert runner.infer(X).shape == (4, 10)
    assert "openvino" not in describe_machine(None)  # the machine line names only runtimes that ran
    for backend in ("openvino", "auto"):  # auto with an OpenVINO option has to open OpenVINO
        with pytest.raises(RunnerError) as info:
            open_onnx(onnx_path, backend=backend, inference_precision="f32")
        assert str(info.value) == MISSING
    result = invoke("bench", str(onnx_path), "--batch", "1", "--iters", "1", "--warmup", "0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"][0]["backend"] == "onnxruntime"
    assert f"resnet20.onnx: auto: OpenVINO is not installed ({INSTALL} may run it faster)" in result.stderr


def test_auto_runs_what_openvino_cannot_compile_on_onnxruntime_with_a_note(
    trained_resnet20, inverse_onnx, no_probe
) -> None:
    pytest.importorskip("openvino")
    checkpoint, onnx_path = trained_resnet20
    with open_onnx(inverse_onnx) as fallback, open_onnx(onnx_path, backend="onnxruntime") as ort:
        assert fallback.kind == "onnxruntime" and fallback.chosen_because == "auto: OpenVINO cannot run it"
        (note,) = fallback.notes
        assert note == (
            "OpenVINO cannot compile inverse.onnx: it has no conversion for com.microsoft.Inverse; "
            "running it on ONNX Runtime"
        )  # OpenVINO's own advice to use ONNX Runtime is not repeated
        assert fallback.describe()["notes"] == [note]
        assert np.array_equal(fallback.infer(X), ort.infer(X))
    args = ["--checkpoint", str(checkpoint), "--artifacts", str(inverse_onnx), "--limit", "64", "--json"]
    result = invoke("validate", *args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["artifacts"]
    assert row["backend"] == "onnxruntime" and row["chosen_because"] == "auto: OpenVINO cannot run it"
    assert row["top1_agreement"] >= 0.98
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {note}"]
    assert "inverse.onnx: auto: OpenVINO cannot run it" in result.stderr


def test_named_providers_and_an_onnxruntime_gpu_are_kept_without_timing(
    trained_resnet20, monkeypatch, no_probe
) -> None:
    from resnet_deploy.runtime.onnx_backend import OnnxRuntimeBackend

    def no_openvino(*args, **kwargs):
        raise AssertionError("OpenVINO should not have been opened")

    monkeypatch.setattr(onnx_choice, "_open_openvino", no_openvino)
    _, onnx_path = trained_resnet20
    with open_onnx(onnx_path, providers=["CPUExecutionProvider"]) as named:
        assert named.kind == "onnxruntime" and named.chosen_because == "" and named.notes == []
    monkeypatch.setattr(OnnxRuntimeBackend, "on_gpu", property(lambda self: True))
    with open_onnx(onnx_path) as gpu:
        assert gpu.kind == "onnxruntime"
        assert gpu.chosen_because == "auto: ONNX Runtime on CPUExecutionProvider (OpenVINO here runs the CPU)"


def test_an_openvino_option_opens_openvino_without_timing(trained_resnet20, no_probe) -> None:
    pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with Runner.load(onnx_path, inference_precision="bf16", threads=1) as runner:
        assert runner.backend.kind == "openvino"
        assert runner.describe()["inference_precision"] == "bf16"
        assert runner.infer(X).shape == (4, 10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "foo"}, "backend 'foo' does not run ONNX files; use one of auto, onnxruntime, openvino"),
        (
            {"backend": "openvino", "providers": ["CPUExecutionProvider"]},
            "providers are ONNX Runtime's; OpenVINO takes threads, streams and inference_precision",
        ),
        (
            {"backend": "onnxruntime", "inference_precision": "bf16"},
            "inference_precision is OpenVINO's; ONNX Runtime runs the precision the file holds",
        ),
        (
            {"providers": ["CPUExecutionProvider"], "inference_precision": "bf16"},  # auto: neither is dropped
            "providers are ONNX Runtime's and inference_precision is OpenVINO's: ask for one runtime's options",
        ),
    ],
)
def test_open_onnx_refusals(trained_resnet20, no_probe, options, message) -> None:
    _, onnx_path = trained_resnet20
    with pytest.raises(RunnerError) as info:
        open_onnx(onnx_path, **options)
    assert str(info.value) == message


def test_openvino_failing_while_timed_falls_back_and_closes_it(trained_resnet20, monkeypatch) -> None:
    """OpenVINO compiles the file but fails on the probe's batch: ONNX Runtime runs it, with a note, and
    the OpenVINO backend is closed rather than left holding its threads."""
    pytest.importorskip("openvino")
    from resnet_deploy.runtime.openvino_backend import OpenVinoBackend

    _, onnx_path = trained_resnet20
    opened: list = []
    original_init = OpenVinoBackend.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        opened.append(self)

    def fail(self, batch):
        raise RuntimeError("Exception from src/plugins/intel_cpu: a kernel failed\non two lines")

    monkeypatch.setattr(OpenVinoBackend, "__init__", init)
    monkeypatch.setattr(OpenVinoBackend, "_infer", fail)
    with open_onnx(onnx_path) as chosen:
        assert chosen.kind == "onnxruntime" and chosen.chosen_because == "auto: OpenVINO cannot run it"
        (note,) = chosen.notes
        assert note.startswith("openvino failed to run") and "a kernel failed on two lines" in note
        assert note.endswith("; running it on ONNX Runtime") and "\n" not in note
        assert chosen.infer(X).shape == (4, 10)
    (openvino,) = opened
    assert_closed(openvino)


def test_auto_with_an_openvino_option_says_why_openvino(trained_resnet20, no_probe) -> None:
    pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with open_onnx(onnx_path, inference_precision="f32") as chosen:
        assert chosen.kind == "openvino"
        assert chosen.chosen_because == "auto: OpenVINO, the runtime that takes inference_precision"
