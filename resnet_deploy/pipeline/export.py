"""``ExportJob``: a checkpoint or a ``depth`` model to one verified ONNX file; and the steps every job
that starts from a model shares (:func:`source_steps`: export it, or reuse an earlier export of it).

    from resnet_deploy import ExportJob, plan, run
    result = run(plan(ExportJob.of(depth=50, output="r50.onnx")))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import human_bytes, sha256_file
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts import naming
from resnet_deploy.artifacts.checkpoint_meta import CheckpointMeta
from resnet_deploy.artifacts.model_spec import ModelSpec, model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import ResnetDeployError, UnknownModelError
from resnet_deploy.files.provenance import architecture, onnx_export_of
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, existing_file, output_path
from resnet_deploy.pipeline.plan import Input, Ours, Output, Plan, Step, checked, inputs, last

if TYPE_CHECKING:  # they import torch: planning an export of a --depth model does not
    from resnet_deploy.convert import export, verify
    from resnet_deploy.convert.export import ExportResult
    from resnet_deploy.models import source as model_source
else:
    export, verify, model_source = map(
        lazy_module, ("resnet_deploy.convert.export", "resnet_deploy.convert.verify", "resnet_deploy.models.source")
    )


@dataclass(frozen=True)
class ExportJob(Job["ExportResult"]):
    """Export ``checkpoint`` (ours, or a torchvision-style state dict), or a randomly initialised ``model``
    (its ``depth`` and options), to ``output`` (default: ``<architecture>.onnx``), verified against PyTorch.

    ``opset`` None: 18 (17 or lower for TensorRT 8.x); ``static_batch`` None: a dynamic batch; ``tolerance``
    None: 1e-4 of the logit scale (or 4x PyTorch FP32's own error, where that is larger)."""

    command = "export"

    checkpoint: str | Path | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    output: str | Path | None = None
    opset: int | None = None
    static_batch: int | None = None
    simplify: bool = False
    verify: bool = True
    tolerance: float | None = None
    overwrite: bool = False

    def plan(self) -> Plan[ExportResult]:
        if self.checkpoint is None and self.model.depth is None:
            raise UnknownModelError("give a `depth` or a `checkpoint` to export", field="depth")
        checkpoint = existing_file(self.checkpoint, "checkpoint", "checkpoint")
        output = output_path(self.output, (".onnx",), "the export is an ONNX file")
        ours = export_ours(checkpoint, self.model)  # a wrong depth is refused here, before torch loads
        if output is None:
            output = naming.exported(model_name(checkpoint, self.model))
        step = Export(
            checkpoint,
            self.model,
            output,
            ours,
            self.opset,
            self.static_batch,
            self.simplify,
            self.verify,
            self.tolerance,
        )
        return checked(self.command, [step], last, overwrite=self.overwrite)


@dataclass(frozen=True)
class Export(Step):
    """PyTorch -> ONNX at ``output``, verified in ONNX Runtime against PyTorch (unless ``verify`` is off)."""

    checkpoint: Path | None
    model: ModelSpec
    output: Path
    ours: Ours = field(compare=False, repr=False)
    opset: int | None = None
    static_batch: int | None = None
    simplify: bool = False
    verify: bool = True
    tolerance: float | None = None

    @property
    def title(self) -> str:
        what = self.checkpoint or f"a randomly initialised depth-{self.model.depth} model"
        return f"export {what} to ONNX" + (", verified against PyTorch" if self.verify else "")

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.checkpoint, "checkpoint"))

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.output, "ONNX export", ours=self.ours),)

    def run(self, out: Messages, earlier: Sequence[Any]) -> ExportResult:
        source = model_source.open_model(self.checkpoint, self.model)
        name = source.metadata.config.name
        if source.random_init:
            out.warn(
                f"no `checkpoint`: exporting a randomly initialised {name} (seed {model_source.RANDOM_WEIGHTS_SEED}, "
                "the same on every run); its predictions are meaningless (pass `checkpoint` to export trained weights)"
            )
        result = export.export_onnx(
            source.model,
            self.output,
            source.metadata,
            opset=self.opset,
            static_batch=self.static_batch,
            simplify=self.simplify,
            verify=self.verify,
            rtol=self.tolerance or verify.DEFAULT_RTOL,
        )
        batch = "dynamic batch" if result.batch == "dynamic" else f"static batch {result.batch}"
        out.say(
            f"exported {name} -> {result.path} ({human_bytes(result.size_bytes)}, opset {result.opset}, "
            f"{batch}, {result.exporter} exporter) in {result.export_seconds:.1f} s"
        )
        if result.verification:
            out.say(describe_verification(result.verification) + f" ({result.verification.seconds:.1f} s)")
        return result


