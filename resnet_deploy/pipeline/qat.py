"""``QatJob``: an FP32 model fine-tuned with fake quantization at TensorRT's Q/DQ placement, written as an
INT8 Q/DQ ONNX with every layer in INT8 (the form ``calibrate`` writes for TensorRT).

    from resnet_deploy import QatJob, QatOptions, plan, run
    result = run(plan(QatJob("r20.onnx", qat=QatOptions(epochs=3))))   # -> r20.qat.int8.onnx

The scales start from calibration (``calibration``: its data is also what is fine-tuned on and scored);
the top-1 change against FP32 is measured on ``held_out_images`` test images before and after. Started by
torchrun (``torchrun --nproc-per-node N -m resnet_deploy qat ...``), the processes fine-tune data-parallel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import human_bytes
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts import naming
from resnet_deploy.artifacts.lineage import GraphLineage
from resnet_deploy.errors import QuantizationError
from resnet_deploy.files.provenance import onnx_twin_of
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.pipeline.calibrate import drop_replaced_state, qat_state_output
from resnet_deploy.pipeline.export import onnx_source
from resnet_deploy.pipeline.job import Job, existing_file, output_path
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last
from resnet_deploy.quantize.budget import DEFAULT_HELD_OUT
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.quantize.qat_options import QatOptions
from resnet_deploy.training.torchrun import launched

if TYPE_CHECKING:  # onnx, torch and the datasets load when the work starts
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.quantize import qat_onnx
    from resnet_deploy.quantize.qat_onnx import QatResult
    from resnet_deploy.training import distributed
else:
    data_spec, qat_onnx = lazy_module("resnet_deploy.data.spec"), lazy_module("resnet_deploy.quantize.qat_onnx")
    distributed = lazy_module("resnet_deploy.training.distributed")


@dataclass(frozen=True)
class QatJob(Job["QatResult"]):
    """Fine-tune ``model`` (an FP32 ONNX, or a checkpoint: exported beside the output first) into ``output``
    (default ``MODEL.qat.int8.onnx``), every layer in INT8."""

    command = "qat"

    model: str | Path
    qat: QatOptions = field(default_factory=QatOptions)
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    held_out_images: int = DEFAULT_HELD_OUT
    output: str | Path | None = None
    overwrite: bool = False

    def plan(self) -> Plan[QatResult]:
        if self.held_out_images < 1:
            raise QuantizationError(
                f"`held_out_images` must be at least 1, got {self.held_out_images}", field="held_out_images"
            )
        model = existing_file(self.model, "model", "model")
        assert model is not None
        output = output_path(self.output, (".onnx",), "the INT8 model is an ONNX file") or naming.qat_twin(model)
        source, steps = onnx_source(model, output)  # a checkpoint: its export first (or an earlier one reused)
        steps.append(FineTune(source, output, self.qat, self.calibration, self.held_out_images))
        planned = checked(self.command, steps, last, overwrite=self.overwrite)
        spec = self.qat.data or self.calibration.data
        if spec:  # a wrong dataset fails now, not after an export
            data_spec.check_spec(spec, labels_for="fine-tune on")
        return planned


@dataclass(frozen=True)
class FineTune(Step):
    """Calibrate, fine-tune with every layer in INT8, and write the Q/DQ graph with the trained weights and scales."""

    source: Path
    output: Path
    qat: QatOptions
    calibration: CalibrationOptions
    held_out_images: int

    @property
    def title(self) -> str:
        return (
            f"fine-tune {self.source} with every layer in INT8 ({self.qat.epochs} epochs, lr {self.qat.lr:g}, scales "
            f"from {self.calibration.method} calibration{', learned' if self.qat.learn_scales else ''})"
        )

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.source, "model"))

    def outputs(self) -> tuple[Output, ...]:
        def made(lineage: GraphLineage) -> bool:  # fine-tuned as asked: ours to redo; anything else is the user's
            q = lineage.qat
            asked = (self.qat.epochs, self.qat.lr, self.qat.learn_scales)
            return q is not None and lineage.budget is None and (q.epochs, q.lr, q.learned_scales) == asked

        ours = onnx_twin_of(self.source, "int8", "qdq-tensorrt", made)
        return (Output(self.output, "INT8 ONNX (quantization-aware trained)", ours=ours), qat_state_output(self.output))

    def run(self, out: Messages, earlier: Sequence[Any]) -> QatResult:
        """Under torchrun, each process fine-tunes on its part of every batch and the first one speaks and writes."""
        world, options = None, self.qat
        drop_replaced_state(self.output)
        if launched():
            world, device = distributed.join(self.qat.device)
            options = dataclasses.replace(self.qat, device=device)
            out = out if world.is_main else SILENT
        finished = False
        try:
            result = qat_onnx.qat_onnx(
                self.source,
                self.output,
                self.calibration,
                options,
                held_out_images=self.held_out_images,
                world=world,
                out=out,
            )
            finished = True
        finally:
            if world is not None:
                distributed.leave(world, finished)
        before, after = result.top1_change_before, result.top1_change_after
        epochs = f"{result.epochs} epoch{'s' if result.epochs > 1 else ''}"
        out.say(
            f"{epochs} on {result.images_per_epoch} images of {result.dataset} in "
            f"{result.fine_tune_seconds:.1f} s: Δtop-1 against FP32 {before['delta_pp']:+.2f} pp post-training -> "
            f"{after['delta_pp']:+.2f} pp [{after['low_pp']:+.2f}, {after['high_pp']:+.2f}] on "
            f"{result.held_out_images} held-out images; every layer INT8"
        )
        out.say(f"wrote {result.path} ({human_bytes(result.path.stat().st_size)}) in {result.total_seconds:.1f} s")
        return result
