"""The engine runner's CUDA path on every TensorRT release, on a fake CUDA device that counts.

Engines are built by the strict stand-ins of ``tests/trt_standin.py`` through ``build_engine``; the
runner loads them through ``Runner.load`` as an application does. The stand-in engine computes
``x @ reference_weights`` on the fake device of ``tests/fake_cuda.py`` (real host memory behind the
"device" pointers, work run in stream order or recorded into graphs), which keeps count of every
stream, event, buffer and graph, so each refusal and ``close()`` must leave zero behind.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from resnet_deploy.artifacts import EngineSidecar
from resnet_deploy.errors import EngineMismatchError, ResnetDeployError, RunnerError
from resnet_deploy.runtime import Runner
from resnet_deploy.runtime.tensorrt_backend import check_version
from tests.fake_cuda import FakeCudart, FakePyCuda
from tests.trt_standin import JETSON, RELEASES, Machine, reference_weights, standin, standin_rtx

SHAPE = (3, 8, 8)  # a tiny classifier is enough: the stand-in engine computes a fixed linear map
CLASSES = 10


@contextmanager
def device(
    monkeypatch: pytest.MonkeyPatch,
    release: str,
    *,
    machine: Machine | None = None,
    cuda: FakeCudart | None = None,
    pycuda: bool = False,
) -> Iterator[tuple[Any, FakeCudart, Machine]]:
    """``release``'s stand-in installed, on a machine whose CUDA is the fake (cuda-python or pycuda)."""
    from resnet_deploy.runtime import cuda_memory
    from resnet_deploy.runtime import machine as machine_module

    spec = machine or (Machine(**JETSON) if release in ("8.6", "10.3") else Machine())
    if release == "rtx":
        spec = machine or Machine(gpu="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    major, minor = (int(p) for p in spec.compute_capability.split("."))
    spec.cuda = cuda or FakeCudart(gpu=spec.gpu, compute_capability=(major, minor))
    module = standin_rtx(spec) if release == "rtx" else standin(release, spec)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "tensorrt_rtx" if release == "rtx" else "tensorrt", module)
        patch.setattr(machine_module, "gpu_present", lambda: True)
        patch.setattr(cuda_memory, "driver_cuda_version", lambda: None)
        patch.setattr(cuda_memory, "_import_cuda_python", lambda: None if pycuda else spec.cuda)
        patch.setattr(cuda_memory, "_import_pycuda", lambda: FakePyCuda(spec.cuda) if pycuda else None)
        yield module, spec.cuda, spec


def build(onnx: Path, out: Path, release: str, **options: Any) -> Path:
    from resnet_deploy.engine.options import BuildOptions, parse_batch
    from resnet_deploy.pipeline import build_engine

    options.setdefault("batch", parse_batch("1:4:8"))
    if release == "rtx":
        options["target_cc"] = ("8.9",)
    backend = "tensorrt-rtx" if release == "rtx" else "tensorrt"
    return build_engine(onnx, out, BuildOptions(**options), backend=backend).path


def expected(batch: np.ndarray) -> np.ndarray:
    features = int(np.prod(SHAPE))
    return batch.reshape(len(batch), -1) @ reference_weights(features, CLASSES)


def assert_all_freed(cuda: FakeCudart, machine: Machine) -> None:
    gc.collect()
    assert cuda.outstanding() == {}
    assert machine.live.get("contexts", 0) == 0 and machine.live.get("engines", 0) == 0


