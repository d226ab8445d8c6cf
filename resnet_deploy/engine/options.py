"""Build options as the user gives them, parsed and checked before any work starts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resnet_deploy.errors import BuildOptionError
from resnet_deploy.runtime import machine
from resnet_deploy.trt.flavours import EngineBackend

PRECISIONS = ("fp32", "fp16", "int8", "best")
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")  # TensorRT-RTX 1.x targets
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


@dataclass(frozen=True)
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

    def cli_args(self) -> list[str]:
        """These options as ``build-engine`` flags: every one that shapes the engine."""
        args = [] if self.precision == "fp32" else [f"--{self.precision}"]
        valued = {
            "--batch": self.batch,
            "--workspace": self.workspace_mib,
            "--builder-opt-level": self.builder_opt_level,
            "--dla-core": self.dla_core,
            "--target-cc": ",".join(self.target_cc) or None,
            "--calib-cache": self.calib_cache,
            "--timing-cache": self.timing_cache,
        }
        switches = {
            "--implicit": self.implicit,
            "--gpu-fallback": self.gpu_fallback,
            "--version-compatible": self.version_compatible,
        }
        for flag, value in valued.items():
            if value is not None:
                args += [flag, str(value)]
        args += [flag for flag, on in switches.items() if on]
        if self.hardware_compat != "none":
            args += ["--hardware-compat", self.hardware_compat]
        return args


DEFAULT_DYNAMIC_BATCH = BatchProfile(1, 8, 32)


def parse_batch(text: str) -> BatchProfile:
    """``8`` (static) or ``min:opt:max``."""
    parts = text.split(":")
    if len(parts) not in (1, 3) or not all(p.strip().isdigit() for p in parts):
        raise BuildOptionError(f"`batch={text!r}` is not N or MIN:OPT:MAX (e.g. 8 or 1:8:32)", field="batch")
    values = [int(p) for p in parts]
    low, opt, high = (values * 3) if len(values) == 1 else values
    if low < 1:
        raise BuildOptionError(f"`batch={text}`: batch sizes start at 1", field="batch")
    if not low <= opt <= high:
        raise BuildOptionError(f"`batch={text}`: need min <= opt <= max", field="batch")
    return BatchProfile(low, opt, high)


def resolve_batch(requested: BatchProfile | None, onnx_batch: int, *, static: bool = False) -> BatchProfile:
    """The profile to build: checked against a static batch dimension of the ONNX (<= 0: dynamic).

    ``static``: one batch size only (DLA has no dynamic shapes); a dynamic ONNX then gets the
    default profile's opt value unless ``requested`` names one.
    """
    if onnx_batch > 0:
        if requested is None:
            return BatchProfile(onnx_batch, onnx_batch, onnx_batch)
        if (requested.min, requested.max) != (onnx_batch, onnx_batch):
            raise BuildOptionError(
                f"the ONNX has a static batch of {onnx_batch}, so `batch={requested}` cannot be built; "
                f"omit `batch` or re-export with a dynamic batch (export without `static_batch`)",
                field="batch",
            )
        return requested
    if static and requested is None:
        opt = DEFAULT_DYNAMIC_BATCH.opt
        return BatchProfile(opt, opt, opt)
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
                f"`target_cc` {piece.strip()!r} is not a TensorRT-RTX target; choose from "
                f"{', '.join(RTX_COMPUTE_CAPABILITIES)}",
                field="target_cc",
            )
        if cc not in wanted:
            wanted.append(cc)
    return tuple(wanted)


def check_combination(options: BuildOptions, backend: EngineBackend) -> None:
    """Refuse, before any export or calibration, what this backend (or TensorRT release) cannot build."""
    _check_pairs(options, backend)
    if options.dla_core is not None:
        _check_dla(options, backend)
    _check_release(options, backend)
    _check_limits(options)
    if options.implicit and options.calib_cache:
        from resnet_deploy.engine.implicit_int8 import read_cache  # inside: it imports this module (a cycle)

        read_cache(Path(options.calib_cache), dla=options.dla_core is not None)
    _check_targets(options, backend)


def _check_pairs(options: BuildOptions, backend: EngineBackend) -> None:
    """Options that need, or exclude, another one."""
    if options.precision not in PRECISIONS:
        raise BuildOptionError(f"unknown precision {options.precision!r}", field="precision")
    if options.gpu_fallback and options.dla_core is None:
        raise BuildOptionError("`gpu_fallback` only applies with `dla_core=N`", field="gpu_fallback")
    if options.target_cc and not backend.is_rtx:
        raise BuildOptionError(
            "`target_cc` is for TensorRT-RTX; TensorRT builds for the GPU it runs on "
            "(use `hardware_compat=ampere+` for other Ampere+ GPUs)",
            field="target_cc",
        )
    if options.implicit and options.precision != "int8":
        raise BuildOptionError(
            "`implicit` goes with `precision=int8` (implicit INT8 from a calibration cache)", field="implicit"
        )
    if options.implicit and not options.calib_cache:
        raise BuildOptionError(
            "`implicit` needs `calib_cache=FILE` (written by `resnet-deploy calibrate`)", field="implicit"
        )
    if options.calib_cache and not options.implicit:
        raise BuildOptionError(
            "`calib_cache` is for `implicit` builds; explicit INT8 reads the scales from the ONNX", field="calib_cache"
        )


def _check_release(options: BuildOptions, backend: EngineBackend) -> None:
    """What this TensorRT release (or TensorRT-RTX) has: calibrators, hardware compatibility, a lean runtime."""
    release = backend.describe()
    if options.implicit and not backend.has_calibrators:
        raise BuildOptionError(
            f"`implicit` needs TensorRT 8.6-10.x (implicit INT8 calibrators); this is {release}, which builds "
            "explicit INT8 only: drop `implicit` (`precision=int8` builds from the Q/DQ ONNX)",
            field="implicit",
        )
    if options.hardware_compat not in HARDWARE_COMPAT:
        raise BuildOptionError(
            f"`hardware_compat={options.hardware_compat!r}`: choose {', '.join(HARDWARE_COMPAT)}",
            field="hardware_compat",
        )
    level = HARDWARE_COMPAT[options.hardware_compat]
    if options.hardware_compat != "none" and not backend.has_hardware_compat(level):
        since = "TensorRT >= 10.9" if options.hardware_compat == "same-cc" else "TensorRT >= 8.6"
        raise BuildOptionError(
            f"`hardware_compat={options.hardware_compat}` needs {since}; this is {release}", field="hardware_compat"
        )
    if options.version_compatible and backend.is_rtx:
        raise BuildOptionError(
            "`version_compatible` needs full TensorRT (engines for its lean runtime); TensorRT-RTX has no lean "
            "runtime: rebuild the engine for each TensorRT-RTX version instead",
            field="version_compatible",
        )


def _check_limits(options: BuildOptions) -> None:
    if options.builder_opt_level is not None and not 0 <= options.builder_opt_level <= 5:
        raise BuildOptionError(
            f"`builder_opt_level` must be 0..5, got {options.builder_opt_level}", field="builder_opt_level"
        )
    if options.workspace_mib is not None and options.workspace_mib < 1:
        raise BuildOptionError(
            f"`workspace_mib` must be at least 1 MiB, got {options.workspace_mib}", field="workspace_mib"
        )


def _check_targets(options: BuildOptions, backend: EngineBackend) -> None:
    """The GPUs the engine is for: named (TensorRT-RTX ahead of time), or the one present (TensorRT)."""
    rtx, release = backend.is_rtx, backend.describe()
    if rtx and "7.5" in options.target_cc and options.precision != "fp16" and backend.version_tuple[:2] <= (1, 7):
        raise BuildOptionError(
            f"`target_cc=7.5` with {options.precision}: {release} cannot compile FP32 matrix multiplies for Turing "
            "(the classifier's Gemm); build `precision=fp16` for 7.5, or leave 7.5 out of `target_cc`",
            field="target_cc",
        )
    if rtx and not options.target_cc and not machine.gpu_present():
        raise BuildOptionError(
            "no NVIDIA GPU here to build for; name the target GPUs with `target_cc` "
            "(e.g. `target_cc=8.6,8.9` for RTX 30xx and 40xx)",
            field="target_cc",
        )
    if not rtx and not machine.gpu_present():
        raise BuildOptionError(
            f"{release} builds for the GPU it runs on, and this machine has none; build on the target GPU "
            '(or with TensorRT-RTX ahead of time: pip install "resnet-deploy[rtx]", `target_cc`)',
            field="target_cc",
        )


def _check_dla(options: BuildOptions, backend: EngineBackend) -> None:
    """DLA: FP16, or INT8 from a calibration cache (implicit), one static batch, TensorRT 8.6-10.7."""
    if backend.is_rtx:
        raise BuildOptionError("`dla_core` needs TensorRT on a Jetson; TensorRT-RTX has no DLA", field="dla_core")
    if not backend.has_dla:
        raise BuildOptionError(
            f"`dla_core` needs TensorRT 8.6-10.7 (JetPack 5/6); this is {backend.describe()}, and "
            "TensorRT 10.8-11.3 have no DLA: build without `dla_core` for the GPU",
            field="dla_core",
        )
    if options.precision == "fp32":
        raise BuildOptionError(
            "`dla_core` runs FP16 or INT8 only: add `precision=fp16`, or `precision=int8` `implicit` "
            "`calib_cache=FILE`",
            field="dla_core",
        )
    if options.precision in ("int8", "best") and not options.implicit:
        raise BuildOptionError(
            "`dla_core` runs INT8 from a calibration cache only (DLA has no explicit Q/DQ quantization): "
            "use `precision=int8` `implicit` `calib_cache=FILE` (from `resnet-deploy calibrate`), or `precision=fp16`",
            field="dla_core",
        )
    if options.batch is not None and options.batch.min != options.batch.max:
        raise BuildOptionError(
            f"`dla_core` needs one static batch (DLA has no dynamic shapes), not `batch={options.batch}`: "
            "give `batch=N`",
            field="dla_core",
        )
