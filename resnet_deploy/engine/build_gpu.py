"""The GPU a full-TensorRT engine is built on, and therefore for (recorded in its sidecar)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.engine_sidecar import EngineTargets
from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.runtime.cuda_memory import open_cuda

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch", extra="train")


def describe_build_gpu() -> EngineTargets:
    """The GPU a full-TensorRT engine is built on (and therefore for), as the runner will see it:
    through cuda-python or pycuda (``cuda_memory``), else torch; "unknown" when none can tell."""
    try:
        cuda = open_cuda()
    except ResnetDeployError:
        pass
    else:
        try:
            name, capability = cuda.device_properties()
            return EngineTargets(gpu=name, compute_capability=capability)
        finally:
            cuda.close()
    try:
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return EngineTargets(gpu=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}")
    except Exception:
        pass
    return EngineTargets(gpu="unknown")
