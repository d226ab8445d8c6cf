"""``resnet-deploy build-engine``: FP32/FP16/INT8 TensorRT or TensorRT-RTX engine + sidecar JSON (``EngineJob``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.budget_options import budget_from, budget_options
from resnet_deploy.cli.options import (
    apply_options,
    calibration_from,
    calibration_options,
    execute,
    model_options,
    model_spec,
    output_options,
    progress_option,
)
from resnet_deploy.cli.output import Reporter
from resnet_deploy.engine.options import HARDWARE_COMPAT, BuildOptions, parse_batch, parse_target_cc
from resnet_deploy.pipeline import EngineJob

PRECISION_FLAGS = ("fp32", "fp16", "int8", "best")


def engine_options(f: Any) -> Any:
    """What the engine is: its precision, batch profile, builder limits and target hardware."""
    decorators = [
        click.option("--fp16", is_flag=True, help="FP16 (strongly typed: the FP16 ONNX twin)."),
        click.option("--int8", is_flag=True, help="INT8 from the Q/DQ ONNX (calibrated if needed)."),
        click.option("--best", is_flag=True, help="INT8, and FP16 where TensorRT <= 10 may choose it."),
        click.option("--fp32", is_flag=True, help="FP32 (the default)."),
        click.option(
            "--backend", type=click.Choice(["tensorrt", "tensorrt-rtx"]), default=None, help="Default: installed."
        ),
        click.option("--batch", default=None, help="N (static) or MIN:OPT:MAX; default the ONNX's batch, or 1:8:32."),
        click.option("--workspace", "workspace_mib", type=int, default=None, help="Builder workspace limit, MiB."),
        click.option(
            "--timing-cache", type=click.Path(dir_okay=False), default=None, help="Read and update this file."
        ),
        click.option("--builder-opt-level", type=int, default=None, help="0..5 (TensorRT default 3)."),
        click.option("--dla-core", type=int, default=None, help="Build for this DLA core (Jetson, TensorRT only)."),
        click.option("--gpu-fallback", is_flag=True, help="With --dla-core: run unsupported layers on the GPU."),
        click.option(
            "--version-compatible", is_flag=True, help="Engine runs on later TensorRT versions (lean runtime)."
        ),
        click.option(
            "--hardware-compat",
            type=click.Choice(list(HARDWARE_COMPAT)),
            default="none",
            show_default=True,
            help="Engine also runs on other GPUs of this class.",
        ),
        click.option(
            "--target-cc", default=None, help="TensorRT-RTX targets, e.g. 8.6,8.9 (default: the GPU present)."
        ),
        click.option(
            "--implicit", is_flag=True, help="With --int8 on TensorRT 8.6-10.x: implicit INT8 from --calib-cache."
        ),
        click.option(
            "--calib-cache", type=click.Path(dir_okay=False), default=None, help="<id>.calib.cache of calibrate."
        ),
        progress_option,
    ]
    return apply_options(f, decorators)


def build_options_from(options: dict[str, Any]) -> BuildOptions:
    """Pop the engine options out of the command's kwargs, as one :class:`BuildOptions`."""
    chosen = [name for name in PRECISION_FLAGS if options.pop(name)]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one precision, not {' and '.join('--' + p for p in chosen)}")
    batch, target_cc = options.pop("batch"), options.pop("target_cc")
    fields = (
        "workspace_mib",
        "timing_cache",
        "builder_opt_level",
        "dla_core",
        "gpu_fallback",
        "version_compatible",
        "hardware_compat",
        "implicit",
        "calib_cache",
    )
    return BuildOptions(
        precision=chosen[0] if chosen else "fp32",
        batch=parse_batch(batch) if batch else None,
        target_cc=parse_target_cc(target_cc),
        **{name: options.pop(name) for name in fields},
    )


@click.command("build-engine")
@click.option("--onnx", type=click.Path(dir_okay=False), default=None, help="An ONNX from export.")
@click.option(
    "--checkpoint", type=click.Path(dir_okay=False), default=None, help="A checkpoint: exported to ONNX first."
)
@model_options
@engine_options
@calibration_options(
    "Calibration data spec for --int8 (default: the model's dataset); folder:PATH takes unlabelled images."
)
@budget_options
@output_options("Engine file (default: MODEL.engine for FP32, MODEL.<precision>.engine otherwise, beside the ONNX).")
def build_engine_command(onnx: str | None, no_progress: bool, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Build a TensorRT (data centre, Jetson) or TensorRT-RTX (RTX PCs) engine.

    The engine is written atomically with MODEL.engine.json beside it: backend and version, target
    GPUs, profile, I/O tensors, hashes, calibration id, build options. INT8 builds calibrate first
    when given an FP32 model (see `calibrate`); the Q/DQ ONNX is kept beside the engine.

    \b
    Examples:
      resnet-deploy build-engine --onnx resnet20.onnx --int8 --target-cc 8.6,8.9   # TensorRT-RTX, no GPU needed
      resnet-deploy build-engine --depth 50 --fp16 --batch 1:8:32 -o r50.fp16.engine
      resnet-deploy build-engine --onnx r50.onnx --fp16 --dla-core 0 --gpu-fallback   # Jetson DLA, FP16
      resnet-deploy build-engine --onnx r50.onnx --int8 --implicit --calib-cache calibration/<id>.calib.cache \\
          --dla-core 0 --batch 8                                                    # Jetson DLA, INT8
    """
    out = Reporter(as_json, bars=not no_progress)
    job = EngineJob(
        onnx=Path(onnx) if onnx else None,
        model=model_spec(options),
        build=build_options_from(options),
        calibration=calibration_from(options),
        budget=budget_from(options),
        **options,
    )
    result = execute(job, out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
