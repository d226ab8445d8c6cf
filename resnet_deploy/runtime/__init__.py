"""Run a deployed artifact: ``Runner`` over TensorRT engines, ONNX Runtime, OpenVINO and PyTorch checkpoints.

Importing this package needs numpy only; each backend imports its own runtime when an artifact of
its kind is opened, so an edge device carries just the one it uses.
"""

from resnet_deploy.runtime.base import Backend
from resnet_deploy.runtime.load import open_backend
from resnet_deploy.runtime.runner import Prediction, Runner

__all__ = ["Backend", "Prediction", "Runner", "open_backend"]
