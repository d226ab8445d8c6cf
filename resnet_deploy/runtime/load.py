"""Open any artifact by its file type."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._lazy import lazy_module
from resnet_deploy.errors import ArtifactError
from resnet_deploy.runtime.base import Backend

if TYPE_CHECKING:
    from resnet_deploy.runtime import onnx_backend, onnx_choice, openvino_backend, tensorrt_backend, torch_backend
else:
    onnx_backend, onnx_choice, openvino_backend, tensorrt_backend, torch_backend = map(
        lazy_module,
        (
            "resnet_deploy.runtime.onnx_backend",
            "resnet_deploy.runtime.onnx_choice",
            "resnet_deploy.runtime.openvino_backend",
            "resnet_deploy.runtime.tensorrt_backend",
            "resnet_deploy.runtime.torch_backend",
        ),
    )

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_BACKENDS = ("auto", "onnxruntime", "openvino")  # what runs an ONNX file ("auto": the faster here)
BACKENDS = (*ONNX_BACKENDS, "pytorch", "tensorrt")


def open_backend(path: str | Path, backend: str = "auto", **options: Any) -> Backend:
    """Open ``path`` by its suffix. ONNX files run on ``backend``: "onnxruntime", "openvino" or "auto"
    (the faster here, see ``onnx_choice``); other files on the one runtime of their kind, which
    ``backend`` may name. ``options`` go to the runtime: ``providers``, ``threads`` and ``streams`` for
    ONNX Runtime; ``threads``, ``streams`` and ``inference_precision`` for OpenVINO; ``device`` and
    ``threads`` for PyTorch; ``cuda_graph`` for TensorRT."""
    if not isinstance(path, (str, os.PathLike)):
        raise ArtifactError(f"an artifact path is a str or pathlib.Path, not {type(path).__name__} ({path!r})")
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ArtifactError(f"artifact {path} not found")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ArtifactError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    runtime: Any
    takes: list[type[Backend]]
    if suffix in ONNX_SUFFIXES:
        kinds: tuple[str, ...] = ("auto", onnx_backend.OnnxRuntimeBackend.kind, openvino_backend.OpenVinoBackend.kind)
        runtime, takes = onnx_choice.open_onnx, [onnx_backend.OnnxRuntimeBackend, openvino_backend.OpenVinoBackend]
    elif suffix in TORCH_SUFFIXES:
        runtime = torch_backend.TorchBackend
        kinds, takes = ("auto", runtime.kind), [runtime]
    elif suffix in ENGINE_SUFFIXES:
        kinds, runtime, takes = (
            ("auto", "tensorrt"),
            tensorrt_backend.TensorRTBackend,
            [tensorrt_backend.TensorRTBackend],
        )
    else:
        raise ArtifactError(
            f"cannot tell what {path} is from its suffix {suffix or '(none)'}; expected .onnx, .pt/.pth or .engine"
        )
    if backend not in kinds:
        raise ArtifactError(
            f"backend {backend} does not run {path.name}; {suffix} files run on {', '.join(kinds[1:])}"
            + (" (or auto)" if len(kinds) > 2 else "")
        )
    accepted = set().union(*(_options_of(kind) for kind in takes))
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ArtifactError(
            f"option {', '.join(unknown)} does not apply to {' or '.join(kinds[1:])} artifacts like {path.name}; "
            f"it takes {', '.join(sorted(accepted)) or 'no options'}"
        )
    if suffix in ONNX_SUFFIXES:
        return runtime(path, backend=backend, **options)  # type: ignore[no-any-return]
    return runtime(path, **options)  # type: ignore[no-any-return]


def _options_of(backend: type[Backend]) -> set[str]:
    """The options a backend's constructor takes (its own, leading "_", are not options)."""
    parameters = inspect.signature(backend.__init__).parameters
    return {name for name in parameters if name not in ("self", "path") and not name.startswith("_")}
