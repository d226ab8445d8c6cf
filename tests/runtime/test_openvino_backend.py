"""OpenVINO on the CPU: the same logits as ONNX Runtime, one-line refusals, fixed batches and streams."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from resnet_deploy.errors import ResnetDeployError, RunnerError
from resnet_deploy.runtime import Runner, open_backend
from resnet_deploy.runtime.base import check_streams, run_in_chunks
from tests.cli_helpers import invoke

INSTALL = 'pip install "resnet-deploy[openvino]"'
MISSING = f"OpenVINO is not installed: {INSTALL}, or run ONNX files on ONNX Runtime (`backend=onnxruntime`)"
# Tests that close OpenVINO backends after infer_many on streams: a deadlock there (see
# test_closing_after_infer_many_on_streams_never_deadlocks) ends the run with every thread's stack, not a hang.
DEADLOCK_GUARD = pytest.mark.timeout(90, method="thread")


def with_unconvertible_op(source: Path, target: Path) -> Path:
    """``source`` with its logits multiplied by ``com.microsoft::Inverse([[1.0]])``: the same function, the
    same input/output names and metadata, an op ONNX Runtime runs and OpenVINO has no conversion for."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    output = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{output}_raw" if name == output else name for name in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array([[1.0]], np.float32), "one"))
    model.graph.node.append(helper.make_node("Inverse", ["one"], ["one_inverse"], domain="com.microsoft"))
    model.graph.node.append(helper.make_node("Mul", [f"{output}_raw", "one_inverse"], [output]))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def inverse_onnx(trained_resnet20, tmp_path_factory) -> Path:
    _, onnx_path = trained_resnet20
    return with_unconvertible_op(onnx_path, tmp_path_factory.mktemp("inverse") / "inverse.onnx")


@pytest.fixture(scope="module")
def digits(trained_resnet20) -> np.ndarray:
    """64 normalised test digits, as validate feeds them."""
    from resnet_deploy.data import open_dataset
    from resnet_deploy.runtime.images import normalise

    _, onnx_path = trained_resnet20
    images = next(open_dataset("digits").test.batches(64, size=32)).images.numpy()
    with open_backend(onnx_path, backend="onnxruntime") as ort:
        return normalise(images, ort.metadata)


@pytest.fixture(scope="module")
def static3_onnx(trained_resnet20, tmp_path_factory) -> Path:
    """The trained ResNet-20 exported with a fixed batch of 3."""
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    checkpoint, _ = trained_resnet20
    source = open_model(checkpoint)
    path = tmp_path_factory.mktemp("static") / "static3.onnx"
    export_onnx(source.model, path, source.metadata, static_batch=3, verify=False)
    return path


