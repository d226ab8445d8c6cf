"""The backend interface: normalised NCHW float32 batch in, float32 logits out."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import ResnetDeployError, RunnerError


class Backend(ABC):
    """An opened artifact. Use as a context manager, or call ``close()``."""

    kind: str = "backend"  # "onnxruntime", "openvino", "pytorch", "tensorrt"
    streams: int = 1  # requests ``infer_many`` runs at once

    def __init__(self, path: str | Path, metadata: ArtifactMetadata, precision: str = "fp32") -> None:
        self.path = Path(path)
        self.metadata = metadata
        self.precision = precision
        self._closed = False
        self.chosen_because = ""  # why this runtime runs the artifact, when it was chosen (backend="auto")
        self.notes: list[str] = []  # what its user should be told: a runtime that could not be used, and why

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One sample's shape: (C, S, S), or a frame's (H, W, 3) when the preprocessing is inside the graph."""
        cfg = self.metadata.config
        if self.metadata.frame_input is not None:
            return self.metadata.frame_input.shape
        return (cfg.in_chans, cfg.input_size, cfg.input_size)

    @property
    def input_dtype(self) -> Any:
        """float32 (normalised NCHW), or the frames' type (uint8, or float32 pixel values) when the preprocessing
        is inside the graph."""
        frame = self.metadata.frame_input
        return frame.numpy_dtype if frame is not None else np.dtype(np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, num_classes) float32 for a normalised (N, C, H, W) float32 batch."""
        self._check_open()
        batch = self._checked_input(batch)
        if len(batch) == 0:  # nothing to run: no logits, from every backend alike
            return np.zeros((0, self.metadata.config.num_classes), np.float32)
        with self._runtime_errors(tuple(batch.shape)):
            logits = self._infer(batch)
        return self._checked_logits(logits, len(batch))

    def infer_many(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Logits of each batch, in order. A backend opened with ``streams`` > 1 runs that many at once
        (throughput mode); the others run them one after another."""
        self._check_open()
        checked = [self._checked_input(batch) for batch in batches]
        runnable = [batch for batch in checked if len(batch)]
        if not runnable:
            return [self.infer(batch) for batch in checked]
        with self._runtime_errors(tuple(runnable[0].shape)):
            outputs = iter(self._infer_many(runnable))
        empty = np.zeros((0, self.metadata.config.num_classes), np.float32)
        return [self._checked_logits(next(outputs), len(batch)) if len(batch) else empty for batch in checked]

    def _infer_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        return [self._infer(batch) for batch in batches]

    def _checked_input(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        dtype = self.input_dtype
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise RunnerError(
                f"{self.path.name} expects input (N, {', '.join(map(str, self.input_shape))}) {dtype}, "
                f"got {tuple(batch.shape)} {batch.dtype}"
            )
        if batch.dtype != dtype:
            hint = (
                " (raw frames: its preprocessing is inside the graph; use runner.preprocess)"
                if self.metadata.frame_input is not None
                else ""
            )
            raise RunnerError(f"{self.path.name} expects {dtype} input{hint}, got {batch.dtype}")
        return np.ascontiguousarray(batch)

    def _checked_logits(self, logits: np.ndarray, rows: int) -> np.ndarray:
        classes = self.metadata.config.num_classes
        if logits.shape != (rows, classes):
            raise RunnerError(
                f"{self.path.name} returned logits of shape {tuple(logits.shape)} for a batch of {rows}, "
                f"but its metadata promises ({rows}, {classes}): the graph and its metadata disagree; "
                "re-export it with `resnet-deploy export`"
            )
        return logits

    @contextmanager
    def _runtime_errors(self, shape: tuple[int, ...]) -> Iterator[None]:
        """What torch, ONNX Runtime or TensorRT raise while running, as this project's one-line error."""
        try:
            yield
        except ResnetDeployError:
            raise
        except MemoryError:
            raise RunnerError(
                f"out of memory running {self.path.name} on a batch of {shape[0]}; pass smaller batches"
            ) from None
        except Exception as exc:
            raise RunnerError(
                f"{self.kind} failed to run {self.path.name} on a batch of shape {shape} ({one_line(exc)}); "
                "if the artifact came from resnet-deploy, re-export or rebuild it"
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise RunnerError(f"{self.path} was closed; open it again to run it")

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    timer: str = "perf_counter"  # how timed_infer measures: "perf_counter", or "cuda-events" on a GPU

    def timed_infer(self, batch: np.ndarray) -> float:
        """Seconds one ``infer`` of ``batch`` takes (for ``bench``); GPU backends time with CUDA events."""

        start = time.perf_counter()
        self.infer(batch)
        return time.perf_counter() - start

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"path": str(self.path), "backend": self.kind, "precision": self.precision}
        if self.streams > 1:
            described["streams"] = self.streams
        if self.chosen_because:
            described["chosen_because"] = self.chosen_because
        if self.notes:
            described["notes"] = list(self.notes)
        return described


def check_threads(threads: Any) -> None:
    """``threads``: None (the runtime's default) or a whole number of at least 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise RunnerError(f"threads must be a whole number of at least 1, got {threads!r}")


def check_streams(streams: Any) -> int:
    """``streams``: a whole number of at least 1 (requests run at once by ``infer_many``)."""
    if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1:
        raise RunnerError(f"streams must be a whole number of at least 1, got {streams!r}")
    return streams


def check_threads_and_streams(threads: Any, streams: Any) -> int:
    """``threads`` and ``streams`` as a CPU backend takes them; the number of streams."""
    check_threads(threads)
    check_threads_for_streams(threads, check_streams(streams))
    return int(streams)


def check_threads_for_streams(threads: int | None, streams: int) -> None:
    """Each stream runs on threads of its own: fewer threads than streams is refused, not quietly served."""
    if threads is not None and threads < streams:
        raise RunnerError(
            f"{streams} streams need at least {streams} threads (one each), got `threads={threads}`: ask for "
            f"`streams={threads}` or `threads={streams}`"
        )


def run_in_chunks(batch: np.ndarray, size: int | None, run: Any) -> np.ndarray:
    """``run`` over ``batch`` for a graph of fixed batch ``size`` (None: any): in chunks of that size, the
    last one zero-padded and its padding sliced off, as engines do."""
    if size is None or len(batch) == size:
        return np.asarray(run(batch))
    outputs = []
    for start in range(0, len(batch), size):
        chunk = batch[start : start + size]
        rows = len(chunk)
        if rows < size:
            chunk = np.concatenate([chunk, np.zeros((size - rows, *chunk.shape[1:]), chunk.dtype)])
        outputs.append(np.asarray(run(chunk))[:rows])
    return np.concatenate(outputs)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (ONNX Runtime's span several), at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def random_batch(backend: Any, rows: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of ``rows`` random inputs of the shape and type ``backend`` takes (timing, warm-up): normal
    noise, or random pixel values (0 to 255) for a model with its preprocessing inside."""
    shape = (rows, *backend.input_shape)
    if getattr(getattr(backend, "metadata", None), "frame_input", None) is not None or backend.input_dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8).astype(backend.input_dtype)
    return rng.standard_normal(shape).astype(np.float32)
