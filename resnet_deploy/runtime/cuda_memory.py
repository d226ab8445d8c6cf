"""CUDA for the engine runner: streams, device and pinned buffers, events and graphs.

Two bindings, tried in this order by ``open_cuda()``:

- cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in 11.8.3 and 12.0-12.6.0), the one
  NVIDIA's samples use. Its CUDA major version must not be newer than the driver's: cuda-bindings
  13 on a CUDA 12 driver answers every call with cudaErrorInsufficientDriver (35), and 12.x on
  JetPack 5's CUDA 11.4 fails alike. So the driver's CUDA version is read from libcuda first (no
  bindings needed) and compared with the bindings' (``cudaRuntimeGetVersion``); the pip extras are
  ``resnet-deploy[cuda]`` (CUDA 12 bindings: drivers for CUDA 12.x and 13.x), ``[cuda13]`` and
  ``[cuda11]`` (JetPack 5), and the error names the one that fits.
- pycuda (JetPack images often carry only pycuda), on the device's *primary* context, the one the
  CUDA runtime, TensorRT and torch use, so torch tensors and the runner share it. pycuda.autoinit
  would create a second, private context instead.

Only calls whose signature is the same in cuda-python 11.4 to 13 are used
(``cudaGraphInstantiateWithFlags``, not ``cudaGraphInstantiate``). Streams are non-blocking, so
work on the legacy default stream elsewhere in the process neither serialises with inference nor
breaks a graph capture. Every stream, buffer, event and graph handed out is tracked; ``close()``
frees them all, newest first, and a failure half-way frees what was acquired so far.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from resnet_deploy._lazy import INSTALL_HINTS
from resnet_deploy.errors import CudaError
from resnet_deploy.runtime.machine import cuda_version_text, describe_no_gpu, driver_cuda_version, gpu_count

INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver / CUDA_ERROR_... : driver older than the bindings
NON_BLOCKING = 1  # cudaStreamNonBlocking / CU_STREAM_NON_BLOCKING
DISABLE_TIMING = 2  # cudaEventDisableTiming / CU_EVENT_DISABLE_TIMING


version_text = cuda_version_text


def cuda_extra(driver_version: int | None) -> str:
    """The pip extra whose cuda-python runs on a driver for this CUDA version: the driver's own major
    version (a 13.x driver runs CUDA 12 bindings too, but torch's CUDA 13 wheels require the 13.x ones,
    and the two cannot be installed together); JetPack 5 (CUDA 11.4) needs the 11.x ones."""
    if driver_version is not None and driver_version < 12000:
        return "cuda11"
    return "cuda13" if driver_version is not None and driver_version >= 13000 else "cuda"


def install_hint(driver_version: int | None) -> str:
    found = f"the driver supports CUDA {version_text(driver_version)}" if driver_version else "no NVIDIA driver found"
    return (
        f'pip install "resnet-deploy[{cuda_extra(driver_version)}]" ({found}); or on JetPack, {INSTALL_HINTS["pycuda"]}'
    )


class CudaPython:
    """cuda-python's runtime API: every call returns (error, value...)."""

    name = "cuda-python"
    supports_graphs = True

    _FREE: ClassVar[dict[str, str]] = {
        "stream": "cudaStreamDestroy",
        "device": "cudaFree",
        "host": "cudaFreeHost",
        "event": "cudaEventDestroy",
        "graph": "cudaGraphExecDestroy",
    }

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart
        self._live: list[tuple[str, Any]] = []
        self._ok(cudart.cudaFree(0), "CUDA initialisation (cudaFree(0))")  # a driver too old fails here
        self.device = int(self._ok(cudart.cudaGetDevice(), "cudaGetDevice"))

    def _ok(self, result: Any, what: str) -> Any:
        error, *values = result if isinstance(result, tuple) else (result,)
        if int(error) != 0:
            raise CudaError(f"{what} failed: {_error_text(self.rt, error)} ({int(error)})")
        return values[0] if len(values) == 1 else values

    def _track(self, kind: str, handle: Any) -> Any:
        self._live.append((kind, handle))
        return handle

    @contextmanager
    def current(self) -> Iterator[None]:
        """This runner's device made current for the calls inside (the caller's restored after)."""
        previous = int(self._ok(self.rt.cudaGetDevice(), "cudaGetDevice"))
        if previous == self.device:
            yield
            return
        self._ok(self.rt.cudaSetDevice(self.device), "cudaSetDevice")
        try:
            yield
        finally:
            self.rt.cudaSetDevice(previous)

    def device_properties(self) -> tuple[str, str]:
        props = self._ok(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else props.name
        return str(name), f"{props.major}.{props.minor}"

    def create_stream(self) -> Any:
        return self._track("stream", self._ok(self.rt.cudaStreamCreateWithFlags(NON_BLOCKING), "cudaStreamCreate"))

    @staticmethod
    def handle(stream: Any) -> int:
        return int(stream)

    def alloc_device(self, nbytes: int) -> int:
        return int(self._track("device", int(self._ok(self.rt.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))))

    def alloc_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pointer = int(self._track("host", int(self._ok(self.rt.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))))
        buffer = (ctypes.c_byte * nbytes).from_address(pointer)
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)

    def h2d(self, device: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(device, host.ctypes.data, nbytes, kind, stream), "cudaMemcpyAsync")

    def d2h(self, host: np.ndarray, device: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, device, nbytes, kind, stream), "cudaMemcpyAsync")

    def synchronize(self, stream: Any) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def create_event(self, timing: bool = False) -> Any:
        flags = 0 if timing else DISABLE_TIMING
        return self._track("event", self._ok(self.rt.cudaEventCreateWithFlags(flags), "cudaEventCreate"))

    def record(self, event: Any, stream: Any) -> None:
        self._ok(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def wait(self, stream: Any, event: Any) -> None:
        """Work queued on ``stream`` from now on waits for ``event``."""
        self._ok(self.rt.cudaStreamWaitEvent(stream, event, 0), "cudaStreamWaitEvent")

    def elapsed_seconds(self, start: Any, end: Any) -> float:
        self._ok(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._ok(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime")) / 1000

    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._ok(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: Any) -> Any:
        """The executable graph of what was captured on ``stream``."""
        graph = self._ok(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:  # WithFlags: the same signature in cuda-python 11.4+, 12.x and 13.x (cudaGraphInstantiate is not)
            return self._track(
                "graph", self._ok(self.rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiate")
            )
        finally:
            self.rt.cudaGraphDestroy(graph)  # the executable graph keeps what it needs

    def abort_capture(self, stream: Any) -> None:
        """End a capture that failed half-way, dropping what it recorded."""
        error, graph = self.rt.cudaStreamEndCapture(stream)
        if int(error) == 0 and int(graph) != 0:  # cuda-python handles are truthy even when NULL
            self.rt.cudaGraphDestroy(graph)

    def launch(self, graph: Any, stream: Any) -> None:
        self._ok(self.rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def free(self, handle: Any) -> None:
        """Free one resource handed out before (a graph replaced, a buffer no longer needed)."""
        for i, (kind, live) in enumerate(self._live):
            if live is handle or (kind in ("device", "host") and live == handle):
                del self._live[i]
                getattr(self.rt, self._FREE[kind])(live)
                return

    def close(self) -> None:
        """Free everything, newest first; never raises (it runs on error paths)."""
        while self._live:
            kind, handle = self._live.pop()
            try:
                getattr(self.rt, self._FREE[kind])(handle)
            except Exception:
                pass


def _error_text(cudart: Any, error: Any) -> str:
    """cudaGetErrorName: its error's name (cudaGetErrorString raises in cuda-python <= 12.8 without a driver)."""
    try:
        text = cudart.cudaGetErrorName(error)[1]
        return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    except Exception:
        return getattr(error, "name", str(error))


class PyCuda:
    """pycuda on the device's primary context (the JetPack path). No graph capture."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self, driver: Any, device: int = 0) -> None:
        self.cuda = driver
        driver.init()
        self.device = device
        self.context = driver.Device(device).retain_primary_context()
        self.context.push()  # current on this thread, as the runtime API and torch see it
        self._live: list[tuple[str, Any]] = []

    @contextmanager
    def current(self) -> Iterator[None]:
        """The primary context pushed for the calls inside (pycuda's contexts are per thread)."""
        context = self.context
        context.push()
        try:
            yield
        finally:
            if self.context is not None:  # close() inside it released the context itself
                context.pop()

    def device_properties(self) -> tuple[str, str]:
        device = self.cuda.Device(self.device)
        major, minor = device.compute_capability()
        return str(device.name()), f"{major}.{minor}"

    def create_stream(self) -> Any:
        return self._track("stream", self.cuda.Stream(flags=NON_BLOCKING))

    def _track(self, kind: str, obj: Any) -> Any:
        self._live.append((kind, obj))
        return obj

    @staticmethod
    def handle(stream: Any) -> int:
        return int(stream.handle)

    def alloc_device(self, nbytes: int) -> int:
        return int(self._track("device", self.cuda.mem_alloc(nbytes)))

    def alloc_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.asarray(self._track("host", self.cuda.pagelocked_empty(shape, dtype)))

    def h2d(self, device: int, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self.cuda.memcpy_htod_async(device, host.reshape(-1)[: nbytes // host.itemsize], stream)

    def d2h(self, host: np.ndarray, device: int, nbytes: int, stream: Any) -> None:
        self.cuda.memcpy_dtoh_async(host.reshape(-1)[: nbytes // host.itemsize], device, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def create_event(self, timing: bool = False) -> Any:
        return self._track("event", self.cuda.Event(0 if timing else DISABLE_TIMING))

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def wait(self, stream: Any, event: Any) -> None:
        stream.wait_for_event(event)

    def elapsed_seconds(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(end.time_since(start)) / 1000

    def begin_capture(self, stream: Any) -> None:
        raise CudaError('CUDA graph capture needs cuda-python: pip install "resnet-deploy[cuda]"')

    def end_capture(self, stream: Any) -> Any:
        raise CudaError("CUDA graph capture needs cuda-python")

    def abort_capture(self, stream: Any) -> None:
        return None

    def launch(self, graph: Any, stream: Any) -> None:
        raise CudaError("CUDA graph capture needs cuda-python")

    def free(self, handle: Any) -> None:
        self._live = [(kind, obj) for kind, obj in self._live if obj is not handle]
        if hasattr(handle, "free"):
            handle.free()

    def close(self) -> None:
        while self._live:
            kind, obj = self._live.pop()
            try:
                if kind in ("device", "host") and hasattr(obj, "free"):
                    obj.free()  # DeviceAllocation.free(); pagelocked arrays: .base.free()
                elif kind == "host" and hasattr(getattr(obj, "base", None), "free"):
                    obj.base.free()
            except Exception:
                pass
            del obj  # streams and events die with their object, and need the context alive to do so
        if self.context is not None:
            try:
                self.context.pop()
                self.context.detach()  # releases the retained primary context
            except Exception:
                pass
            self.context = None


def _import_cuda_python() -> Any:
    try:
        from cuda.bindings import runtime  # inside: cuda-python >= 12.6 has this one

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # type: ignore[attr-defined]  # inside: cuda-python 11.x, 12.0-12.5

        return cudart
    except ImportError:
        return None


def _import_pycuda() -> Any:
    try:
        import pycuda.driver as driver  # inside: the bindings found here decide which module exists

        return driver
    except ImportError:
        return None


def _bindings_major(cudart: Any) -> int | None:
    """The CUDA major version these bindings implement (answers without a driver, in every version)."""
    try:
        error, version = cudart.cudaRuntimeGetVersion()
        return int(version) // 1000 if int(error) == 0 and version else None
    except Exception:
        return None


def _bindings_version() -> str:
    from importlib import metadata  # inside: only when no binding imported

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "cuda-python"


def open_cuda() -> CudaPython | PyCuda:
    """cuda-python, else pycuda (on the primary context); one line saying why neither works otherwise."""
    problems = []
    driver_version = driver_cuda_version()
    too_old = False
    cudart = _import_cuda_python()
    if cudart is not None:
        major = _bindings_major(cudart)
        if driver_version is not None and major is not None and major > driver_version // 1000:
            too_old = True  # every call would fail with cudaErrorInsufficientDriver (35)
            problems.append(
                f"{_bindings_version()} is built for CUDA {major}.x "
                f"but the driver supports CUDA {version_text(driver_version)}"
            )
        else:
            try:
                return CudaPython(cudart)
            except (CudaError, RuntimeError) as exc:  # cuda-python <= 12.8 raises RuntimeError without a driver
                too_old = too_old or f"({INSUFFICIENT_DRIVER})" in str(exc)
                problems.append(f"{_bindings_version()}: {exc}")
    driver = _import_pycuda()
    if driver is not None:
        try:
            return PyCuda(driver, int(os.environ.get("CUDA_DEVICE", "0")))
        except Exception as exc:  # pycuda raises its own errors when no GPU or driver is usable
            problems.append(f"pycuda: {str(exc).strip() or type(exc).__name__}")
    if not problems:
        raise CudaError(f"running a TensorRT engine needs CUDA from Python: {install_hint(driver_version)}")
    elsewhere = "or run the ONNX model with ONNX Runtime (on the CPU) instead"
    if driver_version is None:
        # no libcuda at all: what the bindings say then misleads (cuda-bindings >= 12.9 answer every call
        # with cudaErrorInsufficientDriver, "CUDA driver version is insufficient"), so it is left out
        raise CudaError(f"no usable NVIDIA GPU to run an engine on: {describe_no_gpu(None, 0)}, {elsewhere}")
    if too_old:
        raise CudaError(
            f"the installed CUDA bindings are newer than this NVIDIA driver ({'; '.join(problems)}): "
            f'pip install "resnet-deploy[{cuda_extra(driver_version)}]", or update the driver'
        )
    no_device = describe_no_gpu(driver_version, gpu_count())
    if no_device is not None:
        raise CudaError(f"no usable NVIDIA GPU to run an engine on: {no_device}, {elsewhere}")
    raise CudaError(
        f"no usable NVIDIA GPU to run an engine on: the driver sees one, but CUDA does not start "
        f"({'; '.join(problems)})"
    )
