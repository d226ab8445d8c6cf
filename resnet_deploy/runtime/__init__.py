"""Backends that run a deployed artifact: one interface over ONNX Runtime, PyTorch and (with the
engine issue) TensorRT. Importing this package needs numpy only; each backend imports its own
runtime when opened, so an edge device carries just the one it uses."""

from resnet_deploy.runtime.base import Backend
from resnet_deploy.runtime.load import open_backend

__all__ = ["Backend", "open_backend"]
