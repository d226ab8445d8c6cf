"""From a model to an engine: which ONNX the build starts from (given, or exported from a checkpoint
or a ``--depth`` model), the FP16 or INT8 twin converted or calibrated on the way, then the build;
every path planned and checked before any of that work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.model_spec import ModelSpec
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, read_onnx_props
from resnet_deploy.engine.build import (
    BuildResult,
    build_engine_file,
    graph_precision,
    plan_build,
    twin_needed,
    twin_path,
    typing_mode,
)
from resnet_deploy.engine.options import BuildOptions, check_combination
from resnet_deploy.errors import QuantizationError
from resnet_deploy.files.output_plan import OutputPlan
from resnet_deploy.files.provenance import engine_built_from
from resnet_deploy.messages import Messages, Silent
from resnet_deploy.pipeline.exports import export_ours, export_planned, random_or_none
from resnet_deploy.quantize.budget import BudgetOptions, int8_twin_settings
from resnet_deploy.quantize.budget import summary_line as budget_summary
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.trt.flavours import EngineBackend, choose

if TYPE_CHECKING:
    from resnet_deploy.convert import fp16
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.quantize import calibrate
else:
    fp16, data_spec, calibrate = map(
        lazy_module, ("resnet_deploy.convert.fp16", "resnet_deploy.data.spec", "resnet_deploy.quantize.calibrate")
    )


def derive_graph(
    out: Messages,
    onnx_path: Path,
    output: Path,
    options: BuildOptions,
    backend: EngineBackend,
    calibration: CalibrationOptions | None = None,
    budget: BudgetOptions | None = None,
) -> tuple[Path, list[Path]]:
    """The ONNX to hand TensorRT for ``options``: ``onnx_path`` itself, or its FP16 / INT8 twin
    converted or calibrated (within ``budget``) beside the engine (returned with the files written)."""
    strongly_typed, _ = typing_mode(backend, options)
    given = graph_precision(read_onnx_props(onnx_path))
    kind = twin_needed(given, options.precision, strongly_typed, options.implicit, onnx_path)
    if budget is not None and kind != "int8":
        check_budget_applies(options, onnx_path)
        raise QuantizationError(f"this build of {onnx_path} calibrates nothing for --max-top1-drop to choose from")
    if kind is None:
        return onnx_path, []
    twin = twin_path(output, options.precision)
    if kind == "fp16":
        return fp16.convert_to_fp16(onnx_path, twin).path, [twin]
    result = calibrate.calibrate_onnx(
        onnx_path, twin, calibration, target="tensorrt", budget=budget, warn=out.warn, say=out.say
    )
    if result.budget:
        out.say(budget_summary(result.budget))
    return result.path, [result.path]


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    options: BuildOptions,
    *,
    backend: EngineBackend | str | None = None,
    calibration: CalibrationOptions | None = None,
    budget: BudgetOptions | None = None,
    out: Messages | None = None,
    progress: bool = False,
) -> BuildResult:
    """Build an engine of ``options.precision`` from an FP32 (or FP16 / INT8) ONNX, converting or
    calibrating (``calibration``, within the accuracy ``budget``) on the way as the backend needs
    (see ``engine.build``)."""
    out = out or Silent()
    chosen = backend if isinstance(backend, EngineBackend) else choose(backend)
    check_combination(options, chosen)
    onnx_path = Path(onnx_path)
    check_graph_matches_metadata(onnx_path)  # ours, and the graph it claims to be, or a clear refusal
    graph, derived = derive_graph(out, onnx_path, Path(output), options, chosen, calibration, budget)
    return build_engine_file(
        graph,
        output,
        options,
        backend=chosen,
        input_onnx=onnx_path,
        derived=derived,
        warn=out.warn,
        say=out.say,
        progress=progress,
    )


def check_budget_applies(options: BuildOptions, onnx_path: Path | None) -> None:
    """A top-1 budget chooses which layers INT8 calibration quantizes: refused, before any work, for a
    build that calibrates nothing (another precision, implicit INT8, a graph already quantized)."""
    what = "--max-top1-drop chooses the layers INT8 calibration quantizes"
    if options.precision not in ("int8", "best") or options.implicit:
        build = "an implicit INT8" if options.implicit else f"an {options.precision.upper()}"
        raise QuantizationError(f"{what}; {build} build calibrates nothing: use it with --int8 or --best")
    given = graph_precision(read_onnx_props(onnx_path)) if onnx_path is not None else "fp32"
    if given != "fp32":
        raise QuantizationError(f"{what}; {onnx_path} is {given} already: pass the FP32 ONNX it came from")


@dataclass(frozen=True)
class EngineJob:
    """What `build-engine` is asked for: one source (``onnx``, ``checkpoint``, or ``spec`` with a
    depth for random weights), the build, and how to calibrate when the build needs INT8."""

    options: BuildOptions
    onnx: Path | None = None
    checkpoint: str | None = None
    spec: ModelSpec = field(default_factory=ModelSpec)
    output: str | None = None
    backend: str | None = None
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    budget: BudgetOptions | None = None  # INT8 within a top-1 budget (the layers kept out chosen by measurement)
    overwrite: bool = False


@dataclass(frozen=True)
class PlannedEngine:
    job: EngineJob
    backend: EngineBackend
    source: Path  # the ONNX the build starts from
    output: Path
    export_to: Path | None = None  # the checkpoint's (or --depth model's) export, still to be written
    reused_export: Path | None = None  # an export of the same model found there


def plan_engine(out: Messages, job: EngineJob) -> PlannedEngine:
    """Choose the backend, the source ONNX and the output, and check every path the build will write
    (export, twin, engine, sidecar, timing cache) before any work."""
    if job.budget is not None:  # a budget this build cannot use: refused before anything else
        check_budget_applies(job.options, job.onnx)
    chosen = choose(job.backend)  # fail before an export or a calibration when nothing can build
    check_combination(job.options, chosen)  # and when this backend cannot build what is asked
    precision = job.options.precision
    suffix = "" if precision == "fp32" else f".{precision}"
    plan = OutputPlan("build-engine", overwrite=job.overwrite)
    export_to = reused = None
    if job.onnx is not None:
        source = job.onnx
        plan.read(source, "input ONNX")
        check_graph_matches_metadata(source)  # a graph contradicting its metadata: refused before any work
        name = source.name.removesuffix(".onnx").removesuffix(".fp16").removesuffix(".int8")
        output = Path(job.output or source.with_name(name + suffix + ".engine"))
        engine_ours = engine_built_from(source)
    else:
        stem = Path(job.checkpoint).stem if job.checkpoint else f"resnet{job.spec.depth}"
        directory = Path(job.checkpoint).parent if job.checkpoint else Path(".")
        output = Path(job.output or directory / f"{stem}{suffix}.engine")
        source = output.with_name(stem + ".onnx")
        plan.read(job.checkpoint, "checkpoint")
        export_test = export_ours(job.checkpoint, job.spec)  # a wrong depth is refused here, before torch loads
        if source.exists() and export_test(source):
            reused = source  # the same export (same checkpoint, or the same seeded random model)
            plan.read(source, "ONNX exported earlier from the same model")
        else:
            export_to = source
            plan.write(source, "ONNX export", ours=export_test)
        arch = random_or_none(job.checkpoint, job.spec)
        engine_ours = engine_built_from(Path(job.checkpoint) if job.checkpoint else None, arch)
    calibration = job.calibration
    plan_build(
        plan,
        source,
        output,
        job.options,
        chosen,
        given_ours=engine_ours,
        exported_later=export_to is not None,
        twin_settings=int8_twin_settings(calibration, job.budget),
    )
    plan.check()
    for note in plan.notes():
        out.say(note)
    return PlannedEngine(job, chosen, source, output, export_to, reused)


def run_planned_engine(out: Messages, planned: PlannedEngine, progress: bool = False) -> BuildResult:
    """Export if planned, then convert or calibrate and build (:func:`build_engine`)."""
    job = planned.job
    if job.calibration.data and job.options.precision in ("int8", "best"):
        data_spec.check_spec(job.calibration.data)  # a wrong --data fails now, not after the export
    if planned.reused_export is not None:
        out.say(f"reusing {planned.reused_export}, exported earlier from the same model")
    elif planned.export_to is not None:
        export_planned(out, job.checkpoint, planned.export_to, None if job.checkpoint else job.spec)
    return build_engine(
        planned.source,
        planned.output,
        job.options,
        backend=planned.backend,
        calibration=job.calibration,
        budget=job.budget,
        out=out,
        progress=progress,
    )
