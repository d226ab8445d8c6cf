"""``ValidateJob``: a reference and every artifact on the same labelled images, one table with paired
statistics; a top-1 gate when ``max_top1_drop`` is given. With ``labels_only``, no reference: each
artifact's absolute top-1/top-5 error with exact intervals.

    from resnet_deploy import ValidateJob, plan, run
    report = run(plan(ValidateJob("runs/r20/model.pt", ("r20.onnx", "r20.int8.onnx"), max_top1_drop=0.5)))
    report = run(plan(ValidateJob("r20.onnx", ("r20.int8.onnx",))))  # any artifact as the reference
    report = run(plan(ValidateJob(artifacts=("r20.int8.onnx",), labels_only=True, data="digits")))

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
from resnet_deploy.runtime.load import ENGINE_SUFFIXES, ONNX_BACKENDS, ONNX_SUFFIXES, TORCH_SUFFIXES

if TYPE_CHECKING:  # the datasets import torch when the scoring starts
    from resnet_deploy.evaluate import validate
    from resnet_deploy.evaluate.validate import ValidationReport
    from resnet_deploy.runtime.base import Backend
else:
    validate = lazy_module("resnet_deploy.evaluate.validate")

REFERENCE_SUFFIXES = (*TORCH_SUFFIXES, *ONNX_SUFFIXES, *ENGINE_SUFFIXES)


@dataclass(frozen=True)
class ValidateJob(Job["ValidationReport"]):
    """Score ``checkpoint``, the reference (the original PyTorch checkpoint, or any artifact: an ONNX of
    any precision, a TensorRT engine), and each of ``artifacts`` (none: the reference alone) on the test
    split of ``data`` (default: the dataset the reference records), ``limit`` images at most,
    ``batch_size`` at a time; every change is measured against that reference. ``max_top1_drop`` (pp)
    gates each artifact's top-1 change: its point estimate, or with ``gate_on="upper-bound"`` the upper
    bound of its 95% interval. ``backend`` runs the ONNX files.

    ``labels_only`` (with no ``checkpoint``): no reference; each artifact gets its top-1 and top-5 error
    against the labels with exact (Clopper-Pearson) 95% intervals, on ``data`` or else the dataset the
    artifacts record. There are no changes then, so no ``max_top1_drop``."""

    command = "validate"

    checkpoint: str | Path | None = None  # the reference; None only with labels_only
    artifacts: tuple[str | Path, ...] = ()  # a single path is taken as one artifact
    data: str | None = None
    limit: int | None = None
    batch_size: int = 64
    max_top1_drop: float | None = None
    gate_on: str | None = None  # None: "estimate"
    backend: str = "auto"
    report: str | Path | None = None
    overwrite: bool = False
    labels_only: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.artifacts, (str, Path)):  # one artifact, not its characters
            object.__setattr__(self, "artifacts", (self.artifacts,))

    def plan(self) -> Plan[ValidationReport]:
        if self.labels_only:
            self._check_labels_only()
        else:
            self._check_reference()
        if self.gate_on is not None and self.max_top1_drop is None:
            raise ValidationError(
                "`gate_on` chooses what `max_top1_drop` is compared with: give `max_top1_drop` too", field="gate_on"
            )
        if self.gate_on not in (None, *GATES):
            raise ValidationError(f"`gate_on` is one of {', '.join(GATES)}, not {self.gate_on!r}", field="gate_on")
        if self.backend not in ONNX_BACKENDS:
            raise ValidationError(f"`backend` runs ONNX files: one of {', '.join(ONNX_BACKENDS)}", field="backend")
        reference = existing_file(self.checkpoint, "reference", "checkpoint")
        artifacts = tuple(Path(a) for a in self.artifacts)
        report = marked_report(
            self.command,
            self.report,
            [*([reference] if reference else []), *artifacts],
            f"{self.data}|{self.limit}" + ("|labels-only" if self.labels_only else ""),
            suffixes=(*MARKDOWN, ".txt"),
        )
        steps: list[Step] = [Score(reference, artifacts, self.data, self.limit, self.batch_size, self.backend, report)]
        if self.max_top1_drop is not None:
            steps.append(Gate(self.max_top1_drop, self.gate_on or "estimate"))
        return checked(self.command, steps, first, overwrite=self.overwrite)

    def _check_reference(self) -> None:
        """A reference to compare with: any model file, checkpoint or artifact."""
        if self.checkpoint is None:
            raise ValidationError(
                "no reference to compare with: pass `checkpoint` (a checkpoint, or any artifact: ONNX or engine), "
                "or `labels_only=True` to score the artifacts against the labels alone",
                field="checkpoint",
            )
        if not str(self.checkpoint).lower().endswith(REFERENCE_SUFFIXES):
            raise ValidationError(
                f"the reference is the original model (a .pt/.pth checkpoint) or any artifact of it (an .onnx, or "
                f"a TensorRT {'/'.join(ENGINE_SUFFIXES)} engine), not {self.checkpoint}",
                field="checkpoint",
            )
        if self.max_top1_drop is not None and not self.artifacts:
            raise ValidationError(
                "`max_top1_drop` gates artifacts against the reference: name at least one in `artifacts`",
                field="artifacts",
            )

    def _check_labels_only(self) -> None:
        """No reference: artifacts to score, and nothing that needs a reference."""
        if self.checkpoint is not None:
            raise ValidationError(
                "`labels_only` scores the artifacts against the labels alone: leave out `checkpoint`, or drop "
                "`labels_only` to compare with it",
                field="labels_only",
            )
        if self.max_top1_drop is not None:
            raise ValidationError(
                "`max_top1_drop` gates each artifact's change against a reference, and `labels_only` has none: "
                "pass a reference as `checkpoint` instead, or drop `max_top1_drop`",
                field="max_top1_drop",
            )
        if not self.artifacts:
            raise ValidationError("`labels_only` scores artifacts: name at least one in `artifacts`", field="artifacts")


@dataclass(frozen=True)
class Score(Step):
    """The reference (None: the labels alone) and every artifact that runs here on the same test images
    (engines skipped, named, where no NVIDIA GPU runs them); the table, and its report."""

    checkpoint: Path | None  # the reference
    artifacts: tuple[Path, ...]
    data: str | None = None
    limit: int | None = None
    batch_size: int = 64
    backend: str = "auto"
    report: MarkedFile | None = None
    skip_failing_engines: bool = False  # the demo's: an engine built for other GPUs is named, not fatal

    @property
    def title(self) -> str:
        if self.checkpoint is None:
            return f"score {len(self.artifacts)} artifact(s) against the labels of the same test images"
        if not self.artifacts:
            return f"score {self.checkpoint} on its test images"
        return f"score {self.checkpoint} and {len(self.artifacts)} artifact(s) on the same test images"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.checkpoint, "reference"), *((a, "artifact") for a in self.artifacts))

    def outputs(self) -> tuple[Output, ...]:
        return (self.report.output("report"),) if self.report else ()

    def run(self, out: Messages, earlier: Sequence[Any]) -> ValidationReport:
        with ExitStack() as stack:
            reference = validate.open_reference(self.checkpoint, stack, self.backend) if self.checkpoint else None
            opened, skipped = validate.open_artifacts(
                self.artifacts, stack, backend=self.backend, skip_failing_engines=self.skip_failing_engines
            )
            self._say_how_they_run([*([reference] if reference else []), *opened], out)
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
        out.say(self._compared_with(result))
        out.say(result.table(notes=False))  # what was left out goes out as warnings instead
        if images_note := result.skipped_images_note():
            out.warn(images_note)
        if self.report:
            out.say(f"report: {validate.write_report(result, self.report.path, self.report.mark)}")
        return result

    def _say_how_they_run(self, backends: list[Backend], out: Messages) -> None:
        for backend in backends:
            if self.backend == "auto" and backend.chosen_because:
                out.say(f"{backend.path.name}: {backend.chosen_because}")
            for note in backend.notes:
                out.warn(note)

    def _compared_with(self, result: ValidationReport) -> str:
        """Which file every change is measured against, or that there is none."""
        if result.reference is None:
            return "no reference: each artifact is scored against the labels alone"
        ref = result.reference
        against = "; every Δ is against it" if result.artifacts else ""
        return f"reference: {self.checkpoint} ({ref.precision}, {ref.backend}){against}"


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