def one_line_error(info: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_openvino_and_onnxruntime_agree_on_the_same_fp32_file(trained_resnet20, digits) -> None:
    pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with (
        open_backend(onnx_path, backend="openvino", threads=1) as ov,
        open_backend(onnx_path, backend="onnxruntime") as ort,
    ):
        assert (ov.kind, ort.kind) == ("openvino", "onnxruntime")
        ov_logits, ort_logits = ov.infer(digits), ort.infer(digits)
    assert ov_logits.shape == ort_logits.shape == (64, 10) and ov_logits.dtype == np.float32
    assert np.abs(ov_logits - ort_logits).max() < 1e-4
    assert np.array_equal(ov_logits.argmax(1), ort_logits.argmax(1))
    assert len(set(ov_logits.argmax(1).tolist())) >= 5  # a trained model, not one answer for everything


def test_describe_names_the_openvino_version_and_precision(trained_resnet20) -> None:
    openvino = pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with open_backend(onnx_path, backend="openvino") as ov:
        assert ov.describe() == {
            "path": str(onnx_path),
            "backend": "openvino",
            "precision": "fp32",
            "openvino": openvino.__version__.split("-")[0],
            "inference_precision": "f32",
        }
        assert ov.static_batch is None and ov.streams == 1  # type: ignore[attr-defined]
        # compiled in f32 even where the CPU plugin would default to bfloat16 (AVX-512 BF16, AMX)
        assert ov.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32  # type: ignore[attr-defined]
        assert str(ov.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"  # type: ignore[attr-defined]
    with Runner.load(onnx_path, backend="openvino", streams=2, threads=2) as runner:
        assert runner.describe()["streams"] == 2 and runner.backend.streams == 2
        compiled = runner.backend.compiled  # type: ignore[attr-defined]
        assert str(compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
        assert (compiled.get_property("NUM_STREAMS"), compiled.get_property("INFERENCE_NUM_THREADS")) == (2, 2)


def test_bf16_is_accepted_and_reported(trained_resnet20, digits) -> None:
    openvino = pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with (
        Runner.load(onnx_path, backend="openvino", inference_precision="bf16") as bf16,
        Runner.load(onnx_path, backend="openvino") as f32,
    ):
        assert bf16.describe()["inference_precision"] == "bf16" and bf16.describe()["precision"] == "fp32"
        if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):  # else OpenVINO may run f32
            assert bf16.backend.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16  # type: ignore[attr-defined]
        low, full = bf16.infer(digits), f32.infer(digits)
    # bfloat16 where the CPU has it (it may equal f32 elsewhere): same shape, finite, nearly the same answers
    assert low.shape == (64, 10) and low.dtype == np.float32 and np.isfinite(low).all()
    assert (low.argmax(1) == full.argmax(1)).mean() >= 0.95
    assert np.abs(low - full).max() < 0.5


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (
            {"inference_precision": "f16"},
            "inference_precision 'f16' is not one OpenVINO's CPU takes here; use f32 or bf16",
        ),
        ({"inference_precision": "fp32"}, "use f32 or bf16"),
        ({"threads": 0}, "threads must be a whole number of at least 1, got 0"),
        ({"streams": 0}, "streams must be a whole number of at least 1, got 0"),
        ({"streams": True}, "streams must be a whole number of at least 1, got True"),
    ],
)
def test_bad_openvino_options_are_one_line_errors(trained_resnet20, options, needle) -> None:
    pytest.importorskip("openvino")
    from resnet_deploy.runtime.openvino_backend import OpenVinoBackend

    _, onnx_path = trained_resnet20
    with pytest.raises(RunnerError) as info:
        OpenVinoBackend(onnx_path, **options)
    assert needle in one_line_error(info)


def test_a_missing_file_is_one_line(tmp_path) -> None:
    from resnet_deploy.runtime.openvino_backend import OpenVinoBackend

    with pytest.raises(RunnerError) as info:
        OpenVinoBackend(tmp_path / "absent.onnx")
    assert one_line_error(info) == f"ONNX file {tmp_path / 'absent.onnx'} not found"


def test_without_openvino_the_error_names_the_extra(trained_resnet20, monkeypatch) -> None:
    from resnet_deploy.runtime.openvino_backend import OpenVinoBackend, import_openvino, openvino_installed

    _, onnx_path = trained_resnet20
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    assert openvino_installed() is False
    with pytest.raises(RunnerError) as info:
        import_openvino()
    assert one_line_error(info) == MISSING
    with pytest.raises(RunnerError, match="OpenVINO is not installed"):
        OpenVinoBackend(onnx_path)
    with pytest.raises(RunnerError) as info:
        Runner.load(onnx_path, backend="openvino")
    assert one_line_error(info) == MISSING


def test_a_file_openvino_cannot_convert_is_one_line_and_still_runs_on_onnxruntime(
    trained_resnet20, inverse_onnx, digits
) -> None:
    pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with pytest.raises(RunnerError) as info:
        open_backend(inverse_onnx, backend="openvino")
    assert one_line_error(info) == (
        "OpenVINO cannot compile inverse.onnx: it has no conversion for com.microsoft.Inverse; "
        "run it on ONNX Runtime (`backend=onnxruntime`)"
    )
    # the file is a valid artifact with the same function: ONNX Runtime runs it to the same logits
    with (
        open_backend(inverse_onnx, backend="onnxruntime") as inv,
        open_backend(onnx_path, backend="onnxruntime") as ref,
    ):
        assert inv.metadata == ref.metadata
        assert np.array_equal(inv.infer(digits), ref.infer(digits))


