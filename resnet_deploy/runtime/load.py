"""Open any artifact by its file type."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from resnet_deploy.errors import ArtifactError
from resnet_deploy.runtime.base import Backend

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_backend(path: str | Path, **options: Any) -> Backend:
    """Open ``path`` by its suffix. ``options`` go to the backend's constructor: ``providers`` and
    ``threads`` for ONNX Runtime, ``device`` and ``threads`` for PyTorch, ``cuda_graph`` for TensorRT."""
    if not isinstance(path, (str, os.PathLike)):
        raise ArtifactError(f"an artifact path is a str or pathlib.Path, not {type(path).__name__} ({path!r})")
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ArtifactError(f"artifact {path} not found")
    backend: type[Backend]
    if suffix in ONNX_SUFFIXES:
        from resnet_deploy.runtime.onnx_backend import OnnxRuntimeBackend as backend
    elif suffix in TORCH_SUFFIXES:
        from resnet_deploy.runtime.torch_backend import TorchBackend as backend
    elif suffix in ENGINE_SUFFIXES:
        from resnet_deploy.runtime.tensorrt_backend import TensorRTBackend as backend
    else:
        raise ArtifactError(
            f"cannot tell what {path} is from its suffix {suffix or '(none)'}; expected .onnx, .pt/.pth or .engine"
        )
    parameters = inspect.signature(backend.__init__).parameters
    accepted = set(parameters) - {"self", "path"}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(options) - accepted) if not takes_any else []
    if unknown:
        raise ArtifactError(
            f"option {', '.join(unknown)} does not apply to {backend.kind} artifacts like {path.name}; "
            f"it takes {', '.join(sorted(accepted)) or 'no options'}"
        )
    return backend(path, **options)
