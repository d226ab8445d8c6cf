"""resnet-deploy: ResNets from definition to validated ONNX and NVIDIA engines.

Importing the package is cheap: torch, onnx and TensorRT load only when the names that need them
are first used (``resnet_deploy.build_model`` imports torch then).
"""

from __future__ import annotations

import importlib
from typing import Any

from resnet_deploy.errors import ResnetDeployError

__version__ = "0.1.0"

_LAZY = {
    "build_model": "resnet_deploy.models",
    "get_model": "resnet_deploy.models",
    "summarize": "resnet_deploy.models",
    "ResNet": "resnet_deploy.models",
    "ResNetConfig": "resnet_deploy.artifacts.model_spec",
    "model_config": "resnet_deploy.artifacts.model_spec",
    "load_checkpoint": "resnet_deploy.models.checkpoint",
    "save_checkpoint": "resnet_deploy.models.checkpoint",
    "export_onnx": "resnet_deploy.convert.export",
    "verify_onnx": "resnet_deploy.convert.verify",
    "read_onnx_metadata": "resnet_deploy.artifacts.onnx_io",
}

__all__ = ["ResnetDeployError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resnet_deploy' has no attribute {name!r}")