def test_openvino_failure_keeps_the_one_phrase_that_matters(tmp_path) -> None:
    ov = pytest.importorskip("openvino")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from resnet_deploy.runtime.openvino_backend import openvino_failure

    # a Conv whose 5-D weights cannot apply to a 2-D input: OpenVINO fails converting that node
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((4, 5, 3, 3, 3), np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "bad.onnx"))
    core = ov.Core()
    with pytest.raises(Exception) as info:
        core.compile_model(core.read_model(str(tmp_path / "bad.onnx")), "CPU")
    assert "\n" in str(info.value)  # OpenVINO's own report spans lines
    phrase = openvino_failure(info.value)
    assert (
        phrase.startswith("the Conv node that outputs y failed: ") and "rank" in phrase and "\n" not in phrase
    )  # why, in a line

    report = (
        "Exception from core.cpp:84:\nModel wasn't fully converted.\nSummary:\n"
        "-- No conversion rule found for operations: A.B, C\n\n"
    )
    assert openvino_failure(RuntimeError(report)) == "it has no conversion for A.B, C"
    assert openvino_failure(RuntimeError("device\n   CPU   is busy")) == "device CPU is busy"
    assert openvino_failure(RuntimeError("x" * 400)) == "x" * 297 + "..."


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_closed_backends_refuse_to_run(trained_resnet20, digits, runtime) -> None:
    if runtime == "openvino":
        pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    backend = open_backend(onnx_path, backend=runtime)
    assert backend.infer(digits[:2]).shape == (2, 10)
    backend.close()
    for call in (lambda: backend.infer(digits[:2]), lambda: backend.infer_many([digits[:2]])):
        with pytest.raises(RunnerError) as info:
            call()
        assert one_line_error(info) == f"{onnx_path} was closed; open it again to run it"


@DEADLOCK_GUARD
@pytest.mark.parametrize(
    ("runtime", "streams"), [("onnxruntime", 1), ("onnxruntime", 2), ("openvino", 1), ("openvino", 2)]
)
def test_empty_batches_and_wrong_inputs(trained_resnet20, digits, runtime, streams) -> None:
    if runtime == "openvino":
        pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    empty = digits[:0]
    with open_backend(onnx_path, backend=runtime, streams=streams) as backend:
        assert backend.infer(empty).shape == (0, 10) and backend.infer(empty).dtype == np.float32
        assert backend.infer_many([]) == []
        assert [a.shape for a in backend.infer_many([empty, empty])] == [(0, 10), (0, 10)]
        outputs = backend.infer_many([empty, digits[:3], empty, digits[3:5]])
        assert [a.shape for a in outputs] == [(0, 10), (3, 10), (0, 10), (2, 10)]
        assert all(a.dtype == np.float32 for a in outputs)
        with pytest.raises(RunnerError) as info:
            backend.infer_many([digits[:2], digits[:2, :, :16]])
        assert one_line_error(info) == "resnet20.onnx expects input (N, 3, 32, 32) float32, got (2, 3, 16, 32) float32"
        with pytest.raises(RunnerError, match=r"resnet20\.onnx expects float32 input, got float64"):
            backend.infer(digits[:2].astype(np.float64))


