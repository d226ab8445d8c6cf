"""Which ONNX a command starts from: a checkpoint or ``--depth`` model exported (and verified), or
an earlier export of the same model reused; every path planned before the work."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import human_bytes, sha256_file
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.model_spec import ModelSpec, model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import CheckpointError, OutputPathError, UnknownModelError
from resnet_deploy.files.output_plan import OutputPlan
from resnet_deploy.files.provenance import architecture, onnx_export_of
from resnet_deploy.messages import Messages

if TYPE_CHECKING:
    from resnet_deploy.convert import export
    from resnet_deploy.convert import verify as verification
    from resnet_deploy.models import source as model_source
else:
    export, model_source, verification = map(
        lazy_module, ("resnet_deploy.convert.export", "resnet_deploy.models.source", "resnet_deploy.convert.verify")
    )


def describe_verification(report: Any) -> str:
    parts = [
        f"batch {c.batch}: max |err| {c.max_abs_error:.2e} (allowed {c.allowed:.1e}"
        + (f", {report.noise_factor:g}x PyTorch FP32's own error {c.fp32_error:.1e}" if c.bound == "fp32-noise" else "")
        + f"), top-1 agreement {c.top1_agreement:.0%}"
        for c in report.checks
    ]
    return "verified against PyTorch in ONNX Runtime: " + "; ".join(parts)


def random_architecture(spec: ModelSpec) -> dict[str, str]:
    """The architecture props of ``--depth ...`` (random weights), checked without importing torch:
    ``export --depth 51`` is refused at once."""
    config = model_config(spec)
    return architecture(ArtifactMetadata(config=config, mean=(0.0,), std=(1.0,)).to_props())


def random_or_none(checkpoint: str | None, spec: ModelSpec) -> dict[str, str] | None:
    return None if checkpoint is not None else random_architecture(spec)


def export_ours(checkpoint: str | None, spec: ModelSpec) -> Any:
    """The test for "an existing ONNX is this export from the same inputs" (replaced or reused)."""
    if checkpoint is not None:
        return onnx_export_of(sha256_file(checkpoint) if Path(checkpoint).is_file() else "missing")
    return onnx_export_of(None, random_architecture(spec))


def export_model(
    out: Messages,
    checkpoint: str | None,
    output: str | None,
    *,
    opset: int | None,
    static_batch: int | None,
    simplify: bool,
    verify: bool,
    tolerance: float | None,
    overwrite: bool = False,
    planned: bool = False,
    spec: ModelSpec | None = None,
) -> Any:
    """Open the model, plan the output (``planned``: the caller's plan holds it already), warn on
    random weights, export and verify, and say what was written."""
    spec = spec or ModelSpec()
    if checkpoint is None and spec.depth is None:
        raise UnknownModelError("give a depth (--depth) or a checkpoint (--checkpoint) to export")
    if output is not None and not output.endswith(".onnx"):
        raise OutputPathError(f"the export is an ONNX file: give an output ending in .onnx, not {output}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint {checkpoint} not found")
    ours = export_ours(checkpoint, spec)  # a wrong --depth is refused here, before torch loads
    if output is not None and not planned:
        _plan_export(out, checkpoint, Path(output), ours, overwrite)  # before minutes of work, not after

    source = model_source.open_model(checkpoint, spec)
    name = source.metadata.config.name
    path = Path(output) if output else Path(f"{name}.onnx")
    if output is None and not planned:
        _plan_export(out, checkpoint, path, ours, overwrite)
    if source.random_init:
        out.warn(
            f"no --checkpoint: exporting a randomly initialised {name} (seed {model_source.RANDOM_WEIGHTS_SEED}, "
            "the same on every run); its predictions are meaningless (pass --checkpoint PATH to export trained weights)"
        )
    result = export.export_onnx(
        source.model,
        path,
        source.metadata,
        opset=opset,
        static_batch=static_batch,
        simplify=simplify,
        verify=verify,
        rtol=tolerance or verification.DEFAULT_RTOL,
    )
    batch = "dynamic batch" if result.batch == "dynamic" else f"static batch {result.batch}"
    out.say(
        f"exported {name} -> {result.path} ({human_bytes(result.size_bytes)}, opset {result.opset}, "
        f"{batch}, {result.exporter} exporter) in {result.export_seconds:.1f} s"
    )
    if result.verification:
        out.say(describe_verification(result.verification) + f" ({result.verification.seconds:.1f} s)")
    return result


def _plan_export(out: Messages, checkpoint: str | None, path: Path, ours: Any, overwrite: bool) -> None:
    plan = OutputPlan("export", overwrite=overwrite)
    plan.read(checkpoint, "checkpoint")
    plan.write(path, "ONNX export", ours=ours)
    plan.check()
    for note in plan.notes():
        out.say(note)


def plan_model_export(plan: Any, model_path: str, onnx_path: Path) -> bool:
    """Plan the ONNX that a checkpoint MODEL is exported to; True when an existing one is reused
    (an export of the same checkpoint: exporting again would write the same model)."""
    ours = export_ours(model_path, ModelSpec())
    if onnx_path.exists() and ours(onnx_path):
        plan.read(onnx_path, "ONNX exported from the checkpoint")
        return True
    plan.write(onnx_path, "ONNX export", ours=ours)
    return False


def onnx_from_model_arg(out: Messages, model_path: str, onnx_path: Path, reuse: bool) -> Path:
    """``model_path`` as an ONNX: itself when it is one, else the checkpoint exported (and verified)
    to ``onnx_path`` (planned by the caller with :func:`plan_model_export`), or reused."""
    path = Path(model_path)
    if path.suffix == ".onnx":
        return path
    if reuse:
        out.say(f"reusing {onnx_path}, exported from {model_path}")
        return onnx_path
    export_planned(out, str(path), onnx_path)
    return onnx_path


def export_planned(out: Messages, checkpoint: str | None, path: Path, spec: ModelSpec | None = None) -> Any:
    """The default, verified export to ``path``, which the caller's plan already checked."""
    return export_model(
        out,
        checkpoint,
        str(path),
        opset=None,
        static_batch=None,
        simplify=False,
        verify=True,
        tolerance=None,
        planned=True,
        spec=spec,
    )