@dataclass(frozen=True)
class Reuse(Step):
    """An earlier export of the same model, found where the export would go: used as it is."""

    path: Path
    what: str  # "ONNX exported earlier from the same model"

    @property
    def title(self) -> str:
        return f"reuse {self.path} ({self.what})"

    def inputs(self) -> tuple[Input, ...]:
        return (Input(self.path, self.what),)

    def run(self, out: Messages, earlier: Sequence[Any]) -> Path:
        out.say(f"reusing {self.path}, {self.what.removeprefix('ONNX ')}")
        return self.path


def describe_verification(report: Any) -> str:
    parts = [
        f"batch {c.batch}: max |err| {c.max_abs_error:.2e} (allowed {c.allowed:.1e}"
        + (f", {report.noise_factor:g}x PyTorch FP32's own error {c.fp32_error:.1e}" if c.bound == "fp32-noise" else "")
        + f"), top-1 agreement {c.top1_agreement:.0%}"
        for c in report.checks
    ]
    return "verified against PyTorch in ONNX Runtime: " + "; ".join(parts)


def model_name(checkpoint: Path | None, spec: ModelSpec) -> str:
    """The name an export is called by (``resnet20``): the spec's, or the checkpoint's metadata (without
    importing torch); a foreign state dict is opened to read its architecture off its keys."""
    if checkpoint is None:
        return model_config(spec).name
    meta = naming.json_beside(checkpoint)
    if meta.is_file():
        try:
            return CheckpointMeta.from_json(json.loads(meta.read_text()), str(meta)).config.name
        except (OSError, ValueError, ResnetDeployError):
            pass  # opening the checkpoint says what is wrong with it
    return model_source.model_name(checkpoint, spec)


def random_architecture(spec: ModelSpec) -> dict[str, str]:
    """The architecture props of a ``depth`` model (random weights), checked without importing torch:
    ``depth=51`` is refused at once."""
    config = model_config(spec)
    return architecture(ArtifactMetadata(config=config, mean=(0.0,), std=(1.0,)).to_props())


def export_ours(checkpoint: str | Path | None, spec: ModelSpec) -> Ours:
    """The test for "an existing ONNX is this export from the same inputs" (replaced or reused)."""
    if checkpoint is not None:
        return onnx_export_of(sha256_file(checkpoint) if Path(checkpoint).is_file() else "missing")
    return onnx_export_of(None, random_architecture(spec))


def onnx_source(model: Path, output: Path) -> tuple[Path, list[Step]]:
    """The FP32 ONNX a command works from: ``model`` itself, or, for a checkpoint, its export beside
    ``output`` and the steps that make it (an earlier export of it found there is reused)."""
    if model.suffix.lower() == ".onnx":
        return model, []
    source = naming.export_beside(model, output)
    return source, source_steps(model, ModelSpec(), source)


def source_steps(checkpoint: Path | None, spec: ModelSpec, onnx_path: Path, *, reuse: bool = True) -> list[Step]:
    """The steps that make the FP32 ONNX at ``onnx_path`` from ``checkpoint`` (or a ``depth`` model): its
    verified export, or (``reuse``) an earlier export of the same model found there."""
    ours = export_ours(checkpoint, spec)  # a wrong depth is refused here, before torch loads
    if reuse and onnx_path.exists() and ours(onnx_path):
        what = f"exported from {checkpoint}" if checkpoint else "exported earlier from the same model"
        return [Reuse(onnx_path, f"ONNX {what}")]
    return [Export(checkpoint, spec, onnx_path, ours)]
