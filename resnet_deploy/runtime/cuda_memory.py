"""Device memory, pinned host memory and a stream, through cuda-python or (on JetPack) pycuda.

NVIDIA's samples moved from pycuda to cuda-python (``cuda.bindings``); JetPack images often carry
only pycuda. ``open_cuda()`` takes cuda-python first. CUDA graph capture needs cuda-python.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from resnet_deploy._lazy import INSTALL_HINTS
from resnet_deploy.errors import ResnetDeployError

INSTALL_HINT = f"{INSTALL_HINTS['cuda']}; or on JetPack, {INSTALL_HINTS['pycuda']}"


class CudaError(ResnetDeployError):
    pass


class CudaPython:
    """cuda-python's runtime API: every call returns (error, value...)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart
        self.stream = self._ok(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._device: list[int] = []
        self._host: list[int] = []

    def _ok(self, result: Any, what: str) -> Any:
        error, *values = result if isinstance(result, tuple) else (result,)
        if int(error) != 0:
            message = self.rt.cudaGetErrorString(error)[1]
            message = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
            raise CudaError(f"{what} failed: {message}")
        return values[0] if len(values) == 1 else values

    def device_properties(self) -> tuple[str, str]:
        device = self._ok(self.rt.cudaGetDevice(), "cudaGetDevice")
        props = self._ok(self.rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else props.name
        return str(name), f"{props.major}.{props.minor}"

    def alloc_device(self, nbytes: int) -> int:
        pointer = int(self._ok(self.rt.cudaMalloc(nbytes), "cudaMalloc"))
        self._device.append(pointer)
        return pointer

    def alloc_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pointer = int(self._ok(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host.append(pointer)
        buffer = (ctypes.c_byte * nbytes).from_address(pointer)
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)

    def h2d(self, device: int, host: np.ndarray, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(device, host.ctypes.data, nbytes, kind, self.stream), "cudaMemcpyAsync")

    def d2h(self, host: np.ndarray, device: int, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, device, nbytes, kind, self.stream), "cudaMemcpyAsync")

    def synchronize(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def begin_capture(self) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._ok(self.rt.cudaStreamBeginCapture(self.stream, mode), "cudaStreamBeginCapture")

    def end_capture(self) -> Any:
        graph = self._ok(self.rt.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
        try:
            return self._ok(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            self.rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs

    def abort_capture(self) -> None:
        error, graph = self.rt.cudaStreamEndCapture(self.stream)
        if int(error) == 0 and graph:
            self.rt.cudaGraphDestroy(graph)

    def launch(self, graph_exec: Any) -> None:
        self._ok(self.rt.cudaGraphLaunch(graph_exec, self.stream), "cudaGraphLaunch")

    def destroy_graph(self, graph_exec: Any) -> None:
        self.rt.cudaGraphExecDestroy(graph_exec)

    def event(self) -> Any:
        return self._ok(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event: Any) -> None:
        self._ok(self.rt.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_seconds(self, start: Any, end: Any) -> float:
        self._ok(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._ok(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime")) / 1000

    def close(self) -> None:
        for pointer in self._device:
            self.rt.cudaFree(pointer)
        for pointer in self._host:
            self.rt.cudaFreeHost(pointer)
        self._device, self._host = [], []
        self.rt.cudaStreamDestroy(self.stream)


class PyCuda:
    """pycuda: the JetPack path. No graph capture."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, driver: Any) -> None:
        self.cuda = driver
        self.stream = driver.Stream()
        self._keep: list[Any] = []

    def device_properties(self) -> tuple[str, str]:
        device = self.cuda.Context.get_device()
        major, minor = device.compute_capability()
        return str(device.name()), f"{major}.{minor}"

    def alloc_device(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(nbytes)
        self._keep.append(allocation)
        return int(allocation)

    def alloc_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        array = self.cuda.pagelocked_empty(shape, dtype)
        self._keep.append(array)
        return np.asarray(array)

    def h2d(self, device: int, host: np.ndarray, nbytes: int) -> None:
        self.cuda.memcpy_htod_async(device, host.reshape(-1)[: nbytes // host.itemsize], self.stream)

    def d2h(self, host: np.ndarray, device: int, nbytes: int) -> None:
        self.cuda.memcpy_dtoh_async(host.reshape(-1)[: nbytes // host.itemsize], device, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def begin_capture(self) -> None:
        raise CudaError("CUDA graph capture needs cuda-python; " + INSTALL_HINT)

    def end_capture(self) -> Any:
        raise CudaError("CUDA graph capture needs cuda-python")

    def abort_capture(self) -> None:
        return None

    def launch(self, graph_exec: Any) -> None:
        raise CudaError("CUDA graph capture needs cuda-python")

    def destroy_graph(self, graph_exec: Any) -> None:
        return None

    def event(self) -> Any:
        return self.cuda.Event()

    def record(self, event: Any) -> None:
        event.record(self.stream)

    def elapsed_seconds(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(end.time_since(start)) / 1000

    def close(self) -> None:
        self._keep = []


def open_cuda() -> CudaPython | PyCuda:
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef,attr-defined]  # older cuda-python
    except ImportError:
        pass
    else:
        try:
            return CudaPython(cudart)
        except CudaError as exc:
            raise CudaError(
                f"no usable NVIDIA GPU to run an engine on ({exc}); engines need a GPU and its driver"
            ) from None
    try:
        import pycuda.autoinit  # noqa: F401  # creates the context on device 0
        import pycuda.driver as driver

        return PyCuda(driver)
    except ImportError:
        pass
    except Exception as exc:  # pycuda without a usable GPU raises its own errors
        raise CudaError(f"no usable NVIDIA GPU to run an engine on (pycuda: {exc})") from None
    raise CudaError(f"running a TensorRT engine needs CUDA memory from Python: {INSTALL_HINT}")
