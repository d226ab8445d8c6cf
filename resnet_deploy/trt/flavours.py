"""Which TensorRT flavour builds the engine: full TensorRT (data centre, Jetson) or TensorRT-RTX."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from resnet_deploy._lazy import INSTALL_HINTS
from resnet_deploy.errors import NoBackendError

BACKENDS = ("tensorrt", "tensorrt-rtx")
MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}


@dataclass(frozen=True)
class EngineBackend:
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

    @property
    def has_progress_monitor(self) -> bool:
        """TensorRT >= 9 and TensorRT-RTX; 8.6 (JetPack 6.0) has no IProgressMonitor."""
        return hasattr(self.module, "IProgressMonitor") and hasattr(self.module.IBuilderConfig, "progress_monitor")

    @property
    def has_calibrators(self) -> bool:
        """Implicit INT8 from a calibration cache: TensorRT 8.6-10.x (gone in 11 and in TensorRT-RTX)."""
        return not self.strongly_typed_only and hasattr(self.module, "IInt8EntropyCalibrator2")

    @property
    def has_dla(self) -> bool:
        """DLA builds: full TensorRT up to 10.7, the last release with DLA before 11.4 (JetPack 5/6)."""
        return not self.is_rtx and self.version_tuple[:2] <= (10, 7) and hasattr(self.module, "DeviceType")

    def has_hardware_compat(self, level: str) -> bool:
        """``level``: a HardwareCompatibilityLevel name (AMPERE_PLUS from 8.6, SAME_COMPUTE_CAPABILITY from 10.9)."""
        return hasattr(getattr(self.module, "HardwareCompatibilityLevel", None), level)

    def describe(self) -> str:
        return f"{self.name} {self.version}"


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


def choose(name: str | None = None) -> EngineBackend:
    """``name``, or the first installed of full TensorRT, then TensorRT-RTX."""
    if name is not None and name not in BACKENDS:
        raise NoBackendError(f"unknown backend {name!r}; choose {' or '.join(BACKENDS)}")
    for candidate in [name] if name else list(BACKENDS):
        module = _import(candidate)
        if module is not None:
            return EngineBackend(candidate, module, str(module.__version__))
    if name:
        raise NoBackendError(
            f"`backend={name}` is not installed; install {INSTALL_HINTS[MODULES[name]]}", field="backend"
        )
    raise NoBackendError(
        f"no TensorRT backend is installed; install {INSTALL_HINTS['tensorrt']}; or {INSTALL_HINTS['tensorrt_rtx']}"
    )
