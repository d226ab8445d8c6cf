"""``SensitivityJob``: every INT8 layer of an FP32 ONNX ranked by the accuracy it costs, named for
PyTorch and TensorRT; the order in which a top-1 budget keeps layers out of INT8.

    from resnet_deploy import SensitivityJob, plan, run
    report = run(plan(SensitivityJob("r20.onnx", images=512)))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import write_bytes_atomic
from resnet_deploy._lazy import lazy_module
from resnet_deploy.errors import QuantizationError
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, existing_file
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last
from resnet_deploy.pipeline.reports import MarkedFile, marked_report
from resnet_deploy.quantize.options import CalibrationOptions

if TYPE_CHECKING:  # onnxruntime and the datasets (torch) load when the scan starts
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.quantize import sensitivity
    from resnet_deploy.quantize.sensitivity import SensitivityReport
else:
    data_spec, sensitivity = lazy_module("resnet_deploy.data.spec"), lazy_module("resnet_deploy.quantize.sensitivity")


@dataclass(frozen=True)
class SensitivityJob(Job["SensitivityReport"]):
    """Scan ``onnx`` (the FP32 export): each layer quantized alone and left out, scored against FP32 on
    ``images`` held-out test images; calibration as ``calibration`` says (from the training split).
    ``top``: print only the N most sensitive; ``report``: also write the table as Markdown."""

    command = "sensitivity"

    onnx: str | Path
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    images: int = 256
    keep_out_precision: str = "fp16"
    top: int | None = None
    report: str | Path | None = None
    overwrite: bool = False

    def plan(self) -> Plan[SensitivityReport]:
        onnx = existing_file(self.onnx, "ONNX", "onnx")
        assert onnx is not None
        if onnx.suffix.lower() != ".onnx":
            raise QuantizationError(f"scan the FP32 ONNX from `export`, not {onnx}", field="onnx")
        c = self.calibration
        settings = f"{c.data}|{self.images}|{c.count}|{c.method}|{c.percentile}|{self.keep_out_precision}"
        report = marked_report(self.command, self.report, [onnx], settings)
        step = Scan(onnx, self.calibration, self.images, self.keep_out_precision, self.top, report)
        planned = checked(self.command, [step], last, overwrite=self.overwrite)
        if c.data:
            # a wrong dataset fails now, not after minutes of scoring; the scoring needs labels
            data_spec.check_spec(c.data, labels_for="measure INT8 accuracy on")
        return planned


@dataclass(frozen=True)
class Scan(Step):
    """Calibrate (ranges from the cache when there), then score every layer; the table, and its report."""

    onnx: Path
    calibration: CalibrationOptions
    images: int
    keep_out_precision: str
    top: int | None = None
    report: MarkedFile | None = None

    @property
    def title(self) -> str:
        return f"rank every INT8 layer of {self.onnx} on {self.images} held-out images"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.onnx, "model"))

    def outputs(self) -> tuple[Output, ...]:
        return (self.report.output("report"),) if self.report else ()

    def run(self, out: Messages, earlier: Sequence[Any]) -> SensitivityReport:
        result = sensitivity.model_sensitivity(
            self.onnx, self.calibration, images=self.images, precision=self.keep_out_precision, out=out
        )
        out.say(result.summary())
        out.say(result.table(top=self.top))
        out.say(f"{result.variants} variants scored in {result.seconds:.1f} s")
        if self.report:
            text = f"# INT8 sensitivity: {result.model}\n\n{result.summary()}\n\n{result.table(markdown=True)}\n\n"
            out.say(f"report: {write_bytes_atomic(self.report.path, (text + self.report.mark + chr(10)).encode())}")
        return result
