"""A CPU stand-in for cuda-python's runtime module (``cuda.bindings.runtime``), for the runner's tests.

It has the calls ``resnet_deploy.runtime.cuda_memory`` makes, each returning cuda-python's
``(error, value...)`` tuple, and it keeps count of what is alive, so a test can assert that every
stream, event, buffer and graph a refusal or ``close()`` leaves behind is zero. "Device" memory is
real host memory (256-byte aligned), so the stand-in TensorRT engine in ``tests/trt_standin.py``
computes on it. Work on a stream runs at once, or is recorded while the stream captures a graph and
replayed by ``cudaGraphLaunch``.

``major`` picks the signatures of that cuda-python series: 11.x has
``cudaGraphInstantiate(graph, logBuffer, bufferSize) -> (err, exec, errorNode)``, 12/13 have
``cudaGraphInstantiate(graph, flags) -> (err, exec)``; ``cudaGraphInstantiateWithFlags`` is the
same in all three. ``driver_too_old=True`` answers every call with cudaErrorInsufficientDriver (35),
as cuda-bindings 13 does on a CUDA 12 driver. ``fail={"cudaMalloc": 2}`` fails the second
cudaMalloc with cudaErrorMemoryAllocation, to reach each refusal path.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from enum import IntEnum
from types import SimpleNamespace
from typing import Any


class cudaError_t(IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidResourceHandle = 400
    cudaErrorStreamCaptureUnsupported = 900


class cudaMemcpyKind(IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStreamCaptureMode(IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class Handle:
    """An opaque CUDA handle: ``int()`` gives its value and, as in cuda-python, even NULL is truthy."""

    def __init__(self, kind: str, value: int) -> None:
        self.kind, self.value = kind, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"<{self.kind} {self.value:#x}>"


class FakeCudart:
    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamDefault = 0
    cudaStreamNonBlocking = 1
    cudaEventDefault = 0
    cudaEventDisableTiming = 2

    def __init__(
        self,
        *,
        major: int = 12,
        gpu: str = "NVIDIA H100 80GB HBM3",
        compute_capability: tuple[int, int] = (9, 0),
        driver_version: int = 12040,
        driver_too_old: bool = False,
        fail: dict[str, int] | None = None,
        total_memory: int = 80 << 30,
    ) -> None:
        self.major = major
        self.gpu, self.compute_capability = gpu, compute_capability
        self.driver_version, self.driver_too_old = driver_version, driver_too_old
        self.fail = dict(fail or {})  # call name -> which call (1 = the first) fails
        self.total_memory = total_memory
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.current_device = 0
        self.live: dict[str, dict[int, Any]] = {k: {} for k in ("stream", "event", "device", "host", "graph", "exec")}
        self.stream_flags: dict[int, int] = {0: 0}
        self.stream_device: dict[int, int] = {}  # the device current when each stream was created
        self.capturing: dict[int, list[Callable[[], None]]] = {}
        self.clock_ms = 0.0
        self._next = 0x1000
        self._counts: dict[str, int] = {}
        if major < 12:  # cuda-python 11.x: cudaGraphInstantiate(graph, char* pLogBuffer, size_t bufferSize)
            self.cudaGraphInstantiate = self._instantiate_11

    # -- bookkeeping ---------------------------------------------------------------------------
    def outstanding(self) -> dict[str, int]:
        """What is still allocated, by kind (empty when everything was freed)."""
        return {kind: len(items) for kind, items in self.live.items() if items}

    def _enter(self, name: str, *args: Any) -> cudaError_t:
        self.calls.append((name, args))
        self._counts[name] = self._counts.get(name, 0) + 1
        if self.driver_too_old and name not in ("cudaGetErrorString", "cudaGetErrorName", "cudaDriverGetVersion"):
            return cudaError_t.cudaErrorInsufficientDriver
        if self.fail.get(name) == self._counts[name]:
            return cudaError_t.cudaErrorMemoryAllocation
        return cudaError_t.cudaSuccess

    def _handle(self, kind: str, payload: Any) -> Handle:
        self._next += 0x100
        self.live[kind][self._next] = payload
        return Handle(kind, self._next)

    def _alloc(self, kind: str, nbytes: int) -> int:
        raw = (ctypes.c_byte * (nbytes + 256))()
        pointer = (ctypes.addressof(raw) + 255) & ~255
        self.live[kind][pointer] = (raw, nbytes)
        return pointer

    def _release(self, kind: str, handle: Any) -> cudaError_t:
        return (
            cudaError_t.cudaSuccess
            if self.live[kind].pop(int(handle), None) is not None
            else (cudaError_t.cudaErrorInvalidValue)
        )

    def check_device_range(self, pointer: int, nbytes: int) -> None:
        """Raise when [pointer, pointer + nbytes) is not inside one live device allocation."""
        for start, (_, size) in self.live["device"].items():
            if start <= pointer and pointer + nbytes <= start + size:
                return
        raise AssertionError(f"device access to {pointer:#x}+{nbytes} outside any live cudaMalloc allocation")

    def enqueue(self, stream: int, work: Callable[[], None]) -> None:
        """Run ``work`` on ``stream``: now, or recorded into the graph the stream is capturing."""
        stream = int(stream)
        if stream not in self.stream_flags:
            raise AssertionError(f"work enqueued on stream {stream:#x}, which is not alive")
        if stream in self.capturing:
            self.capturing[stream].append(work)
        else:
            work()
            self.clock_ms += 0.25

    # -- device --------------------------------------------------------------------------------
    def cudaGetErrorString(self, error: Any) -> tuple[cudaError_t, bytes]:
        return cudaError_t.cudaSuccess, cudaError_t(int(error)).name.encode()

    def cudaGetErrorName(self, error: Any) -> tuple[cudaError_t, bytes]:
        return cudaError_t.cudaSuccess, cudaError_t(int(error)).name.encode()

    def cudaDriverGetVersion(self) -> tuple[cudaError_t, int]:
        return self._enter("cudaDriverGetVersion"), self.driver_version

    def cudaRuntimeGetVersion(self) -> tuple[cudaError_t, int]:
        return self._enter("cudaRuntimeGetVersion"), self.major * 1000

    def cudaGetDevice(self) -> tuple[cudaError_t, int]:
        return self._enter("cudaGetDevice"), self.current_device

    def cudaSetDevice(self, device: int) -> tuple[cudaError_t]:
        error = self._enter("cudaSetDevice", device)
        if not error:
            self.current_device = int(device)
        return (error,)

    def cudaGetDeviceProperties(self, device: int) -> tuple[cudaError_t, Any]:
        major, minor = self.compute_capability
        props = SimpleNamespace(name=self.gpu.encode() + b"\x00" * 4, major=major, minor=minor)
        return self._enter("cudaGetDeviceProperties", device), props

    def cudaMemGetInfo(self) -> tuple[cudaError_t, int, int]:
        used = sum(size for _, size in self.live["device"].values())
        return self._enter("cudaMemGetInfo"), self.total_memory - used, self.total_memory

    # -- memory --------------------------------------------------------------------------------
    def cudaMalloc(self, nbytes: int) -> tuple[cudaError_t, int]:
        error = self._enter("cudaMalloc", nbytes)
        return (error, 0) if error else (error, self._alloc("device", nbytes))

    def cudaFree(self, pointer: int) -> tuple[cudaError_t]:
        error = self._enter("cudaFree", pointer)
        if error or int(pointer) == 0:  # cudaFree(0): a no-op that initialises CUDA
            return (error,)
        return (self._release("device", pointer),)

    def cudaMallocHost(self, nbytes: int) -> tuple[cudaError_t, int]:
        error = self._enter("cudaMallocHost", nbytes)
        return (error, 0) if error else (error, self._alloc("host", nbytes))

    def cudaFreeHost(self, pointer: int) -> tuple[cudaError_t]:
        self._enter("cudaFreeHost", pointer)
        return (self._release("host", pointer),)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple[cudaError_t]:
        error = self._enter("cudaMemcpyAsync", dst, src, count, kind, stream)
        if error:
            return (error,)
        device_side = dst if int(kind) == cudaMemcpyKind.cudaMemcpyHostToDevice else src
        self.check_device_range(int(device_side), count)
        self.enqueue(int(stream), lambda: ctypes.memmove(int(dst), int(src), count))
        return (cudaError_t.cudaSuccess,)

    # -- streams and events --------------------------------------------------------------------
    def cudaStreamCreate(self) -> tuple[cudaError_t, Any]:
        return self.cudaStreamCreateWithFlags(self.cudaStreamDefault, _name="cudaStreamCreate")

    def cudaStreamCreateWithFlags(
        self, flags: int, _name: str = "cudaStreamCreateWithFlags"
    ) -> tuple[cudaError_t, Any]:
        error = self._enter(_name, flags)
        if error:
            return error, None
        stream = self._handle("stream", flags)
        self.stream_flags[int(stream)] = int(flags)
        self.stream_device[int(stream)] = self.current_device
        return error, stream

    def cudaStreamDestroy(self, stream: Any) -> tuple[cudaError_t]:
        self._enter("cudaStreamDestroy", stream)
        self.stream_flags.pop(int(stream), None)
        return (self._release("stream", stream),)

    def cudaStreamSynchronize(self, stream: Any) -> tuple[cudaError_t]:
        error = self._enter("cudaStreamSynchronize", stream)
        if not error and int(stream) not in self.stream_flags:
            error = cudaError_t.cudaErrorInvalidResourceHandle
        return (error,)

    def cudaEventCreate(self) -> tuple[cudaError_t, Any]:
        return self.cudaEventCreateWithFlags(self.cudaEventDefault, _name="cudaEventCreate")

    def cudaEventCreateWithFlags(self, flags: int, _name: str = "cudaEventCreateWithFlags") -> tuple[cudaError_t, Any]:
        error = self._enter(_name, flags)
        if error:
            return error, None
        return error, self._handle("event", {"flags": int(flags), "at": None, "device": self.current_device})

    def cudaEventDestroy(self, event: Any) -> tuple[cudaError_t]:
        self._enter("cudaEventDestroy", event)
        return (self._release("event", event),)

    def cudaEventRecord(self, event: Any, stream: Any) -> tuple[cudaError_t]:
        error = self._enter("cudaEventRecord", event, stream)
        state = self.live["event"].get(int(event))
        if error or state is None:
            return (error or cudaError_t.cudaErrorInvalidResourceHandle,)
        if self.stream_device.get(int(stream), state["device"]) != state["device"]:  # CUDA: one device for both
            return (cudaError_t.cudaErrorInvalidResourceHandle,)
        self.enqueue(int(stream), lambda: state.update(at=self.clock_ms))
        return (cudaError_t.cudaSuccess,)

    def cudaStreamWaitEvent(self, stream: Any, event: Any, flags: int = 0) -> tuple[cudaError_t]:
        error = self._enter("cudaStreamWaitEvent", stream, event, flags)
        if not error and (int(event) not in self.live["event"] or int(stream) not in self.stream_flags):
            error = cudaError_t.cudaErrorInvalidResourceHandle
        return (error,)

    def cudaEventSynchronize(self, event: Any) -> tuple[cudaError_t]:
        return (self._enter("cudaEventSynchronize", event),)

    def cudaEventElapsedTime(self, start: Any, end: Any) -> tuple[cudaError_t, float]:
        error = self._enter("cudaEventElapsedTime", start, end)
        a, b = self.live["event"].get(int(start)), self.live["event"].get(int(end))
        if error or a is None or b is None or a["at"] is None or b["at"] is None:
            return error or cudaError_t.cudaErrorInvalidResourceHandle, 0.0
        return cudaError_t.cudaSuccess, float(b["at"] - a["at"])

    # -- graphs --------------------------------------------------------------------------------
    def cudaStreamBeginCapture(self, stream: Any, mode: Any) -> tuple[cudaError_t]:
        error = self._enter("cudaStreamBeginCapture", stream, mode)
        if not error:
            if int(stream) == 0:
                return (cudaError_t.cudaErrorStreamCaptureUnsupported,)  # the legacy stream cannot capture
            self.capturing[int(stream)] = []
        return (error,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple[cudaError_t, Any]:
        error = self._enter("cudaStreamEndCapture", stream)
        work = self.capturing.pop(int(stream), None)
        if error or work is None:
            return error or cudaError_t.cudaErrorInvalidValue, Handle("graph", 0)
        return cudaError_t.cudaSuccess, self._handle("graph", work)

    def cudaGraphInstantiate(self, graph: Any, flags: int = 0) -> tuple[cudaError_t, Any]:
        return self._instantiate("cudaGraphInstantiate", graph)

    def cudaGraphInstantiateWithFlags(self, graph: Any, flags: int = 0) -> tuple[cudaError_t, Any]:
        return self._instantiate("cudaGraphInstantiateWithFlags", graph)

    def _instantiate_11(self, graph: Any, log_buffer: bytes, buffer_size: int) -> tuple[cudaError_t, Any, Any]:
        error, graph_exec = self._instantiate("cudaGraphInstantiate", graph)
        return error, graph_exec, None

    def _instantiate(self, name: str, graph: Any) -> tuple[cudaError_t, Any]:
        error = self._enter(name, graph)
        work = self.live["graph"].get(int(graph))
        if error or work is None:
            return error or cudaError_t.cudaErrorInvalidValue, None
        return cudaError_t.cudaSuccess, self._handle("exec", list(work))

    def cudaGraphDestroy(self, graph: Any) -> tuple[cudaError_t]:
        self._enter("cudaGraphDestroy", graph)
        return (self._release("graph", graph),)

    def cudaGraphLaunch(self, graph_exec: Any, stream: Any) -> tuple[cudaError_t]:
        error = self._enter("cudaGraphLaunch", graph_exec, stream)
        work = self.live["exec"].get(int(graph_exec))
        if error or work is None:
            return (error or cudaError_t.cudaErrorInvalidResourceHandle,)
        for item in work:
            self.enqueue(int(stream), item)
        return (cudaError_t.cudaSuccess,)

    def cudaGraphExecDestroy(self, graph_exec: Any) -> tuple[cudaError_t]:
        self._enter("cudaGraphExecDestroy", graph_exec)
        return (self._release("exec", graph_exec),)


class FakePyCuda:
    """A stand-in for ``pycuda.driver`` on the same fake device: allocations count in ``cuda.live``,
    and what happens to the primary context is logged in ``context_log``."""

    def __init__(self, cuda: FakeCudart) -> None:
        import weakref

        import numpy as np

        self.rt, self.context_log = cuda, []
        rt, log, np_ = cuda, self.context_log, np

        class PrimaryContext:
            def push(self) -> None:
                log.append("push")

            def pop(self) -> None:
                log.append("pop")

            def detach(self) -> None:
                log.append("detach")

        class Device:
            def __init__(self, ordinal: int) -> None:
                self.ordinal = ordinal

            def compute_capability(self) -> tuple[int, int]:
                return rt.compute_capability

            def name(self) -> str:
                return rt.gpu

            def retain_primary_context(self) -> PrimaryContext:
                log.append("retain_primary_context")
                return PrimaryContext()

            def make_context(self) -> None:
                raise AssertionError("a new context: torch and TensorRT would not share it")

        class Stream:
            def __init__(self, flags: int = 0) -> None:
                self.handle = int(rt._handle("stream", flags))
                rt.stream_flags[self.handle] = flags
                weakref.finalize(
                    self, lambda h=self.handle: (rt.live["stream"].pop(h, None), rt.stream_flags.pop(h, None))
                )

            def synchronize(self) -> None:
                pass

            def wait_for_event(self, event: Any) -> None:
                rt.calls.append(("wait_for_event", (self.handle,)))

        class Event:
            def __init__(self, flags: int = 0) -> None:
                self.at = None

            def record(self, stream: Any = None) -> Event:
                rt.enqueue(stream.handle if stream is not None else 0, lambda: setattr(self, "at", rt.clock_ms))
                return self

            def synchronize(self) -> None:
                pass

            def time_since(self, start: Any) -> float:
                return float(self.at - start.at)

        class DeviceAllocation:
            def __init__(self, nbytes: int) -> None:
                self.pointer = rt._alloc("device", nbytes)

            def __int__(self) -> int:
                return self.pointer

            def free(self) -> None:
                rt._release("device", self.pointer)

        class Pagelocked(np_.ndarray):
            def free(self) -> None:
                rt._release("host", self.ctypes.data)

        def pagelocked_empty(shape: Any, dtype: Any) -> Any:
            nbytes = int(np_.prod(shape)) * np_.dtype(dtype).itemsize
            pointer = rt._alloc("host", nbytes)
            raw = (ctypes.c_byte * nbytes).from_address(pointer)
            return np_.ndarray.__new__(Pagelocked, shape, dtype, buffer=raw)

        def memcpy_htod_async(dest: Any, src: Any, stream: Any) -> None:
            rt.check_device_range(int(dest), src.nbytes)
            rt.enqueue(stream.handle, lambda: ctypes.memmove(int(dest), src.ctypes.data, src.nbytes))

        def memcpy_dtoh_async(dest: Any, src: Any, stream: Any) -> None:
            rt.check_device_range(int(src), dest.nbytes)
            rt.enqueue(stream.handle, lambda: ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes))

        self.Device, self.Stream, self.Event = Device, Stream, Event
        self.mem_alloc = DeviceAllocation
        self.pagelocked_empty = pagelocked_empty
        self.memcpy_htod_async, self.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async

    def init(self, flags: int = 0) -> None:
        self.context_log.append("init")

    def mem_get_info(self) -> tuple[int, int]:
        return self.rt.cudaMemGetInfo()[1:]
