"""Which TensorRT flavour builds the engine: full TensorRT (data centre, Jetson) or TensorRT-RTX."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from resnet_deploy._lazy import INSTALL_HINTS
from resnet_deploy.errors import MissingDependencyError

BACKENDS = ("tensorrt", "tensorrt-rtx")
MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}


class NoBackendError(MissingDependencyError):
    pass


@dataclass(frozen=True)
class Backend:
    name: str  # "tensorrt" or "tensorrt-rtx"
    module: Any  # the imported tensorrt / tensorrt_rtx module
    version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.version)

    @property
    def is_rtx(self) -> bool:
        return self.name == "tensorrt-rtx"

    @property
    def has_timing_cache(self) -> bool:
        """TensorRT-RTX times no tactics: its timing-cache calls are no-ops (deprecated in 1.2)."""
        return not self.is_rtx

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 dropped the FP16/INT8 builder flags: precision comes from the graph alone."""
        return not hasattr(self.module.BuilderFlag, "INT8")

    @property
    def supports_strongly_typed(self) -> bool:
        return hasattr(self.module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _import(name: str) -> ModuleType | None:
    try:
        module = importlib.import_module(MODULES[name])
    except Exception:  # ImportError, or a broken install failing to load its libraries
        return None
    # tensorrt-stubs installs a bare `tensorrt` namespace of .pyi files: not a TensorRT
    return module if hasattr(module, "Builder") and hasattr(module, "__version__") else None


def installed() -> list[str]:
    return [name for name in BACKENDS if _import(name) is not None]


def choose(name: str | None = None) -> Backend:
    """``name``, or the first installed of full TensorRT, then TensorRT-RTX."""
    if name is not None and name not in BACKENDS:
        raise NoBackendError(f"unknown backend {name!r}; choose {' or '.join(BACKENDS)}")
    for candidate in [name] if name else list(BACKENDS):
        module = _import(candidate)
        if module is not None:
            return Backend(candidate, module, str(module.__version__))
    if name:
        raise NoBackendError(f"--backend {name} is not installed; install {INSTALL_HINTS[MODULES[name]]}")
    raise NoBackendError(
        f"no TensorRT backend is installed; install {INSTALL_HINTS['tensorrt']}; or {INSTALL_HINTS['tensorrt_rtx']}"
    )
