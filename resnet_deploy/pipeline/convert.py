"""``ConvertJob``: an FP32 ONNX to its FP16 twin (float32 I/O), verified against FP32 in ONNX Runtime.

from resnet_deploy import ConvertJob, plan, run
result = run(plan(ConvertJob("r50.onnx")))            # -> r50.fp16.onnx
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
from resnet_deploy.pipeline.job import Job, existing_file, output_path
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last

if TYPE_CHECKING:  # onnx, onnxruntime and the converter load when the step runs
    from resnet_deploy.convert import fp16
    from resnet_deploy.convert.fp16 import Fp16Result
else:
    fp16 = lazy_module("resnet_deploy.convert.fp16")

PRECISIONS = ("fp16",)  # INT8 is calibration's: CalibrateJob


@dataclass(frozen=True)
class ConvertJob(Job["Fp16Result"]):
    """Convert ``onnx`` (an FP32 export) to ``precision`` at ``output`` (default ``MODEL.fp16.onnx``);
    ``keep_fp32``: op types kept in float32 besides the converter's defaults."""

    command = "convert"

    onnx: str | Path
    precision: str = "fp16"
    output: str | Path | None = None
    keep_fp32: tuple[str, ...] = ()
    verify: bool = True
    overwrite: bool = False

    def plan(self) -> Plan[Fp16Result]:
        if self.precision not in PRECISIONS:
            raise QuantizationError(
                f"`precision` {self.precision!r}: convert makes fp16 twins (INT8 is calibration's)", field="precision"
            )
        source = existing_file(self.onnx, "ONNX", "onnx")
        assert source is not None
        output = output_path(self.output, (".onnx",), "the FP16 model is an ONNX file") or naming.fp16_twin(source)
        return checked(
            self.command,
            [ConvertFp16(source, output, tuple(self.keep_fp32), self.verify)],
            last,
            overwrite=self.overwrite,
        )


@dataclass(frozen=True)
class ConvertFp16(Step):
    """FP32 ONNX -> FP16 ONNX (float32 inputs and outputs), checked against the FP32 model."""

    source: Path
    output: Path
    keep_fp32: tuple[str, ...] = ()
    verify: bool = True
    what: str = field(default="FP16 ONNX", compare=False)

    @property
    def title(self) -> str:
        return f"convert {self.source} to FP16" + (", verified against FP32" if self.verify else "")

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.source, "input ONNX"))

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.output, self.what, ours=onnx_twin_of(self.source, "fp16")),)

    def run(self, out: Messages, earlier: Sequence[Any]) -> Fp16Result:
        result = fp16.convert_to_fp16(self.source, self.output, keep_fp32=self.keep_fp32, verify=self.verify)
        out.say(f"wrote {result.path} ({human_bytes(result.path.stat().st_size)}) in {result.seconds:.1f} s")
        if self.verify:
            out.say(
                f"verified against FP32 in ONNX Runtime: max |err| {result.max_abs_error:.2e} "
                f"(allowed {result.allowed:.1e}), top-1 agreement {result.top1_agreement:.0%}"
            )
        return result
