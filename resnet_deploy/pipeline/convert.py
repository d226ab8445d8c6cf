"""``ConvertJob``: an FP32 ONNX to its FP16 twin (float32 I/O), verified against FP32 in ONNX Runtime; and
any of our ONNX files to one with its preprocessing inside the graph, taking raw uint8 frames.

from resnet_deploy import ConvertJob, plan, run
result = run(plan(ConvertJob("r50.onnx")))                                         # -> r50.fp16.onnx
result = run(plan(ConvertJob("r50.onnx", precision=None, frame_size=(1280, 720))))  # -> r50.frames1280x720.onnx
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import human_bytes
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts import naming
from resnet_deploy.artifacts.frame_input import FrameInput
from resnet_deploy.errors import ArtifactError, QuantizationError
from resnet_deploy.files.provenance import onnx_twin_of
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, existing_file, output_path
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last

if TYPE_CHECKING:  # onnx, onnxruntime and the converter load when the step runs
    from resnet_deploy.convert import fp16, preprocess_graph
    from resnet_deploy.convert.fp16 import Fp16Result
    from resnet_deploy.convert.preprocess_graph import FuseResult
else:
    fp16 = lazy_module("resnet_deploy.convert.fp16")
    preprocess_graph = lazy_module("resnet_deploy.convert.preprocess_graph")

PRECISIONS = ("fp16",)  # INT8 is calibration's: CalibrateJob


@dataclass(frozen=True)
class ConvertJob(Job["Fp16Result | FuseResult"]):
    """Convert ``onnx`` (an FP32 export) to ``precision`` at ``output`` (default ``MODEL.fp16.onnx``);
    ``keep_fp32``: op types kept in float32 besides the converter's defaults.

    ``frame_size`` (width, height): put the model's preprocessing inside the graph, for uint8 NHWC frames
    of that size in ``channel_order`` ("RGB" or "BGR"); default output ``MODEL.framesWxH.onnx``.
    ``frame_dtype="float32"``: the same pixel values (0 to 255) as float32 frames, for feeders that write only
    float tensors (DeepStream's nvinfer); default output ``MODEL.framesWxH-float32.onnx``. With
    ``precision="fp16"`` too, the FP16 twin is written first and the frames model made from it;
    ``precision=None`` converts the frames alone (an FP32, FP16 or INT8 model keeps its precision)."""

    command = "convert"

    onnx: str | Path
    precision: str | None = "fp16"
    output: str | Path | None = None
    keep_fp32: tuple[str, ...] = ()
    verify: bool = True
    overwrite: bool = False
    frame_size: tuple[int, int] | None = None
    channel_order: str = "RGB"
    frame_dtype: str = "uint8"

    def plan(self) -> Plan[Fp16Result | FuseResult]:
        if self.precision not in (*PRECISIONS, None) or (self.precision is None and self.frame_size is None):
            raise QuantizationError(
                f"`precision` {self.precision!r}: convert makes fp16 twins (INT8 is calibration's), or, with "
                "`frame_size`, a model with its preprocessing inside",
                field="precision",
            )
        frame = self._frame()
        source = existing_file(self.onnx, "ONNX", "onnx")
        assert source is not None
        steps: list[Step] = []
        fused_from = source
        if self.precision == "fp16":
            half = naming.fp16_twin(source)
            if frame is None:
                half = output_path(self.output, (".onnx",), "the FP16 model is an ONNX file") or half
            steps.append(ConvertFp16(source, half, tuple(self.keep_fp32), self.verify))
            fused_from = half
        if frame is not None:
            default = naming.frames_twin(fused_from, frame.width, frame.height, frame.dtype)
            output = output_path(self.output, (".onnx",), "the model with its preprocessing is an ONNX file") or default
            steps.append(FusePreprocessing(fused_from, output, frame, self.verify))
        return checked(self.command, steps, last, overwrite=self.overwrite)

    def _frame(self) -> FrameInput | None:
        if self.frame_size is None:
            return None
        try:
            width, height = self.frame_size
            return FrameInput(int(width), int(height), str(self.channel_order).upper(), str(self.frame_dtype).lower())
        except (TypeError, ValueError):
            raise ArtifactError(
                f"`frame_size` {self.frame_size!r} is not (width, height), e.g. (1280, 720)", field="frame_size"
            ) from None
        except ArtifactError as exc:
            text = str(exc)
            field = "channel_order" if "order" in text else "frame_dtype" if "data type" in text else "frame_size"
            raise ArtifactError(str(exc), field=field) from None


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


@dataclass(frozen=True)
class FusePreprocessing(Step):
    """Our ONNX -> the same model taking uint8 frames, its preprocessing inside the graph, checked bit for
    bit against the runner's preprocessing in ONNX Runtime."""

    source: Path
    output: Path
    frame: FrameInput
    verify: bool = True
    what: str = field(default="ONNX with its preprocessing inside", compare=False)

    @property
    def title(self) -> str:
        return f"put the preprocessing of {self.source} inside its graph, for {self.frame.describe()} frames"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.source, "input ONNX"))

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.output, self.what),)

    def run(self, out: Messages, earlier: Sequence[Any]) -> FuseResult:
        result = preprocess_graph.fuse_preprocessing(self.source, self.output, self.frame, verify=self.verify)
        out.say(
            f"wrote {result.path} ({human_bytes(result.path.stat().st_size)}): takes {self.frame.describe()} frames "
            f"(N, {self.frame.height}, {self.frame.width}, 3), in {result.seconds:.1f} s"
        )
        if self.verify:
            out.say(
                f"verified in ONNX Runtime on {result.checked_frames} frames: the network's input equals the "
                f"runner's preprocessing bit for bit; max |logit difference| {result.max_abs_logit_error:.1e}"
            )
        return result
