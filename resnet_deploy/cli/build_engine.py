"""``resnet-deploy build-engine``: FP32/FP16/INT8 TensorRT or TensorRT-RTX engine + sidecar JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.budget_options import budget_from, budget_options
from resnet_deploy.cli.options import json_option, model_options, model_spec, overwrite_option
from resnet_deploy.cli.output import Reporter, human_bytes


@click.command("build-engine")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None, help="An ONNX from export.")
@click.option(
    "--checkpoint", type=click.Path(dir_okay=False), default=None, help="A checkpoint: exported to ONNX first."
)
@model_options
@click.option("--fp16", is_flag=True, help="FP16 (strongly typed: the FP16 ONNX twin).")
@click.option("--int8", is_flag=True, help="INT8 from the Q/DQ ONNX (calibrated if needed).")
@click.option("--best", is_flag=True, help="INT8, and FP16 where TensorRT <= 10 may choose it.")
@click.option("--fp32", is_flag=True, help="FP32 (the default).")
@click.option("--backend", type=click.Choice(["tensorrt", "tensorrt-rtx"]), default=None, help="Default: installed.")
@click.option("--batch", default=None, help="N (static) or MIN:OPT:MAX; default the ONNX's batch, or 1:8:32.")
@click.option("--workspace", "workspace_mib", type=int, default=None, help="Builder workspace limit, MiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None, help="Read and update this file.")
@click.option("--builder-opt-level", type=int, default=None, help="0..5 (TensorRT default 3).")
@click.option("--dla-core", type=int, default=None, help="Build for this DLA core (Jetson, TensorRT only).")
@click.option("--gpu-fallback", is_flag=True, help="With --dla-core: run unsupported layers on the GPU.")
@click.option("--version-compatible", is_flag=True, help="Engine runs on later TensorRT versions (lean runtime).")
@click.option(
    "--hardware-compat",
    type=click.Choice(["none", "ampere+", "same-cc"]),
    default="none",
    show_default=True,
    help="Engine also runs on other GPUs of this class.",
)
@click.option("--target-cc", default=None, help="TensorRT-RTX targets, e.g. 8.6,8.9 (default: the GPU present).")
@click.option("--implicit", is_flag=True, help="With --int8 on TensorRT 8.6-10.x: implicit INT8 from --calib-cache.")
@click.option("--calib-cache", type=click.Path(dir_okay=False), default=None, help="<id>.calib.cache of calibrate.")
@click.option("--data", default=None, help="Calibration data spec for --int8 (default: the model's dataset).")
@click.option("--calib-images", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]), default="entropy", show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default="calibration", show_default=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Engine file (default: MODEL.engine for FP32, MODEL.<precision>.engine otherwise, beside the ONNX).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars (none are drawn when stderr is not a terminal).")
@budget_options
@overwrite_option
@json_option
def build_engine_command(
    onnx_path: str | None,
    checkpoint: str | None,
    fp16: bool,
    int8: bool,
    best: bool,
    fp32: bool,
    backend: str | None,
    batch: str | None,
    workspace_mib: int | None,
    timing_cache: str | None,
    builder_opt_level: int | None,
    dla_core: int | None,
    gpu_fallback: bool,
    version_compatible: bool,
    hardware_compat: str,
    target_cc: str | None,
    implicit: bool,
    calib_cache: str | None,
    data: str | None,
    calib_images: int,
    method: str,
    cache_dir: str,
    output: str | None,
    no_progress: bool,
    overwrite: bool,
    as_json: bool,
    **kwargs: Any,
) -> None:
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
    from resnet_deploy.engine.options import BuildOptions, parse_batch, parse_target_cc
    from resnet_deploy.pipeline import EngineJob, plan_engine, run_planned_engine
    from resnet_deploy.quantize.options import CalibrationOptions
    from resnet_deploy.runtime.load import ENGINE_SUFFIXES

    out = Reporter(as_json)
    chosen_precisions = [name for name, on in (("fp32", fp32), ("fp16", fp16), ("int8", int8), ("best", best)) if on]
    if len(chosen_precisions) > 1:
        raise click.UsageError(f"choose one precision, not {' and '.join('--' + p for p in chosen_precisions)}")
    model = model_spec(kwargs)
    sources = [s for s in (onnx_path, checkpoint, model.depth and "depth") if s]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --onnx, --checkpoint or --depth")
    for given, flag in ((onnx_path, "--onnx"), (checkpoint, "--checkpoint")):
        if given is not None and not Path(given).is_file():
            raise click.BadParameter(f"{given} not found", param_hint=flag)
    if output is not None and not output.lower().endswith(ENGINE_SUFFIXES):
        raise click.BadParameter(
            f"an engine file ends in {' or '.join(ENGINE_SUFFIXES)} (the runner goes by the suffix), not {output}",
            param_hint="-o",
        )
    options = BuildOptions(
        precision=chosen_precisions[0] if chosen_precisions else "fp32",
        batch=parse_batch(batch) if batch else None,
        workspace_mib=workspace_mib,
        timing_cache=timing_cache,
        builder_opt_level=builder_opt_level,
        dla_core=dla_core,
        gpu_fallback=gpu_fallback,
        version_compatible=version_compatible,
        hardware_compat=hardware_compat,
        target_cc=parse_target_cc(target_cc),
        implicit=implicit,
        calib_cache=calib_cache,
    )
    job = EngineJob(
        options,
        onnx=Path(onnx_path) if onnx_path else None,
        checkpoint=checkpoint,
        spec=model,
        output=output,
        backend=backend,
        calibration=CalibrationOptions(method=method, data=data, count=calib_images, cache_dir=cache_dir),
        budget=budget_from(kwargs),
        overwrite=overwrite,
    )
    planned = plan_engine(out, job)  # every path checked before an export, a calibration or a build
    result = run_planned_engine(out, planned, progress=not no_progress and not as_json and sys.stderr.isatty())
    for path in result.derived:
        out.say(f"wrote {path} on the way")
    out.say(
        f"wrote {result.path} ({human_bytes(result.size_bytes)}, {result.backend} {result.backend_version}, "
        f"{result.precision}, batch {result.batch}) in {result.build_seconds:.1f} s; sidecar {result.sidecar_path}"
    )
    out.result({"ok": True, **result.to_dict()})
