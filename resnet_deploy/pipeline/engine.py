"""``EngineJob``: a model to a TensorRT or TensorRT-RTX engine and its sidecar, from an ONNX or from a
checkpoint or ``depth`` model exported on the way, with the FP16 or INT8 twin the build needs
converted or calibrated beside the engine (within a top-1 budget when one is given).

    from resnet_deploy import BuildOptions, EngineJob, plan, run
    job = EngineJob(onnx="r20.onnx", build=BuildOptions(precision="int8", target_cc=("8.6", "8.9")))
    result = run(plan(job))                                 # -> r20.int8.engine (+ r20.int8.onnx)

Which graph is built from which: ``resnet_deploy.engine.build``'s table, decided once, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import human_bytes
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts import naming
from resnet_deploy.artifacts.model_spec import ModelSpec
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, read_lineage
from resnet_deploy.engine.build import BuildResult, twin_needed, typing_mode
from resnet_deploy.engine.options import BuildOptions, check_combination
from resnet_deploy.errors import ArtifactError, QuantizationError
from resnet_deploy.files.provenance import engine_built_from
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.pipeline.calibrate import Calibrate
from resnet_deploy.pipeline.convert import ConvertFp16
from resnet_deploy.pipeline.export import random_architecture, source_steps
from resnet_deploy.pipeline.job import Job, existing_file, output_path
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last, run
from resnet_deploy.quantize.budget import BudgetOptions
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.runtime.load import ENGINE_SUFFIXES
from resnet_deploy.trt.flavours import EngineBackend, choose

if TYPE_CHECKING:  # the builder imports TensorRT when the step runs
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.engine import build
else:
    data_spec, build = lazy_module("resnet_deploy.data.spec"), lazy_module("resnet_deploy.engine.build")


@dataclass(frozen=True)
class EngineJob(Job[BuildResult]):
    """Build one source (``onnx``; ``checkpoint``; or ``model`` with a ``depth``, random weights) into an
    engine of ``build.precision`` at ``output`` (default: ``MODEL.engine`` for FP32, ``MODEL.<precision>.engine``
    otherwise, beside the ONNX or the checkpoint). ``backend``: "tensorrt", "tensorrt-rtx" or None (the one
    installed). ``calibration`` and ``budget`` say how an INT8 build calibrates an FP32 graph."""

    command = "build-engine"

    onnx: str | Path | None = None
    checkpoint: str | Path | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    build: BuildOptions = field(default_factory=BuildOptions)
    output: str | Path | None = None
    backend: str | EngineBackend | None = None
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    budget: BudgetOptions | None = None
    overwrite: bool = False

    def plan(self) -> Plan[BuildResult]:
        sources = [
            name
            for name, given in (("onnx", self.onnx), ("checkpoint", self.checkpoint), ("depth", self.model.depth))
            if given
        ]
        if len(sources) != 1:
            raise ArtifactError("give exactly one of `onnx`, `checkpoint` or `depth`", field="onnx")
        onnx = existing_file(self.onnx, "ONNX", "onnx")
        checkpoint = existing_file(self.checkpoint, "checkpoint", "checkpoint")
        output = output_path(self.output, ENGINE_SUFFIXES, "an engine file (the runner goes by the suffix)")
        options = self.build
        if self.budget is not None:  # a budget this build cannot use: refused before anything else
            check_budget_applies(options, onnx)
        backend = self.backend if isinstance(self.backend, EngineBackend) else choose(self.backend)
        check_combination(options, backend)  # before an export or a calibration, not after
        steps: list[Step] = []
        if onnx is not None:
            source = onnx
            check_graph_matches_metadata(source)  # a graph contradicting its metadata: refused before any work
            output = output or naming.engine_beside(source, options.precision)
            given = read_lineage(source).graph_precision
            ours = engine_built_from(source)
        else:
            stem = checkpoint.stem if checkpoint else f"resnet{self.model.depth}"
            directory = checkpoint.parent if checkpoint else Path(".")
            output = output or naming.engine_of_model(stem, directory, options.precision)
            source = naming.exported(stem, output.parent)
            steps += source_steps(checkpoint, self.model, source)
            given = "fp32"  # an export, or an earlier one of the same model
            ours = engine_built_from(checkpoint, None if checkpoint else random_architecture(self.model))
        strongly_typed, _ = typing_mode(backend, options)
        graph, derived = source, []
        twin = twin_needed(given, options.precision, strongly_typed, options.implicit, source)
        if twin is not None:
            graph = naming.engine_twin(output, options.precision)
            derived = [graph]
            if twin == "fp16":
                steps.append(ConvertFp16(source, graph))
            else:
                steps.append(Calibrate(source, graph, "tensorrt", self.calibration, self.budget))
        elif self.budget is not None:
            raise QuantizationError(
                f"this build of {source} calibrates nothing for `budget.max_top1_drop` to choose from",
                field="budget.max_top1_drop",
            )
        steps.append(Build(graph, output, options, backend, input_onnx=source, derived=tuple(derived), ours=ours))
        planned = checked(self.command, steps, last, overwrite=self.overwrite)
        if self.calibration.data and twin == "int8":
            # a wrong dataset fails now, not after an export; an accuracy budget scores on labels
            needs = "measure INT8 accuracy on" if self.budget is not None else None
            data_spec.check_spec(self.calibration.data, labels_for=needs)
        return planned


@dataclass(frozen=True)
class Build(Step):
    """TensorRT (or TensorRT-RTX) builds ``graph`` into ``output`` and its sidecar."""

    graph: Path
    output: Path
    options: BuildOptions
    backend: EngineBackend = field(compare=False)
    input_onnx: Path | None = None
    derived: tuple[Path, ...] = ()  # the twin written on the way, reported with the engine
    ours: Any = field(default=None, compare=False, repr=False)  # an existing engine there is ours to replace

    @property
    def title(self) -> str:
        return f"build the {self.options.precision} engine from {self.graph} with {self.backend.describe()}"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.graph, "input ONNX"), (self.options.calib_cache, "calibration cache"))

    def outputs(self) -> tuple[Output, ...]:
        engine = Output(self.output, "engine", ours=self.ours)
        if not self.options.timing_cache:
            return (engine,)
        return engine, Output(Path(self.options.timing_cache), "timing cache", existing_ok=True, with_companion=False)

    def run(self, out: Messages, earlier: Sequence[Any]) -> BuildResult:
        result = build.build_engine_file(
            self.graph,
            self.output,
            self.options,
            self.backend,
            input_onnx=self.input_onnx,
            derived=list(self.derived),
            out=out,
        )
        out.say(
            f"wrote {result.path} ({human_bytes(result.size_bytes)}, {result.backend} {result.backend_version}, "
            f"{result.precision}, batch {result.batch}) in {result.build_seconds:.1f} s; sidecar {result.sidecar_path}"
        )
        return result


def check_budget_applies(options: BuildOptions, onnx: Path | None) -> None:
    """A top-1 budget chooses which layers INT8 calibration quantizes: refused, before any work, for a
    build that calibrates nothing (another precision, implicit INT8, a graph already quantized)."""
    what = "`budget.max_top1_drop` chooses the layers INT8 calibration quantizes"
    if options.precision not in ("int8", "best") or options.implicit:
        kind = "an implicit INT8" if options.implicit else f"an {options.precision.upper()}"
        raise QuantizationError(
            f"{what}; {kind} build calibrates nothing: use it with `precision=int8` or `precision=best`",
            field="budget.max_top1_drop",
        )
    given = read_lineage(onnx).graph_precision if onnx is not None else "fp32"
    if given != "fp32":
        raise QuantizationError(f"{what}; {onnx} is {given} already: pass the FP32 ONNX it came from", field="onnx")


def build_engine(
    onnx: str | Path,
    output: str | Path,
    options: BuildOptions,
    *,
    backend: EngineBackend | str | None = None,
    calibration: CalibrationOptions | None = None,
    budget: BudgetOptions | None = None,
    overwrite: bool = False,
    out: Messages = SILENT,
) -> BuildResult:
    """``run(plan(EngineJob(onnx=..., output=..., build=options, ...)))``: an engine from an ONNX, the FP16
    or INT8 twin the build needs converted or calibrated on the way."""
    job = EngineJob(
        onnx=onnx,
        output=output,
        build=options,
        backend=backend,
        calibration=calibration or CalibrationOptions(),
        budget=budget,
        overwrite=overwrite,
    )
    return run(job.plan(), out)
