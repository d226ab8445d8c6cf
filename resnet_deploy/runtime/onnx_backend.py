"""ONNX Runtime: FP32, FP16 and INT8 Q/DQ ONNX files, on TensorRT, CUDA or the CPU, as ORT has them.

Providers asked for by name must be installed (``onnxruntime.get_available_providers()``) and must
be the ones the session ends up with: ONNX Runtime's own habit of falling back to the CPU with a
warning would otherwise let a "GPU" benchmark run on the CPU. Without ``providers`` the best ones
available are used, the CPU included, and a fallback is not an error.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.lineage import GraphLineage
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata
from resnet_deploy.errors import RunnerError
from resnet_deploy.runtime.base import Backend, check_threads_and_streams, one_line, run_in_chunks

if TYPE_CHECKING:
    import onnxruntime as ort
else:
    ort = lazy_import("onnxruntime", extra="onnxruntime")


def default_providers() -> list[str]:

    available = ort.get_available_providers()
    preferred = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    return [p for p in preferred if p in available]


def provider_name(provider: Any) -> str:
    """``"CUDAExecutionProvider"`` of a provider as ONNX Runtime takes it: a name, or (name, options)."""
    if isinstance(provider, (tuple, list)) and len(provider) == 2 and isinstance(provider[1], dict):
        provider = provider[0]
    if not isinstance(provider, str):
        raise RunnerError(
            f"ONNX Runtime provider {provider!r} is neither a name nor a (name, options) pair; "
            "pass e.g. providers=['CUDAExecutionProvider', 'CPUExecutionProvider']"
        )
    return provider


def check_providers(providers: Any) -> list[str]:
    """The names of ``providers``, each one this onnxruntime has; else one line listing those it has."""

    if isinstance(providers, str):
        raise RunnerError(f"providers is a list of names; pass providers=[{providers!r}]")
    names = [provider_name(p) for p in providers]
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise RunnerError(
            f"ONNX Runtime provider {', '.join(missing)} is not available in this onnxruntime {ort.__version__} "
            f"(it has {', '.join(available)}); pick one of those, or install the onnxruntime package that has it "
            "(onnxruntime-gpu for CUDA and TensorRT)"
        )
    return names


class OnnxRuntimeBackend(Backend):
    """``streams`` > 1 opens that many sessions, the threads split between them, and ``infer_many`` runs
    one batch on each at once (ONNX Runtime's inter-op threads only help graphs with parallel branches,
    which a ResNet has not)."""

    kind = "onnxruntime"

    def __init__(
        self, path: str | Path, providers: list[Any] | None = None, threads: int | None = None, streams: int = 1
    ) -> None:

        path = Path(path)
        if not path.is_file():
            raise RunnerError(f"ONNX file {path} not found")
        requested = check_providers(providers) if providers else []
        self.streams = check_threads_and_streams(threads, streams)
        options = ort.SessionOptions()
        if self.streams > 1:
            options.intra_op_num_threads = max(1, (threads or os.cpu_count() or 1) // self.streams)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # streams share the cores
        elif threads:
            options.intra_op_num_threads = threads
        try:
            self.sessions = [
                ort.InferenceSession(str(path), options, providers=providers or default_providers())
                for _ in range(self.streams)
            ]
        except Exception as exc:  # ORT raises its own exception types for foreign or broken files
            raise RunnerError(f"ONNX Runtime cannot load {path} ({one_line(exc)})") from None
        self.session = self.sessions[0]
        self.providers = self.session.get_providers()
        lost = [n for n in requested if n not in self.providers]
        if lost:
            raise RunnerError(
                f"ONNX Runtime could not use {', '.join(lost)} for {path.name} and fell back to "
                f"{', '.join(self.providers)} (its warning above says why: missing CUDA/cuDNN/TensorRT libraries, "
                "or no GPU); fix that, or ask for providers=['CPUExecutionProvider']"
            )
        metadata = check_graph_matches_metadata(self.session, source=str(path))
        props = self.session.get_modelmeta().custom_metadata_map
        super().__init__(path, metadata, GraphLineage.from_props(props, str(path)).precision)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        batch = first.shape[0] if first.shape else None
        self.static_batch = batch if isinstance(batch, int) and batch > 0 else None  # exported --static-batch

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] != "CPUExecutionProvider"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._run_on(self.session, batch)

    def _run_on(self, session: Any, batch: np.ndarray) -> np.ndarray:
        def run(chunk: np.ndarray) -> np.ndarray:
            (logits,) = session.run(None, {self.input_name: chunk})
            return np.asarray(logits, dtype=np.float32)

        return run_in_chunks(batch, self.static_batch, run)

    def _infer_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        if self.streams == 1:
            return super()._infer_many(batches)

        free: queue.SimpleQueue[Any] = queue.SimpleQueue()  # one session per running request
        for session in self.sessions:
            free.put(session)

        def run(batch: np.ndarray) -> np.ndarray:
            session = free.get()
            try:
                return self._run_on(session, batch)  # ONNX Runtime lets go of the GIL while it runs
            finally:
                free.put(session)

        with ThreadPoolExecutor(self.streams) as pool:
            return list(pool.map(run, batches))

    def close(self) -> None:
        self.sessions = []  # their worker threads go with them, and stop competing for the cores
        self.session = None
        super().close()

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "providers": self.providers}
