"""Build options as the user gives them, parsed and checked before any work starts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from resnet_deploy.errors import ResnetDeployError

PRECISIONS = ("fp32", "fp16", "int8", "best")
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")  # TensorRT-RTX 1.x targets
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


class BuildOptionError(ResnetDeployError):
    pass


@dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


@dataclass
class BuildOptions:
    precision: str = "fp32"
    batch: BatchProfile | None = None  # None: the model's static batch, or 1:8:32 for a dynamic one
    workspace_mib: int | None = None
    timing_cache: str | None = None
    builder_opt_level: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    version_compatible: bool = False
    hardware_compat: str = "none"
    target_cc: tuple[str, ...] = ()  # TensorRT-RTX compute capabilities, e.g. ("8.6", "8.9")
    implicit: bool = False  # TensorRT <= 10 implicit INT8 from a calibration cache
    calib_cache: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch"] = str(self.batch) if self.batch else None
        return out


DEFAULT_DYNAMIC_BATCH = BatchProfile(1, 8, 32)


def parse_batch(text: str) -> BatchProfile:
    """``8`` (static) or ``min:opt:max``."""
    parts = text.split(":")
    if len(parts) not in (1, 3) or not all(p.strip().isdigit() for p in parts):
        raise BuildOptionError(f"--batch {text!r} is not N or MIN:OPT:MAX (e.g. 8 or 1:8:32)")
    values = [int(p) for p in parts]
    low, opt, high = (values * 3) if len(values) == 1 else values
    if low < 1:
        raise BuildOptionError(f"--batch {text}: batch sizes start at 1")
    if not low <= opt <= high:
        raise BuildOptionError(f"--batch {text}: need min <= opt <= max")
    return BatchProfile(low, opt, high)


def resolve_batch(requested: BatchProfile | None, onnx_batch: int) -> BatchProfile:
    """The profile to build: checked against a static batch dimension of the ONNX (<= 0: dynamic)."""
    if onnx_batch > 0:
        if requested is None:
            return BatchProfile(onnx_batch, onnx_batch, onnx_batch)
        if (requested.min, requested.max) != (onnx_batch, onnx_batch):
            raise BuildOptionError(
                f"the ONNX has a static batch of {onnx_batch}, so --batch {requested} cannot be built; "
                f"omit --batch or re-export with a dynamic batch (export without --static-batch)"
            )
        return requested
    return requested or DEFAULT_DYNAMIC_BATCH


def parse_target_cc(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    wanted = []
    for piece in text.split(","):
        cc = piece.strip().lower().removeprefix("sm")
        if re.fullmatch(r"\d{2,3}", cc):
            cc = f"{cc[:-1]}.{cc[-1]}"
        if cc not in RTX_COMPUTE_CAPABILITIES:
            raise BuildOptionError(
                f"--target-cc {piece.strip()!r} is not a TensorRT-RTX target; choose from "
                f"{', '.join(RTX_COMPUTE_CAPABILITIES)}"
            )
        if cc not in wanted:
            wanted.append(cc)
    return tuple(wanted)


def check_combination(options: BuildOptions, backend_name: str) -> None:
    """Options that only one backend (or one TensorRT generation) understands."""
    rtx = backend_name == "tensorrt-rtx"
    if options.precision not in PRECISIONS:
        raise BuildOptionError(f"unknown precision {options.precision!r}")
    if rtx and options.dla_core is not None:
        raise BuildOptionError("--dla-core needs TensorRT on a Jetson; TensorRT-RTX has no DLA")
    if rtx and options.version_compatible:
        raise BuildOptionError(
            "--version-compatible needs full TensorRT (engines for its lean runtime); TensorRT-RTX has no lean "
            "runtime: rebuild the engine for each TensorRT-RTX version instead"
        )
    if options.gpu_fallback and options.dla_core is None:
        raise BuildOptionError("--gpu-fallback only applies with --dla-core N")
    if options.target_cc and not rtx:
        raise BuildOptionError(
            "--target-cc is for TensorRT-RTX; TensorRT builds for the GPU it runs on "
            "(use --hardware-compat ampere+ for other Ampere+ GPUs)"
        )
    if options.implicit and options.precision != "int8":
        raise BuildOptionError("--implicit goes with --int8 (implicit INT8 from a calibration cache)")
    if options.implicit and not options.calib_cache:
        raise BuildOptionError("--implicit needs --calib-cache FILE (written by `resnet-deploy calibrate`)")
    if options.calib_cache and not options.implicit:
        raise BuildOptionError("--calib-cache is for --implicit builds; explicit INT8 reads the scales from the ONNX")
    if options.hardware_compat not in HARDWARE_COMPAT:
        raise BuildOptionError(f"--hardware-compat {options.hardware_compat!r}: choose {', '.join(HARDWARE_COMPAT)}")
    if options.builder_opt_level is not None and not 0 <= options.builder_opt_level <= 5:
        raise BuildOptionError(f"--builder-opt-level must be 0..5, got {options.builder_opt_level}")
    if options.workspace_mib is not None and options.workspace_mib < 1:
        raise BuildOptionError(f"--workspace must be at least 1 MiB, got {options.workspace_mib}")
