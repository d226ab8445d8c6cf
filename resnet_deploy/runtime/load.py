"""Open any artifact by its file type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.runtime.base import Backend

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_backend(path: str | Path, **options: Any) -> Backend:
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ResnetDeployError(f"artifact {path} not found")
    if suffix in ONNX_SUFFIXES:
        from resnet_deploy.runtime.onnx_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)
    if suffix in TORCH_SUFFIXES:
        from resnet_deploy.runtime.torch_backend import TorchBackend

        return TorchBackend(path, **options)
    if suffix in ENGINE_SUFFIXES:
        from resnet_deploy.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, **options)
    raise ResnetDeployError(
        f"cannot tell what {path} is from its suffix {suffix or '(none)'}; expected .onnx, .pt/.pth or .engine"
    )
