"""Which runtime runs an ONNX file: ONNX Runtime or OpenVINO, named, or measured per artifact ("auto").

``auto`` opens the file in both and times them on this CPU, in alternating blocks of calls on the
same batch, and keeps OpenVINO unless ONNX Runtime is faster by more than ``MARGIN``: a choice
that flips with timing noise would change which runtime's rounding ``validate`` reports from one
run to the next, so a near tie goes to OpenVINO, which measured as fast or faster on every form of
ResNet-50 here (scripts/bench_cpu_runtimes.py). ONNX Runtime is kept without a probe when OpenVINO
is not installed, when ONNX Runtime runs on a GPU (OpenVINO here is CPU only) and when
``providers`` are named; when OpenVINO cannot compile the file, with a note saying why.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_module
from resnet_deploy.errors import RunnerError
from resnet_deploy.runtime.base import Backend, random_batch

if TYPE_CHECKING:
    from resnet_deploy.runtime import onnx_backend, openvino_backend
else:
    onnx_backend = lazy_module("resnet_deploy.runtime.onnx_backend")
    openvino_backend = lazy_module("resnet_deploy.runtime.openvino_backend")

ONNX_BACKENDS = ("auto", "onnxruntime", "openvino")
MARGIN = 0.10  # ONNX Runtime is chosen only when faster than OpenVINO by more than this
PROBE_WARMUP = 2  # untimed calls of each runtime
PROBE_BLOCKS = 3  # alternating blocks of timed calls
PROBE_CALLS = 3  # timed calls per block
PROBE_PAUSE = 0.05  # seconds before each block: the other runtime's worker threads spin for a while after a
# call, and on 2 cores that slowed the next runtime's calls by up to 1.6x (OpenVINO on ResNet-50 INT8, here)


def open_onnx(
    path: str | Path,
    backend: str = "auto",
    providers: list[Any] | None = None,
    threads: int | None = None,
    streams: int = 1,
    inference_precision: str | None = None,
) -> Backend:
    """Open an ONNX file on ``backend``: "onnxruntime", "openvino", or "auto" (see the module docstring)."""

    if backend not in ONNX_BACKENDS:
        raise RunnerError(f"backend {backend!r} does not run ONNX files; use one of {', '.join(ONNX_BACKENDS)}")
    if providers and backend == "openvino":
        raise RunnerError("providers are ONNX Runtime's; OpenVINO takes threads, streams and inference_precision")
    if inference_precision is not None and backend == "onnxruntime":
        raise RunnerError("inference_precision is OpenVINO's; ONNX Runtime runs the precision the file holds")
    if inference_precision is not None and providers:
        raise RunnerError(
            "providers are ONNX Runtime's and inference_precision is OpenVINO's: ask for one runtime's options"
        )
    if backend == "openvino" or (backend == "auto" and inference_precision is not None):
        openvino = _open_openvino(path, threads, streams, inference_precision)
        if backend == "auto":
            openvino.chosen_because = "auto: OpenVINO, the runtime that takes inference_precision"
        return openvino
    onnxruntime = onnx_backend.OnnxRuntimeBackend(path, providers=providers, threads=threads, streams=streams)
    if backend == "onnxruntime" or providers:
        return onnxruntime
    if onnxruntime.on_gpu:
        onnxruntime.chosen_because = f"auto: ONNX Runtime on {onnxruntime.providers[0]} (OpenVINO here runs the CPU)"
        return onnxruntime

    if not openvino_backend.openvino_installed():
        onnxruntime.chosen_because = f"auto: OpenVINO is not installed ({openvino_backend.INSTALL} may run it faster)"
        return onnxruntime
    try:
        openvino = _open_openvino(path, threads, streams, None, (onnxruntime.metadata, onnxruntime.precision))
    except RunnerError as exc:
        return _fall_back(onnxruntime, exc)
    try:
        return choose_faster(openvino, onnxruntime)
    except RunnerError as exc:  # compiled, but failed to run: the probe's batch is a real one
        openvino.close()
        return _fall_back(onnxruntime, exc)
    except BaseException:
        openvino.close()
        onnxruntime.close()
        raise


def _fall_back(onnxruntime: Backend, exc: RunnerError) -> Backend:
    """ONNX Runtime, with a note saying what OpenVINO could not do (its advice to use ONNX Runtime dropped)."""

    onnxruntime.chosen_because = "auto: OpenVINO cannot run it"
    onnxruntime.notes.append(f"{str(exc).removesuffix(openvino_backend.USE_ONNXRUNTIME)}; running it on ONNX Runtime")
    return onnxruntime


def _open_openvino(
    path: str | Path,
    threads: int | None,
    streams: int,
    inference_precision: str | None,
    checked: Any = None,
) -> Backend:

    return openvino_backend.OpenVinoBackend(
        path, threads=threads, streams=streams, inference_precision=inference_precision or "f32", _checked=checked
    )


def choose_faster(openvino: Backend, onnxruntime: Backend) -> Backend:
    """The faster of two opened backends of one file, timed here (OpenVINO on a near tie); the other is closed."""
    seconds = probe([openvino, onnxruntime])
    ov_ms, ort_ms = (s * 1000 for s in seconds)
    chosen, other = (onnxruntime, openvino) if ort_ms * (1 + MARGIN) < ov_ms else (openvino, onnxruntime)
    other.close()
    rows = _probe_rows(openvino)
    chosen.chosen_because = (
        f"auto: {'OpenVINO' if chosen is openvino else 'ONNX Runtime'}; measured here on a batch of {rows}"
        + (f" x {openvino.streams} streams" if openvino.streams > 1 else "")
        + f": OpenVINO {ov_ms:.3g} ms, ONNX Runtime {ort_ms:.3g} ms"
    )
    return chosen


def _probe_rows(backend: Backend) -> int:
    return getattr(backend, "static_batch", None) or 1


def probe(backends: list[Backend]) -> list[float]:
    """Median seconds of a call of each backend on one seeded batch (``infer_many`` of one batch per stream
    for backends opened with streams), timed in alternating blocks so drift hits them alike."""
    first = backends[0]
    x = random_batch(first, _probe_rows(first), np.random.default_rng(0))

    def call(backend: Backend) -> None:
        if backend.streams > 1:
            backend.infer_many([x] * backend.streams)
        else:
            backend.infer(x)

    timings: list[list[float]] = [[] for _ in backends]
    for backend in backends:
        for _ in range(PROBE_WARMUP):
            call(backend)
    for _ in range(PROBE_BLOCKS):
        for backend, seconds in zip(backends, timings, strict=True):
            time.sleep(PROBE_PAUSE)
            for _ in range(PROBE_CALLS):
                start = time.perf_counter()
                call(backend)
                seconds.append(time.perf_counter() - start)
    return [statistics.median(seconds) for seconds in timings]