@DEADLOCK_GUARD
@pytest.mark.parametrize(("runtime", "tolerance"), [("onnxruntime", 0.0), ("openvino", 1e-5)])
def test_infer_many_on_streams_equals_one_batch_at_a_time(trained_resnet20, digits, runtime, tolerance) -> None:
    """Each batch's logits come back in the order asked: exactly so on ONNX Runtime (one session per
    stream, same settings), to float rounding on OpenVINO (one async request per stream)."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    sizes = [1, 5, 0, 8, 3, 2, 16, 7]
    starts = np.cumsum([0, *sizes])
    batches = [digits[s : s + n] for s, n in zip(starts, sizes, strict=False)]
    with Runner.load(onnx_path, backend=runtime, streams=2) as runner:
        assert runner.backend.streams == 2
        many = runner.infer_many(batches)
        one_by_one = [runner.infer(b) for b in batches]
    with open_backend(onnx_path, backend="onnxruntime") as single:
        reference = [single.infer(b) for b in batches]
    assert [a.shape for a in many] == [(n, 10) for n in sizes]
    assert max(np.abs(a - b).max(initial=0) for a, b in zip(many, one_by_one, strict=True)) <= tolerance
    assert max(np.abs(a - b).max(initial=0) for a, b in zip(many, reference, strict=True)) < 1e-4


@DEADLOCK_GUARD
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_fixed_batch_export_runs_any_batch_size_on_both_runtimes(
    trained_resnet20, static3_onnx, digits, runtime
) -> None:
    if runtime == "openvino":
        pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with open_backend(onnx_path, backend="onnxruntime") as dynamic:
        reference = dynamic.infer(digits[:20])
    with open_backend(static3_onnx, backend=runtime) as fixed:
        assert fixed.static_batch == 3  # type: ignore[attr-defined]
        for n in (1, 2, 3, 4, 7):
            out = fixed.infer(digits[:n])
            assert out.shape == (n, 10)
            assert np.abs(out - reference[:n]).max() < 1e-4
    sizes = [1, 4, 0, 7, 3, 5]  # each run on 2 streams in padded chunks of 3
    starts = np.cumsum([0, *sizes])
    with open_backend(static3_onnx, backend=runtime, streams=2) as fixed:
        outputs = fixed.infer_many([digits[s : s + n] for s, n in zip(starts, sizes, strict=False)])
    assert [len(a) for a in outputs] == sizes
    assert np.abs(np.concatenate(outputs) - reference).max() < 1e-4


CYCLES = 100  # with Python callbacks on OpenVINO's threads this deadlocked within 12 to 100 cycles here


def test_closing_after_infer_many_on_streams_never_deadlocks(trained_resnet20, tmp_path) -> None:
    """Open, infer_many on 2 streams, close, again and again, in a child process watched for a stall.

    When infer_many collected results in an AsyncInferQueue callback (Python on OpenVINO's stream threads),
    a stream thread could still need the GIL while ``close()`` dropped the compiled model and joined it
    holding the GIL: the process hung in ``close()`` (OpenVINO 2026.4.1, 2 cores).
    """
    pytest.importorskip("openvino")
    import queue
    import subprocess
    import threading

    _, onnx_path = trained_resnet20
    code = (
        "import numpy as np\n"
        "from resnet_deploy.runtime.openvino_backend import OpenVinoBackend\n"
        "x = np.zeros((4, 3, 32, 32), np.float32)\n"
        f"for cycle in range({CYCLES}):\n"
        f"    backend = OpenVinoBackend({str(onnx_path)!r}, streams=2)\n"
        "    assert [a.shape for a in backend.infer_many([x] * 4)] == [(4, 10)] * 4\n"
        "    backend.close()\n"
        "    print(cycle, flush=True)\n"
    )
    log = tmp_path / "child.log"
    with log.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    done = -1
    try:
        while (line := lines.get(timeout=20)) is not None:  # a cycle takes ~0.06 s: 20 s without one is a hang
            done = int(line)
    except queue.Empty:
        pytest.fail(f"OpenVINO backend hung in close() after {done + 1} open/infer_many(streams=2)/close cycles")
    finally:
        child.kill()
        child.wait()
    errors = [line for line in log.read_text().splitlines() if not line.startswith("DEBUG")]
    assert done == CYCLES - 1, f"the child stopped after {done + 1} cycles: {errors[-3:]}"


def test_run_in_chunks_pads_the_last_chunk_and_slices_its_padding_off() -> None:
    seen: list[np.ndarray] = []

    def run(chunk: np.ndarray) -> np.ndarray:
        seen.append(chunk.copy())
        return chunk.reshape(len(chunk), -1).sum(1, keepdims=True) + 1  # row r -> r's sum + 1

    batch = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    out = run_in_chunks(batch, 3, run)
    assert [len(c) for c in seen] == [3, 3, 3]
    assert np.array_equal(seen[2][1:], np.zeros((2, 2), np.float32))  # the padding is zeros
    assert np.array_equal(out, batch.sum(1, keepdims=True) + 1)  # 7 rows, padding sliced off
    seen.clear()
    assert np.array_equal(run_in_chunks(batch, None, run), batch.sum(1, keepdims=True) + 1)
    assert np.array_equal(run_in_chunks(batch[:3], 3, run), batch[:3].sum(1, keepdims=True) + 1)
    assert [len(c) for c in seen] == [7, 3]  # no size, or exactly the size: one call, unpadded


def test_check_streams() -> None:
    assert check_streams(1) == 1 and check_streams(4) == 4
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(RunnerError, match=f"streams must be a whole number of at least 1, got {bad!r}"):
            check_streams(bad)


@pytest.mark.parametrize(
    ("artifact", "backend", "options", "needle"),
    [
        ("onnx", "foo", {}, "backend 'foo' is not one of auto, onnxruntime, openvino, pytorch, tensorrt"),
        (
            "onnx",
            "pytorch",
            {},
            "backend pytorch does not run resnet20.onnx; .onnx files run on onnxruntime, openvino (or auto)",
        ),
        (
            "onnx",
            "tensorrt",
            {},
            "backend tensorrt does not run resnet20.onnx; .onnx files run on onnxruntime, openvino (or auto)",
        ),
        ("pt", "onnxruntime", {}, "backend onnxruntime does not run model.pt; .pt files run on pytorch"),
        (
            "pt",
            "auto",
            {"inference_precision": "bf16"},
            "option inference_precision does not apply to pytorch artifacts",
        ),
        ("onnx", "openvino", {"providers": ["CPUExecutionProvider"]}, "providers are ONNX Runtime's; OpenVINO takes"),
        (
            "onnx",
            "onnxruntime",
            {"inference_precision": "bf16"},
            "inference_precision is OpenVINO's; ONNX Runtime runs",
        ),
    ],
)
def test_backends_that_do_not_fit_are_one_line_errors(trained_resnet20, artifact, backend, options, needle) -> None:
    checkpoint, onnx_path = trained_resnet20
    path = onnx_path if artifact == "onnx" else checkpoint
    for load in (open_backend, Runner.load):
        with pytest.raises(ResnetDeployError) as info:
            load(path, backend=backend, **options)
        assert needle in one_line_error(info)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_validate_runs_onnx_on_the_backend_asked(trained_resnet20, runtime) -> None:
    if runtime == "openvino":
        pytest.importorskip("openvino")
    checkpoint, onnx_path = trained_resnet20
    args = ["--checkpoint", str(checkpoint), "--artifacts", str(onnx_path), "--limit", "64"]
    result = invoke("validate", *args, "--backend", runtime, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (row,) = data["artifacts"]
    assert data["images"] == 64 and data["reference"]["backend"] == "pytorch"
    assert (row["backend"], row["precision"], row["images"]) == (runtime, "fp32", 64)
    assert row["top1_agreement"] >= 0.98 and row["max_abs_logit_error"] < 1e-3
    assert row["chosen_because"] == "" and "auto:" not in result.stderr  # named, not chosen


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_fewer_threads_than_streams_is_refused_not_quietly_served(trained_resnet20, runtime) -> None:
    """OpenVINO would compile one stream for streams=2 on one thread, and its rows would still say 2."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    _, onnx_path = trained_resnet20
    with pytest.raises(RunnerError) as refused:
        open_backend(onnx_path, backend=runtime, threads=1, streams=2)
    assert (
        str(refused.value)
        == "2 streams need at least 2 threads (one each), got `threads=1`: ask for `streams=1` or `threads=2`"
    )
