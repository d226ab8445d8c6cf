"""ONNX Runtime: FP32, FP16 and INT8 Q/DQ ONNX files, on TensorRT, CUDA or the CPU, as ORT has them.

Providers asked for by name must be installed (``onnxruntime.get_available_providers()``) and must
be the ones the session ends up with: ONNX Runtime's own habit of falling back to the CPU with a
warning would otherwise let a "GPU" benchmark run on the CPU. Without ``providers`` the best ones
available are used, the CPU included, and a fallback is not an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resnet_deploy.errors import RunnerError
from resnet_deploy.onnx_io import check_graph_matches_metadata
from resnet_deploy.runtime.base import Backend, one_line


def default_providers() -> list[str]:
    import onnxruntime as ort

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
    import onnxruntime as ort

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
    kind = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[Any] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise RunnerError(f"ONNX file {path} not found")
        requested = check_providers(providers) if providers else []
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise RunnerError(f"threads must be a whole number of at least 1, got {threads!r}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or default_providers())
        except Exception as exc:  # ORT raises its own exception types for foreign or broken files
            raise RunnerError(f"ONNX Runtime cannot load {path} ({one_line(exc)})") from None
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
        super().__init__(path, metadata, props.get("precision", "fp32"))
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        batch = first.shape[0] if first.shape else None
        self.static_batch = batch if isinstance(batch, int) and batch > 0 else None  # exported --static-batch

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        size = self.static_batch
        if size is None or len(batch) == size:
            return self._run(batch)
        # a graph of fixed batch: run it in chunks of that size, the last one zero-padded, as engines do
        outputs = []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            rows = len(chunk)
            if rows < size:
                chunk = np.concatenate([chunk, np.zeros((size - rows, *chunk.shape[1:]), chunk.dtype)])
            outputs.append(self._run(chunk)[:rows])
        return np.concatenate(outputs)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self.input_name: batch})
        return np.asarray(logits, dtype=np.float32)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "providers": self.providers}
