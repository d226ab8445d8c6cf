"""The JSON written beside every engine (``model.engine.json``): what it is, for what, from what.

The runner reads it before deserialising to refuse an engine built for another GPU or TensorRT
version with the command that rebuilds it; people read it to know what they deploy.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

FORMAT = "resnet-deploy-engine/1"


def sidecar_path(engine_path: str | Path) -> Path:
    return Path(f"{engine_path}.json")


def describe_build_gpu() -> dict[str, Any]:
    """The GPU a full-TensorRT engine is built on (and therefore for), as the runner will see it:
    through cuda-python or pycuda (``cuda_memory``), else torch; "unknown" when none can tell."""
    from resnet_deploy.errors import ResnetDeployError
    from resnet_deploy.runtime.cuda_memory import open_cuda

    try:
        cuda = open_cuda()
    except ResnetDeployError:
        pass
    else:
        try:
            name, capability = cuda.device_properties()
            return {"gpu": name, "compute_capability": capability}
        finally:
            cuda.close()
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except Exception:
        pass
    return {"gpu": "unknown", "compute_capability": None}


def sidecar(**fields: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        **fields,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "built_on": f"{platform.node()} ({platform.machine()}, {platform.system()})",
    }


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    from resnet_deploy.errors import ResnetDeployError

    path = sidecar_path(engine_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResnetDeployError(
            f"{path} not found: engines built by `resnet-deploy build-engine` carry it; rebuild the engine"
        ) from None
    except (OSError, ValueError) as exc:
        raise ResnetDeployError(f"{path} is not readable JSON ({exc}); rebuild the engine") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResnetDeployError(f"{path} is not a resnet-deploy engine sidecar; rebuild the engine")
    return data
