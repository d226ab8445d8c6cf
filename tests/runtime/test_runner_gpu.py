"""The runner's whole CUDA path on a real GPU (marked ``gpu``: skipped without one).

TensorRT itself is the strict 10.16 stand-in (no full TensorRT can be installed here, and
TensorRT-RTX refuses Hopper), but everything under it is real: cuda-python's stream, pinned and
device buffers, events and graph capture, torch tensors on torch streams. The stand-in execution
context launches a real kernel, compiled by NVRTC into a cubin for the GPU (tests/cuda_kernel.py),
on the stream it is given, reading and writing the bound device addresses: ``out = x @ w``. Inputs
and weights are small integers, so every sum is exact in float32 and results are compared bit for bit.

    python -m pytest tests/runtime/test_runner_gpu.py -v    # on a machine with an NVIDIA GPU
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.cuda_kernel import check as _check
from tests.cuda_kernel import compile_cubin
from tests.trt_standin import Machine, standin

pytestmark = pytest.mark.gpu

SHAPE = (3, 8, 8)
FEATURES, CLASSES = int(np.prod(SHAPE)), 10
KERNEL = rb"""
extern "C" __global__ void linear(const float* x, const float* w, float* out, int rows, int features, int classes) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * classes) return;
    int r = i / classes, c = i % classes;
    float acc = 0.0f;
    for (int k = 0; k < features; ++k) acc += x[r * features + k] * w[k * classes + c];
    out[i] = acc;
}
"""


class GpuLinear:
    """The stand-in engine's work on the GPU: ``out = x @ w`` by an NVRTC kernel, on the given stream."""

    def __init__(self) -> None:
        from cuda.bindings import driver, runtime

        self.driver, self.runtime = driver, runtime
        _check(runtime.cudaFree(0), "cudaFree(0)")
        props = _check(runtime.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
        cubin = compile_cubin(KERNEL, b"linear.cu", props.major, props.minor)
        self.module = _check(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        self.function = _check(driver.cuModuleGetFunction(self.module, b"linear"), "cuModuleGetFunction")
        self.w = np.random.default_rng(1).integers(-2, 3, (FEATURES, CLASSES)).astype(np.float32)
        self.w_device = int(_check(runtime.cudaMalloc(self.w.nbytes), "cudaMalloc"))
        kind = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(runtime.cudaMemcpy(self.w_device, self.w.ctypes.data, self.w.nbytes, kind), "cudaMemcpy")

    def __call__(self, source: int, target: int, rows: int, features: int, classes: int, stream: int) -> bool:
        runtime = self.runtime
        status = _check(runtime.cudaStreamIsCapturing(stream), "cudaStreamIsCapturing")
        args = (
            (source, self.w_device, target, rows, features, classes),
            (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int),
        )
        blocks = (rows * classes + 127) // 128
        _check(self.driver.cuLaunchKernel(self.function, blocks, 1, 1, 128, 1, 1, 0, stream, args, 0), "cuLaunchKernel")
        return status != runtime.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone

    def expected(self, x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1).astype(np.int64) @ self.w.astype(np.int64)).astype(np.float32)

    def close(self) -> None:
        self.runtime.cudaFree(self.w_device)
        self.driver.cuModuleUnload(self.module)


def free_device_memory() -> int:
    import torch
    from cuda.bindings import runtime

    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return int(_check(runtime.cudaMemGetInfo(), "cudaMemGetInfo")[0])


@pytest.fixture(params=["10.16"])
def gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GpuLinear, Machine]]:
    """TensorRT ``request.param`` (a stand-in) over the real GPU; 10.16 unless a test names others."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("cuda.bindings.nvrtc")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    from resnet_deploy.runtime import machine as machine_module

    torch.cuda.init()
    major, minor = torch.cuda.get_device_capability(0)
    kernel = GpuLinear()
    spec = Machine(gpu=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}", execute=kernel)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "tensorrt", standin(request.param, spec))
        patch.setattr(machine_module, "gpu_present", lambda: True)
        yield kernel, spec
    kernel.close()


def engine(onnx: Path, out: Path, batch: str) -> Path:
    from resnet_deploy.engine.options import BuildOptions, parse_batch
    from resnet_deploy.pipeline import build_engine

    return build_engine(onnx, out, BuildOptions(batch=parse_batch(batch)), backend="tensorrt").path


def integer_batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3, 4, (n, *SHAPE)).astype(np.float32)


def test_numpy_batches_of_every_size_split_and_padded(gpu, tiny_onnx, tmp_path) -> None:
    from resnet_deploy.runtime import Runner

    kernel, spec = gpu
    dynamic = engine(tiny_onnx, tmp_path / "d.engine", "1:4:8")
    static = engine(tiny_onnx, tmp_path / "s.engine", "4")
    for path in (dynamic, static):
        with Runner.load(path) as runner:
            for n in range(1, 17):  # 1 .. twice the profile's max
                x = integer_batch(n, seed=n)
                assert np.array_equal(runner.infer(x), kernel.expected(x)), (path.name, n)
    assert spec.violations == [] and 0 not in spec.streams


@pytest.mark.parametrize("gpu", ["8.6", "10.16"], indirect=True)  # 8.6: one profile per context unless shared
def test_cuda_graphs_replay_exactly_after_other_shapes(gpu, tiny_onnx, tmp_path) -> None:
    from resnet_deploy.runtime import Runner

    kernel, spec = gpu
    with Runner.load(engine(tiny_onnx, tmp_path / "g.engine", "1:4:8"), cuda_graph=True) as runner:
        for i, n in enumerate([8, 3, 8, 11, 1, 16, 3, 8]):
            x = integer_batch(n, seed=100 + i)
            assert np.array_equal(runner.infer(x), kernel.expected(x)), n
        assert sorted(runner.backend._graphs) == [1, 3, 8]
    assert spec.violations == []  # no context re-shaped after its graph was captured


def test_cuda_graphs_on_a_static_profile_pad_every_chunk_and_replay_one_graph(gpu, tiny_onnx, tmp_path) -> None:
    from resnet_deploy.runtime import Runner

    kernel, spec = gpu
    with Runner.load(engine(tiny_onnx, tmp_path / "s.engine", "4"), cuda_graph=True) as runner:
        for i, n in enumerate([4, 3, 8, 11, 1, 4]):  # 3, 11 and 1 padded to chunks of 4
            x = integer_batch(n, seed=300 + i)
            assert np.array_equal(runner.infer(x), kernel.expected(x)), n
        assert sorted(runner.backend._graphs) == [4]
    assert spec.violations == [] and 0 not in spec.streams


@pytest.mark.parametrize("gpu", ["8.6", "10.16"], indirect=True)
def test_torch_tensors_zero_copy_ordered_with_the_callers_stream(gpu, tiny_onnx, tmp_path) -> None:
    import torch

    from resnet_deploy.runtime import Runner

    kernel, spec = gpu
    with Runner.load(engine(tiny_onnx, tmp_path / "t.engine", "1:4:8")) as runner:
        side = torch.cuda.Stream()
        for n in (1, 5, 8):
            x = integer_batch(n, seed=200 + n)
            with torch.cuda.stream(side):  # a non-default stream, busy when the runner is called
                source = torch.from_numpy(x).pin_memory().cuda(non_blocking=True)
                torch.cuda._sleep(20_000_000)  # the input is written only after this spin
                batch = source * 1
                logits = runner.infer(batch)
                seen = logits.clone()  # the caller's next work on its stream sees the logits
            side.synchronize()
            assert np.array_equal(seen.cpu().numpy(), kernel.expected(x)), n
        x = integer_batch(6, seed=7)
        flat = torch.from_numpy(np.concatenate([[0.0], x.reshape(-1)]).astype(np.float32)).cuda()
        view = flat[1:].view(6, *SHAPE)  # 4 bytes into an allocation: not 256-byte aligned
        assert view.data_ptr() % 256 != 0
        assert np.array_equal(runner.infer(view).cpu().numpy(), kernel.expected(x))  # on torch's default stream
        if torch.cuda.device_count() > 1:
            from resnet_deploy.errors import ResnetDeployError

            with pytest.raises(ResnetDeployError, match="move it first"):
                runner.infer(view.to("cuda:1"))
    assert 0 not in spec.streams  # TensorRT never ran on the legacy default stream


def test_bench_times_with_cuda_events(gpu, tiny_onnx, tmp_path) -> None:
    from resnet_deploy.evaluate.bench import run_bench
    from resnet_deploy.runtime.load import open_backend

    backend = open_backend(engine(tiny_onnx, tmp_path / "b.engine", "1:4:8"))
    try:
        report = run_bench([backend], [1, 8], warmup=2, iters=6)
    finally:
        backend.close()
    assert [r.timer for r in report.rows] == ["cuda-events", "cuda-events"]
    assert all(0 < r.p50_ms < 1000 for r in report.rows)


def test_close_returns_all_device_memory(gpu, tiny_onnx, tmp_path) -> None:
    """Five load/run/close cycles leave device memory as they found it. Buffers for batch 256 and the
    graphs' activation block (about 1.2 MB a cycle) would show; the driver's own pools may keep a page."""
    import torch

    from resnet_deploy.runtime import Runner

    path = engine(tiny_onnx, tmp_path / "m.engine", "1:64:256")

    def lifecycle() -> None:
        for graphs in (False, True):
            with Runner.load(path, cuda_graph=graphs) as runner:
                for n in (3, 64, 300):
                    runner.infer(integer_batch(n))
                runner.backend.timed_infer(integer_batch(2))
                runner.infer(torch.ones((4, *SHAPE), device="cuda"))

    lifecycle()  # the driver's own first-use allocations happen here
    before = free_device_memory()
    for _ in range(5):
        lifecycle()
    assert before - free_device_memory() <= 2 << 20
