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

from resnet_deploy.errors import ArtifactError
from resnet_deploy.output_plan import json_beside

FORMAT = "resnet-deploy-engine/1"


def sidecar_path(engine_path: str | Path) -> Path:
    return json_beside(engine_path)


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

    path = sidecar_path(engine_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{path} not found: engines built by `resnet-deploy build-engine` carry it; rebuild the engine"
        ) from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not readable JSON ({exc}); rebuild the engine") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a resnet-deploy engine sidecar; rebuild the engine")
    problem = sidecar_problem(data)
    if problem:
        command = data.get("rebuild_command")
        how = f"rebuild it: {command}" if isinstance(command, str) and command else "rebuild the engine"
        raise ArtifactError(f"{path}: {problem}; the sidecar was edited or damaged, {how}")
    return data


# what the runner reads of a sidecar, and the JSON types each may have (None: absent, or null)
_STR, _INT, _BOOL, _DICT, _LIST = "a string", "a whole number", "true or false", "an object", "a list"
FIELDS: dict[str, tuple[str, bool]] = {  # field -> (kind, required)
    "engine_bytes": (_INT, True),
    "engine_sha256": (_STR, True),
    "backend": (_STR, True),
    "backend_version": (_STR, True),
    "precision": (_STR, False),
    "version_compatible": (_BOOL, False),
    "hardware_compat": (_STR, False),
    "rebuild_command": (_STR, False),
    "source_onnx": (_STR, False),
    "targets": (_DICT, False),
    "io": (_DICT, False),
    "model": (_DICT, True),
}
TARGET_FIELDS = {"gpu": _STR, "compute_capability": _STR, "compute_capabilities": _LIST, "dla_core": _INT}


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _BOOL: bool, _DICT: dict, _LIST: list}[kind])


def _shown(value: Any) -> str:
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{kinds.get(type(value), type(value).__name__)} ({json.dumps(value)[:40]})"


def sidecar_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with the types of the fields the runner reads; None when nothing is."""
    for key, (kind, required) in FIELDS.items():
        value = data.get(key)
        if value is None:
            if required:
                return f"field {key!r} is missing"
        elif not _is(value, kind):
            return f"field {key!r} is {_shown(value)} but must be {kind}"
    for key, kind in TARGET_FIELDS.items():
        value = (data.get("targets") or {}).get(key)
        if value is not None and not _is(value, kind):
            return f"field 'targets.{key}' is {_shown(value)} but must be {kind}"
    if not all(isinstance(cc, str) for cc in (data.get("targets") or {}).get("compute_capabilities") or []):
        return "field 'targets.compute_capabilities' must be a list of strings such as \"8.9\""
    model = data["model"]
    bad = next((k for k, v in model.items() if not isinstance(v, str)), None)
    if bad is not None:
        return f"field 'model.{bad}' is {_shown(model[bad])} but must be a string (ONNX metadata values are)"
    for kind in ("inputs", "outputs"):
        tensors = (data.get("io") or {}).get(kind)
        if tensors is not None and not (
            isinstance(tensors, list) and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tensors)
        ):
            return f"field 'io.{kind}' must be a list of objects with a 'name'"
    return None
