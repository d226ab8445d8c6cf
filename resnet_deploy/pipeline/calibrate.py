"""``CalibrateJob``: an FP32 model and calibration images to an INT8 Q/DQ ONNX, for TensorRT (symmetric
int8, TensorRT's placement) or ONNX Runtime on CPUs (its uint8-activation form); within a top-1
budget when one is given.

    from resnet_deploy import CalibrateJob, CalibrationOptions, plan, run
    job = CalibrateJob("r50.onnx", calibration=CalibrationOptions(data="imagefolder:/data/imagenet"))
    result = run(plan(job))                                 # -> r50.int8.onnx

``calibration.data="folder:/data/frames"`` calibrates on unlabelled images (every image below the
folder); a budget needs labels, so it takes a labelled dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import human_bytes
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts import naming
from resnet_deploy.errors import QuantizationError
from resnet_deploy.files.provenance import onnx_twin_of
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.export import onnx_source
from resnet_deploy.pipeline.job import Job, existing_file, output_path
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last
from resnet_deploy.quantize import qat_state
from resnet_deploy.quantize.budget import BudgetOptions, same_calibration, summary_line
from resnet_deploy.quantize.options import TARGETS, CalibrationOptions

if TYPE_CHECKING:  # onnx, onnxruntime and the datasets (torch) load when the work starts
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.quantize import calibrate
    from resnet_deploy.quantize.calibrate import CalibrateResult
else:
    data_spec, calibrate = lazy_module("resnet_deploy.data.spec"), lazy_module("resnet_deploy.quantize.calibrate")

QUANTIZATION = {"tensorrt": "qdq-tensorrt", "cpu": "qdq-onnxruntime-cpu"}  # what the INT8 model records


@dataclass(frozen=True)
class CalibrateJob(Job["CalibrateResult"]):
    """Calibrate ``model`` (an FP32 ONNX from export, or a checkpoint: exported beside the output first)
    into ``output`` (default ``MODEL.int8.onnx``, ``MODEL.cpu.int8.onnx`` for the ``cpu`` target).

    ``budget``: keep the most sensitive layers out of INT8 until the top-1 drop on held-out test images
    is within ``budget.max_top1_drop`` (TensorRT placement only)."""

    command = "calibrate"

    model: str | Path
    target: str = "tensorrt"
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    budget: BudgetOptions | None = None
    output: str | Path | None = None
    overwrite: bool = False

    def plan(self) -> Plan[CalibrateResult]:
        if self.target not in TARGETS:
            raise QuantizationError(f"unknown `target` {self.target!r}; choose tensorrt or cpu", field="target")
        if self.budget is not None and self.target != "tensorrt":
            raise QuantizationError(
                "`budget.max_top1_drop` chooses layers of the TensorRT placement: use it with `target=tensorrt`",
                field="budget.max_top1_drop",
            )
        model = existing_file(self.model, "model", "model")
        assert model is not None
        output = output_path(self.output, (".onnx",), "the INT8 model is an ONNX file") or naming.int8_twin(
            model, self.target
        )
        source, steps = onnx_source(model, output)  # a checkpoint: its export first (or an earlier one reused)
        steps.append(Calibrate(source, output, self.target, self.calibration, self.budget))
        planned = checked(self.command, steps, last, overwrite=self.overwrite)
        if self.calibration.data:  # a wrong dataset fails now, not after an export
            labels_for = "measure INT8 accuracy on" if self.budget else None
            data_spec.check_spec(self.calibration.data, labels_for=labels_for)
        return planned


def qat_state_output(output: Path) -> Output:
    """The state quantization-aware training keeps beside ``output`` while it runs: one there already is ours
    to resume (and then delete); any other file there is the user's."""
    path = qat_state.path_for(output)
    return Output(path, "QAT state", ours=qat_state.looks_like_state, with_companion=False)


def drop_replaced_state(output: Path) -> None:
    """Remove a file at the QAT state's place that is not a state: the plan let it be replaced (`overwrite`),
    so fine-tuning starts afresh rather than refusing to resume from it."""
    path = qat_state.path_for(output)
    if path.is_file() and not qat_state.looks_like_state(path):
        path.unlink(missing_ok=True)  # under torchrun every process may get here


@dataclass(frozen=True)
class Calibrate(Step):
    """Measure the FP32 model's ranges on calibration images (or read them from the cache) and write its
    INT8 form for ``target``; with ``budget``, the layers kept out chosen by measured accuracy."""

    source: Path
    output: Path
    target: str = "tensorrt"
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    budget: BudgetOptions | None = None

    @property
    def title(self) -> str:
        within = f" within a top-1 budget of {self.budget.max_top1_drop:g} pp" if self.budget else ""
        cache = f"; ranges cached in {self.calibration.cache_dir}/" if self.calibration.cache_dir else ""
        return f"calibrate {self.source} to INT8 for {self.target} ({self.calibration.method}{cache}){within}"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.source, "model"))

    def outputs(self) -> tuple[Output, ...]:
        made = same_calibration(self.calibration, self.budget)
        ours = onnx_twin_of(self.source, "int8", QUANTIZATION[self.target], made)
        fine_tunes = self.budget is not None and self.budget.fine_tunes
        return (Output(self.output, "INT8 ONNX", ours=ours), *([qat_state_output(self.output)] if fine_tunes else []))

    def run(self, out: Messages, earlier: Sequence[Any]) -> CalibrateResult:
        if self.budget is not None and self.budget.fine_tunes:
            drop_replaced_state(self.output)
        result = calibrate.calibrate_onnx(
            self.source, self.output, self.calibration, target=self.target, budget=self.budget, out=out
        )
        how = "from cache" if result.cache_hit else f"in {result.calibrate_seconds:.1f} s"
        out.say(
            f"calibrated {result.images} images of {result.dataset} ({result.method}, {how}; "
            f"id {result.calibration_id})"
        )
        placed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result.placement.items())
        out.say(
            f"wrote {result.path} ({human_bytes(result.path.stat().st_size)}, target {result.target}"
            + (f": {placed}" if placed else "")
            + f") in {result.total_seconds:.1f} s"
        )
        if result.budget:
            out.say(summary_line(result.budget))
        for path in result.cache_files:
            out.say(f"cache: {path}")
        return result
