"""``ValidateJob``: the original model and every artifact on the same labelled images, one table with
paired statistics; a top-1 gate when ``max_top1_drop`` is given.

    from resnet_deploy import ValidateJob, plan, run
    report = run(plan(ValidateJob("runs/r20/model.pt", ("r20.onnx", "r20.int8.onnx"), max_top1_drop=0.5)))

A gate that fails raises :class:`~resnet_deploy.errors.AccuracyGateError` once the table is out; the
report it judged is its ``report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._lazy import lazy_module
from resnet_deploy.errors import AccuracyGateError, ValidationError
from resnet_deploy.evaluate.paired_stats import GATES
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, existing_file
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, first, inputs
from resnet_deploy.pipeline.reports import MARKDOWN, MarkedFile, marked_report
from resnet_deploy.runtime.load import ONNX_BACKENDS, ONNX_SUFFIXES, TORCH_SUFFIXES

if TYPE_CHECKING:  # the datasets import torch when the scoring starts
    from resnet_deploy import runtime
    from resnet_deploy.evaluate import validate
    from resnet_deploy.evaluate.validate import ValidationReport
else:
    runtime, validate = lazy_module("resnet_deploy.runtime"), lazy_module("resnet_deploy.evaluate.validate")


@dataclass(frozen=True)
class ValidateJob(Job["ValidationReport"]):
    """Score ``checkpoint`` (the original model: a PyTorch checkpoint, or its FP32 ONNX) and each of
    ``artifacts`` (none: the original alone) on the test split of ``data`` (default: the dataset the
    checkpoint records), ``limit`` images at most, ``batch_size`` at a time. ``max_top1_drop`` (pp)
    gates each artifact's top-1 change: its point estimate, or with ``gate_on="upper-bound"`` the
    upper bound of its 95% interval. ``backend`` runs the ONNX files."""

    command = "validate"

    checkpoint: str | Path
    artifacts: tuple[str | Path, ...]  # a single path is taken as one artifact
    data: str | None = None
    limit: int | None = None
    batch_size: int = 64
    max_top1_drop: float | None = None
    gate_on: str | None = None  # None: "estimate"
    backend: str = "auto"
    report: str | Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.artifacts, (str, Path)):  # one artifact, not its characters
            object.__setattr__(self, "artifacts", (self.artifacts,))

    def plan(self) -> Plan[ValidationReport]:
        if not str(self.checkpoint).lower().endswith((*TORCH_SUFFIXES, *ONNX_SUFFIXES)):
            raise ValidationError(
                f"the reference is the original model (a .pt/.pth checkpoint or its FP32 .onnx), not "
                f"{self.checkpoint}; pass the deployed artifacts as `artifacts`",
                field="checkpoint",
            )
        if self.max_top1_drop is not None and not self.artifacts:
            raise ValidationError(
                "`max_top1_drop` gates artifacts against the reference: name at least one in `artifacts`",
                field="artifacts",
            )
        if self.gate_on is not None and self.max_top1_drop is None:
            raise ValidationError(
                "`gate_on` chooses what `max_top1_drop` is compared with: give `max_top1_drop` too", field="gate_on"
            )
        if self.gate_on not in (None, *GATES):
            raise ValidationError(f"`gate_on` is one of {', '.join(GATES)}, not {self.gate_on!r}", field="gate_on")
        if self.backend not in ONNX_BACKENDS:
            raise ValidationError(f"`backend` runs ONNX files: one of {', '.join(ONNX_BACKENDS)}", field="backend")
        checkpoint = existing_file(self.checkpoint, "checkpoint", "checkpoint")
        assert checkpoint is not None
        artifacts = tuple(Path(a) for a in self.artifacts)
        report = marked_report(
            self.command,
            self.report,
            [checkpoint, *artifacts],
            f"{self.data}|{self.limit}",
            suffixes=(*MARKDOWN, ".txt"),
        )
        steps: list[Step] = [Score(checkpoint, artifacts, self.data, self.limit, self.batch_size, self.backend, report)]
        if self.max_top1_drop is not None:
            steps.append(Gate(self.max_top1_drop, self.gate_on or "estimate"))
        return checked(self.command, steps, first, overwrite=self.overwrite)


@dataclass(frozen=True)
class Score(Step):
    """The reference and every artifact that runs here on the same test images (engines skipped, named,
    where no NVIDIA GPU runs them); the table, and its report."""

    checkpoint: Path
    artifacts: tuple[Path, ...]
    data: str | None = None
    limit: int | None = None
    batch_size: int = 64
    backend: str = "auto"
    report: MarkedFile | None = None
    skip_failing_engines: bool = False  # the demo's: an engine built for other GPUs is named, not fatal

    @property
    def title(self) -> str:
        if not self.artifacts:
            return f"score {self.checkpoint} on its test images"
        return f"score {self.checkpoint} and {len(self.artifacts)} artifact(s) on the same test images"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.checkpoint, "reference"), *((a, "artifact") for a in self.artifacts))

    def outputs(self) -> tuple[Output, ...]:
        return (self.report.output("report"),) if self.report else ()

    def run(self, out: Messages, earlier: Sequence[Any]) -> ValidationReport:
        with ExitStack() as stack:
            onnx = self.checkpoint.suffix.lower() in ONNX_SUFFIXES
            reference = stack.enter_context(runtime.open_backend(self.checkpoint, self.backend if onnx else "auto"))
            if reference.precision != "fp32":
                raise ValidationError(
                    f"the reference {self.checkpoint} is {reference.precision}: the original model is FP32; "
                    "pass its checkpoint or FP32 ONNX as `checkpoint`",
                    field="checkpoint",
                )
            opened, skipped = validate.open_artifacts(
                self.artifacts, stack, backend=self.backend, skip_failing_engines=self.skip_failing_engines
            )
            for artifact in opened:
                if self.backend == "auto" and artifact.chosen_because:
                    out.say(f"{artifact.path.name}: {artifact.chosen_because}")
                for note in artifact.notes:
                    out.warn(note)
            for item in skipped:  # now, not after minutes of scoring the rest
                out.warn(f"not validating {item.artifact}: {item.reason}")
            result = validate.validate(
                reference,
                opened,
                data=self.data,
                limit=self.limit,
                batch_size=self.batch_size,
                skipped_artifacts=skipped,
            )
        out.say(f"{result.images} images of {result.dataset} (test split); {result.machine}")
        out.say(result.table(notes=False))  # what was left out goes out as warnings instead
        if images_note := result.skipped_images_note():
            out.warn(images_note)
        if self.report:
            out.say(f"report: {validate.write_report(result, self.report.path, self.report.mark)}")
        return result


@dataclass(frozen=True)
class Gate(Step):
    """Fail (exit 4) when an artifact's top-1 error rose more than ``max_top1_drop`` pp, or was not scored."""

    max_top1_drop: float
    gate_on: str = "estimate"

    @property
    def title(self) -> str:
        return f"gate: top-1 change ({self.gate_on}) within {self.max_top1_drop:g} pp for every artifact"

    def run(self, out: Messages, earlier: Sequence[Any]) -> None:
        report = earlier[0]
        try:
            validate.check_gate(report, self.max_top1_drop, gate=self.gate_on)
        except AccuracyGateError as exc:
            exc.report = report  # what was judged: the CLI still prints it
            raise
