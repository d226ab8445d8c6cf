"""The backend interface: normalised NCHW float32 batch in, float32 logits out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import ResnetDeployError, RunnerError


class Backend(ABC):
    """An opened artifact. Use as a context manager, or call ``close()``."""

    kind: str = "backend"  # "onnxruntime", "pytorch", "tensorrt"

    def __init__(self, path: str | Path, metadata: ArtifactMetadata, precision: str = "fp32") -> None:
        self.path = Path(path)
        self.metadata = metadata
        self.precision = precision
        self._closed = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        cfg = self.metadata.config
        return (cfg.in_chans, cfg.input_size, cfg.input_size)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, num_classes) float32 for a normalised (N, C, H, W) float32 batch."""
        self._check_open()
        batch = np.asarray(batch)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise RunnerError(
                f"{self.path.name} expects input (N, {', '.join(map(str, self.input_shape))}) float32, "
                f"got {tuple(batch.shape)} {batch.dtype}"
            )
        if batch.dtype != np.float32:
            raise RunnerError(f"{self.path.name} expects float32 input, got {batch.dtype}")
        if len(batch) == 0:  # nothing to run: no logits, from every backend alike
            return np.zeros((0, self.metadata.config.num_classes), np.float32)
        with self._runtime_errors(tuple(batch.shape)):
            logits = self._infer(np.ascontiguousarray(batch))
        classes = self.metadata.config.num_classes
        if logits.shape != (len(batch), classes):
            raise RunnerError(
                f"{self.path.name} returned logits of shape {tuple(logits.shape)} for a batch of {len(batch)}, "
                f"but its metadata promises ({len(batch)}, {classes}): the graph and its metadata disagree; "
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
        import time

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
        return {"path": str(self.path), "backend": self.kind, "precision": self.precision}


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (ONNX Runtime's span several), at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