def batches(*sizes: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(0)
    for n in sizes:
        yield rng.standard_normal((n, *SHAPE)).astype(np.float32)


@pytest.mark.parametrize("release", [*RELEASES, "rtx"])
def test_engines_of_every_release_run_any_batch_size_and_free_everything(tiny_onnx, tmp_path, monkeypatch, release):
    with device(monkeypatch, release) as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", release)
        with Runner.load(engine) as runner:
            assert runner.describe()["batch"] == "1..8"
            for x in batches(1, 3, 8, 9, 16, 13):  # above the profile's max: split into chunks of 8
                assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
            stream = runner.backend.stream_handle
        assert cuda.stream_flags.get(stream) is None  # destroyed
        created = [args[0] for name, args in cuda.calls if name == "cudaStreamCreateWithFlags"]
        assert created == [1]  # cudaStreamNonBlocking: no implicit sync with the legacy default stream
        assert machine.default_stream_launches == 0
        assert_all_freed(cuda, machine)


@pytest.mark.parametrize("release", RELEASES)
def test_cuda_graphs_are_captured_per_batch_size_on_contexts_that_never_change_shape(
    tiny_onnx, tmp_path, monkeypatch, release
):
    with device(monkeypatch, release) as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", release)
        with Runner.load(engine, cuda_graph=True) as runner:
            for x in batches(8, 3, 8, 11, 1, 16, 3):  # 11 = 8 + 3: a graph replayed after another's capture
                assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
            graphs = runner.backend._graphs
            assert sorted(graphs) == [1, 3, 8]
            contexts = [context for context, _ in graphs.values()]
            assert len({id(c) for c in contexts}) == 3
            memory = {c._sd_state["memory"] for c in contexts}  # one shared block of activation memory
            assert len(memory) == 1 and None not in memory
            launches = [name for name, _ in cuda.calls if name == "cudaGraphLaunch"]
            assert len(launches) == 1 + 1 + 1 + 2 + 1 + 2 + 1
            del graphs, contexts
        assert machine.violations == []  # no context re-shaped after a graph captured its work
        instantiate = {name for name, _ in cuda.calls if name.startswith("cudaGraphInstantiate")}
        assert instantiate == {"cudaGraphInstantiateWithFlags"}  # the signature cuda-python 11.4-13 share
        assert_all_freed(cuda, machine)


def test_timing_events_live_on_the_runners_device_and_none_after_close(tiny_onnx, tmp_path, monkeypatch) -> None:
    """Another library made device 1 current: the events are still made on the runner's device 0, where
    its stream is (an event recorded on another device's stream fails). Closed: refused, nothing made."""
    from resnet_deploy.errors import RunnerError

    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        runner = Runner.load(engine)
        (x,) = batches(4)
        cuda.current_device = 1
        assert runner.backend.timed_infer(x) >= 0
        assert {state["device"] for state in cuda.live["event"].values()} == {0}
        runner.close()
        events = sum(name == "cudaEventCreateWithFlags" for name, _ in cuda.calls)
        with pytest.raises(RunnerError, match="was closed; open it again"):
            runner.backend.timed_infer(x)
        assert sum(name == "cudaEventCreateWithFlags" for name, _ in cuda.calls) == events
        assert_all_freed(cuda, machine)


def test_graphs_work_with_cuda_python_11(tiny_onnx, tmp_path, monkeypatch) -> None:
    """cuda-python 11.x (JetPack 5) has cudaGraphInstantiate(graph, logBuffer, bufferSize)."""
    with device(monkeypatch, "10.3", cuda=FakeCudart(major=11, gpu="Orin", compute_capability=(8, 7))) as (_, cuda, m):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.3")
        with Runner.load(engine, cuda_graph=True) as runner:
            for x in batches(4, 4):
                assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
        assert_all_freed(cuda, m)


FAILURES = [
    ("cudaStreamCreateWithFlags", {"cudaStreamCreateWithFlags": 1}, False),
    ("first pinned buffer", {"cudaMallocHost": 1}, False),
    ("second pinned buffer", {"cudaMallocHost": 2}, False),
    ("first device buffer", {"cudaMalloc": 1}, False),
    ("second device buffer", {"cudaMalloc": 2}, False),
    ("graph contexts' shared memory", {"cudaMalloc": 3}, True),
]


@pytest.mark.parametrize(("what", "fail", "graphs"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failed_activation_frees_everything_acquired_before_it(tiny_onnx, tmp_path, monkeypatch, what, fail, graphs):
    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        cuda.fail = {name: cuda._counts.get(name, 0) + n for name, n in fail.items()}  # counted from here on
        with pytest.raises(ResnetDeployError, match="failed"):
            Runner.load(engine, cuda_graph=graphs)
        assert_all_freed(cuda, machine)


def test_refusals_after_cuda_opened_free_it(tiny_onnx, tmp_path, monkeypatch) -> None:
    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        cuda.compute_capability = (8, 0)  # an A100 now, not the H100 it was built on
        with pytest.raises(EngineMismatchError, match=r"was built on NVIDIA H100 .* but this GPU .* is 8\.0"):
            Runner.load(engine)
        assert_all_freed(cuda, machine)
        cuda.compute_capability = (9, 0)
        machine.context_fails = True  # the GPU is out of memory
        with pytest.raises(ResnetDeployError, match=r"could not create an execution context .* out of memory"):
            Runner.load(engine)
        assert_all_freed(cuda, machine)
    with device(monkeypatch, "10.16", pycuda=True) as (_, cuda, machine):
        with pytest.raises(ResnetDeployError, match="cuda_graph=True needs cuda-python for graph capture"):
            Runner.load(engine, cuda_graph=True)
        assert_all_freed(cuda, machine)


def test_a_refused_tensor_address_is_an_error_not_a_stale_binding(tiny_onnx, tmp_path, monkeypatch) -> None:
    with device(monkeypatch, "10.3") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.3")
        with Runner.load(engine) as runner:
            runner.backend.device_in += 4  # not 256-byte aligned
            with pytest.raises(ResnetDeployError, match=r"TensorRT refused the address 0x[0-9a-f]+ of 'input'"):
                runner.infer(next(batches(2)))
            runner.backend.device_in -= 4
        assert_all_freed(cuda, machine)


def test_dla_engines_are_deserialised_for_the_core_they_were_built_for(tiny_onnx, tmp_path, monkeypatch) -> None:
    from resnet_deploy.engine.options import parse_batch

    with device(monkeypatch, "10.3") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.3", precision="fp16", dla_core=1, batch=parse_batch("4"))
        with Runner.load(engine) as runner:
            assert runner.backend.runtime.DLA_core == 1 and runner.backend.engine._sd_state["dla_core"] == 1
            assert runner.describe()["dla_core"] == 1 and runner.describe()["batch"] == "4..4"
            x = next(batches(3))  # padded to the static batch of 4
            assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
        assert_all_freed(cuda, machine)


def test_timing_events_are_freed_with_the_runner(tiny_onnx, tmp_path, monkeypatch) -> None:
    from resnet_deploy.evaluate.bench import run_bench
    from resnet_deploy.runtime.load import open_backend

    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        backend = open_backend(engine)
        report = run_bench([backend], [4], warmup=1, iters=3)
        assert report.rows[0].timer == "cuda-events" and report.rows[0].p50_ms > 0
        assert len(cuda.live["event"]) == 2
        backend.close()
        backend.close()  # twice is harmless
        assert_all_freed(cuda, machine)
        with pytest.raises(ResnetDeployError, match="was closed"):
            backend.infer(next(batches(1)))


def test_pycuda_runs_on_the_primary_context_and_releases_it(tiny_onnx, tmp_path, monkeypatch) -> None:
    with device(monkeypatch, "8.6", pycuda=True) as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "8.6")
        import resnet_deploy.runtime.cuda_memory as cuda_memory

        driver = FakePyCuda(cuda)
        monkeypatch.setattr(cuda_memory, "_import_pycuda", lambda: driver)
        with Runner.load(engine) as runner:
            assert runner.describe()["cuda"] == "pycuda"
            x = next(batches(5))
            assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
            runner.backend.timed_infer(x)
        log = driver.context_log  # pushed around each call (any thread), released once at close
        assert log[:3] == ["init", "retain_primary_context", "push"] and log[-2:] == ["pop", "detach"]
        assert log.count("push") == log.count("pop") + 1 and log.count("detach") == 1
        assert_all_freed(cuda, machine)


def test_bindings_that_do_not_fit_the_driver_fall_back_to_pycuda_or_name_the_extra(monkeypatch) -> None:
    from resnet_deploy.runtime import cuda_memory

    new = FakeCudart(major=13)
    monkeypatch.setattr(cuda_memory, "_import_cuda_python", lambda: new)
    monkeypatch.setattr(cuda_memory, "_import_pycuda", lambda: None)
    monkeypatch.setattr(cuda_memory, "driver_cuda_version", lambda: 12040)
    with pytest.raises(cuda_memory.CudaError) as info:
        cuda_memory.open_cuda()
    message = str(info.value)
    assert "built for CUDA 13.x but the driver supports CUDA 12.4" in message
    assert 'pip install "resnet-deploy[cuda]"' in message and "\n" not in message
    assert new.calls == [("cudaRuntimeGetVersion", ())]  # nothing else tried: every call would fail (35)

    jetpack5 = FakeCudart(major=12, driver_too_old=True)  # a 12.x build that reports 35 on CUDA 11.4
    monkeypatch.setattr(cuda_memory, "_import_cuda_python", lambda: jetpack5)
    monkeypatch.setattr(cuda_memory, "driver_cuda_version", lambda: 12000)
    with pytest.raises(cuda_memory.CudaError, match=r"cudaErrorInsufficientDriver \(35\).*resnet-deploy\[cuda\]"):
        cuda_memory.open_cuda()
    monkeypatch.setattr(cuda_memory, "driver_cuda_version", lambda: 11040)
    with pytest.raises(cuda_memory.CudaError, match=r"resnet-deploy\[cuda11\]"):
        cuda_memory.open_cuda()

    pycuda = FakePyCuda(FakeCudart())
    monkeypatch.setattr(cuda_memory, "_import_pycuda", lambda: pycuda)
    opened = cuda_memory.open_cuda()  # cuda-python cannot start: pycuda instead
    assert opened.name == "pycuda" and pycuda.context_log[-2:] == ["retain_primary_context", "push"]
    opened.close()

    monkeypatch.setattr(cuda_memory, "_import_cuda_python", lambda: None)
    monkeypatch.setattr(cuda_memory, "_import_pycuda", lambda: None)
    monkeypatch.setattr(cuda_memory, "driver_cuda_version", lambda: None)
    with pytest.raises(cuda_memory.CudaError, match=r'needs CUDA from Python: pip install "resnet-deploy\[cuda\]"'):
        cuda_memory.open_cuda()


def test_no_driver_at_all_is_named(monkeypatch) -> None:
    """cuda-python <= 12.8 raises RuntimeError without libcuda; >= 12.9 answers 35: both say no driver."""
    from resnet_deploy.runtime import cuda_memory

    class OldBindings(FakeCudart):
        def cudaFree(self, pointer: int) -> Any:
            raise RuntimeError("Failed to dlopen libcuda.so.1")

    for bindings in (OldBindings(), FakeCudart(driver_too_old=True)):
        monkeypatch.setattr(cuda_memory, "_import_cuda_python", lambda b=bindings: b)
        monkeypatch.setattr(cuda_memory, "_import_pycuda", lambda: None)
        monkeypatch.setattr(cuda_memory, "driver_cuda_version", lambda: None)
        with pytest.raises(cuda_memory.CudaError, match="no usable NVIDIA GPU to run an engine on: no NVIDIA driver"):
            cuda_memory.open_cuda()


@pytest.mark.parametrize(
    ("built", "installed", "compatible", "runs"),
    [
        ("10.3.0", "10.3.0.30", False, True),
        ("10.3.0", "10.16.0", False, False),
        ("10.3.0", "10.16.0", True, True),  # the lean runtime runs on later 10.x
        ("10.16.0", "10.3.0", True, False),  # never on an earlier release
        ("8.6.2", "10.3.0", True, True),  # 8 -> 10 is supported across majors
        ("8.6.2", "11.1.0", True, False),  # 8 -> 11 is not
        ("10.16.0", "11.1.0", True, True),
    ],
)
def test_version_compatible_engines_run_only_where_the_support_matrix_says(built, installed, compatible, runs):
    sidecar = EngineSidecar(
        engine_bytes=0,
        engine_sha256="",
        backend="tensorrt",
        backend_version=built,
        model={},
        version_compatible=compatible,
        rebuild_command="resnet-deploy build-engine --onnx m.onnx --version-compatible",
    )
    if runs:
        check_version(sidecar, installed, Path("m.engine"))
    else:
        with pytest.raises(EngineMismatchError, match="rebuild it here: resnet-deploy build-engine"):
            check_version(sidecar, installed, Path("m.engine"))


def test_a_capture_that_fails_half_way_is_ended_and_dropped(tiny_onnx, tmp_path, monkeypatch) -> None:
    from resnet_deploy.runtime.cuda_memory import CudaPython
    from tests.fake_cuda import Handle, cudaError_t

    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        with Runner.load(engine, cuda_graph=True) as runner:
            cuda.fail = {"cudaMemcpyAsync": cuda._counts.get("cudaMemcpyAsync", 0) + 1}  # the copy inside the capture
            with pytest.raises(ResnetDeployError, match="cudaMemcpyAsync failed"):
                runner.infer(next(batches(2)))
            assert cuda.capturing == {}  # the stream is not left capturing
            cuda.fail = {}
            x = next(batches(2))
            assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)  # and it recovers
        assert_all_freed(cuda, machine)

    class NullGraph(FakeCudart):  # a capture that produced nothing: a NULL handle, truthy in cuda-python
        def cudaStreamEndCapture(self, stream: Any) -> Any:
            return cudaError_t.cudaSuccess, Handle("graph", 0)

    null = NullGraph()
    CudaPython(null).abort_capture(null.cudaStreamCreate()[1])
    assert "cudaGraphDestroy" not in [name for name, _ in null.calls]


def test_torch_tensors_on_another_gpu_are_refused_before_any_cuda_work(tiny_onnx, tmp_path, monkeypatch) -> None:
    import torch

    class TensorOnGpu1:  # what the runner reads of a torch CUDA tensor on cuda:1
        __module__ = "torch"
        is_cuda, shape, dtype = True, (2, *SHAPE), torch.float32
        device = torch.device("cuda", 1)

    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        with Runner.load(engine) as runner:
            with pytest.raises(ResnetDeployError, match=r"the tensor is on cuda:1 but m\.engine runs on cuda:0"):
                runner.infer(TensorOnGpu1())
        assert_all_freed(cuda, machine)


def test_a_timing_cache_tensorrt_cannot_create_is_ignored(tmp_path) -> None:
    from types import SimpleNamespace

    from resnet_deploy.engine.network import load_timing_cache
    from resnet_deploy.trt.logger import ErrorLog

    def refuse(data: bytes) -> Any:
        raise RuntimeError("cannot create a timing cache")

    config = SimpleNamespace(create_timing_cache=refuse)
    assert load_timing_cache(config, tmp_path / "new.cache", ErrorLog(), print) is None  # no UnboundLocalError


def test_an_8_6_engine_without_profile_sharing_is_refused_graphs_in_one_line(tiny_onnx, tmp_path, monkeypatch):
    """TensorRT 8.6 gives profile 0 to the first execution context only; build-engine turns on profile
    sharing, an engine built elsewhere without it cannot have a graph per batch size."""
    with device(monkeypatch, "8.6") as (module, cuda, machine):
        ours = build(tiny_onnx, tmp_path / "ours.engine", "8.6")
        monkeypatch.setattr(module, "PreviewFeature", None)  # as another tool builds it
        theirs = build(tiny_onnx, tmp_path / "theirs.engine", "8.6")
        with Runner.load(ours, cuda_graph=True) as runner:
            for x in batches(2, 5):
                assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
        with Runner.load(theirs, cuda_graph=True) as runner:
            runner.infer(next(batches(2)))  # the first context has profile 0
            with pytest.raises(
                ResnetDeployError, match=r"one execution context only .* rebuild it here: resnet-deploy"
            ):
                runner.infer(next(batches(5)))
        with Runner.load(theirs) as runner:  # without graphs one context serves every size
            x = next(batches(5))
            assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
        assert_all_freed(cuda, machine)


def test_the_runner_works_on_its_own_device_and_gives_the_callers_back(tiny_onnx, tmp_path, monkeypatch) -> None:
    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        with Runner.load(engine) as runner:
            cuda.current_device = 1  # the application moved on to another GPU
            x = next(batches(3))
            assert np.allclose(runner.infer(x), expected(x), rtol=1e-5, atol=1e-5)
            assert cuda.current_device == 1
            assert [args[0] for name, args in cuda.calls if name == "cudaSetDevice"] == [0, 1]
            assert runner.infer(np.zeros((0, *SHAPE), np.float32)).shape == (0, CLASSES)
        assert_all_freed(cuda, machine)


@pytest.mark.parametrize("release", ["10.16", "rtx"])
def test_an_engine_with_its_preprocessing_inside_takes_uint8_frames(tiny_onnx, tmp_path, monkeypatch, release):
    """A frames model (``convert --frame-size``) builds to an engine whose input is uint8 NHWC: the runner
    binds and copies one byte per value (the fake CUDA checks every copy's range), refuses float batches, and
    ``preprocess`` passes frames of the engine's size as they are."""
    from resnet_deploy.artifacts.frame_input import FrameInput
    from resnet_deploy.convert.preprocess_graph import fuse_preprocessing

    frames_onnx = fuse_preprocessing(tiny_onnx, tmp_path / "tiny.frames.onnx", FrameInput(12, 10, "BGR")).path
    with device(monkeypatch, release) as (_, cuda, machine):
        engine = build(frames_onnx, tmp_path / "f.engine", release)
        with Runner.load(engine) as runner:
            assert (runner.backend.input_shape, runner.backend.input_dtype) == ((10, 12, 3), np.uint8)
            frames = np.random.default_rng(0).integers(0, 256, (5, 10, 12, 3), dtype=np.uint8)
            batch = runner.preprocess(list(frames), channel_order="BGR")
            assert batch.dtype == np.uint8 and np.array_equal(batch, frames)
            weights = reference_weights(10 * 12 * 3, CLASSES)
            assert np.allclose(runner.infer(batch), frames.reshape(5, -1).astype(np.float32) @ weights, rtol=1e-5)
            with pytest.raises(RunnerError, match="expects uint8 input"):
                runner.infer(frames.astype(np.float32))
        assert_all_freed(cuda, machine)
