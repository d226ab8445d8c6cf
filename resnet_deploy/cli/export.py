"""``resnet-deploy export``: PyTorch -> verified, self-contained ONNX with metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.options import FiniteFloat, json_option, model_kwargs, model_options, overwrite_option
from resnet_deploy.cli.output import Reporter, human_bytes
from resnet_deploy.errors import OutputPathError


def describe_verification(report: Any) -> str:
    parts = [
        f"batch {c.batch}: max |err| {c.max_abs_error:.2e} (allowed {c.allowed:.1e}"
        + (
            f", {report.noise_factor:g}x PyTorch FP32's own error {c.fp32_error:.1e}"
            if getattr(c, "bound", "rtol") == "fp32-noise"
            else ""
        )
        + f"), top-1 agreement {c.top1_agreement:.0%}"
        for c in report.checks
    ]
    return "verified against PyTorch in ONNX Runtime: " + "; ".join(parts)


def random_architecture(model_opts: dict[str, Any]) -> dict[str, str]:
    """The architecture props of ``--depth ...`` (random weights), checked without importing torch:
    ``export --depth 51`` is refused at once."""
    from resnet_deploy.metadata import ArtifactMetadata
    from resnet_deploy.models.config import model_config
    from resnet_deploy.provenance import architecture

    opts = {k: v for k, v in model_opts.items() if k != "depth"}
    config = model_config(model_opts["depth"], **opts)
    return architecture(ArtifactMetadata(config=config, mean=(0.0,), std=(1.0,)).to_props())


def random_or_none(checkpoint: str | None, model_opts: dict[str, Any]) -> dict[str, str] | None:
    return None if checkpoint is not None else random_architecture(model_opts)


def export_ours(checkpoint: str | None, model_opts: dict[str, Any]) -> Any:
    """The test for "an existing ONNX is this export from the same inputs" (replaced or reused)."""
    from resnet_deploy._io import sha256_file
    from resnet_deploy.provenance import onnx_export_of

    if checkpoint is not None:
        return onnx_export_of(sha256_file(checkpoint) if Path(checkpoint).is_file() else "missing")
    return onnx_export_of(None, random_architecture(model_opts))


def run_export(
    out: Reporter,
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
    **model_opts: Any,
) -> Any:
    """Shared by `export`, `calibrate`, `build-engine` and `demo`: open the model, plan the output
    (``planned``: the caller's plan holds it already), warn on random weights, export, report."""
    if checkpoint is None and model_opts.get("depth") is None:
        raise click.UsageError("give --depth or --checkpoint")
    if output is not None and not output.endswith(".onnx"):
        raise OutputPathError(f"the export is an ONNX file: give an output ending in .onnx, not {output}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise click.BadParameter(f"{checkpoint} not found", param_hint="--checkpoint")
    ours = export_ours(checkpoint, model_opts)  # a wrong --depth is refused here, before torch loads
    if output is not None and not planned:
        _plan_export(out, checkpoint, Path(output), ours, overwrite)  # before minutes of work, not after

    from resnet_deploy.export import export_onnx
    from resnet_deploy.model_source import RANDOM_WEIGHTS_SEED, open_model
    from resnet_deploy.verify import DEFAULT_RTOL

    source = open_model(checkpoint, **model_opts)
    name = source.metadata.config.name
    path = Path(output) if output else Path(f"{name}.onnx")
    if output is None and not planned:
        _plan_export(out, checkpoint, path, ours, overwrite)
    if source.random_init:
        out.warn(
            f"no --checkpoint: exporting a randomly initialised {name} (seed {RANDOM_WEIGHTS_SEED}, the same on every "
            "run); its predictions are meaningless (pass --checkpoint PATH to export trained weights)"
        )
    result = export_onnx(
        source.model,
        path,
        source.metadata,
        opset=opset,
        static_batch=static_batch,
        simplify=simplify,
        verify=verify,
        rtol=tolerance or DEFAULT_RTOL,
    )
    batch = "dynamic batch" if result.batch == "dynamic" else f"static batch {result.batch}"
    out.say(
        f"exported {name} -> {result.path} ({human_bytes(result.size_bytes)}, opset {result.opset}, "
        f"{batch}, {result.exporter} exporter) in {result.export_seconds:.1f} s"
    )
    if result.verification:
        out.say(describe_verification(result.verification) + f" ({result.verification.seconds:.1f} s)")
    return result


def _plan_export(out: Reporter, checkpoint: str | None, path: Path, ours: Any, overwrite: bool) -> None:
    from resnet_deploy.output_plan import OutputPlan

    plan = OutputPlan("export", overwrite=overwrite)
    plan.read(checkpoint, "checkpoint")
    plan.write(path, "ONNX export", ours=ours)
    plan.check()
    for note in plan.notes():
        out.say(note)


def plan_model_export(plan: Any, model_path: str, onnx_path: Path) -> bool:
    """Plan the ONNX that a checkpoint MODEL is exported to; True when an existing one is reused
    (an export of the same checkpoint: exporting again would write the same model)."""
    ours = export_ours(model_path, {})
    if onnx_path.exists() and ours(onnx_path):
        plan.read(onnx_path, "ONNX exported from the checkpoint")
        return True
    plan.write(onnx_path, "ONNX export", ours=ours)
    return False


def onnx_from_model_arg(out: Reporter, model_path: str, onnx_path: Path, reuse: bool) -> Path:
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


def export_planned(out: Reporter, checkpoint: str | None, path: Path, **model_opts: Any) -> Any:
    """The default, verified export to ``path``, which the caller's plan already checked."""
    return run_export(
        out,
        checkpoint,
        str(path),
        opset=None,
        static_batch=None,
        simplify=False,
        verify=True,
        tolerance=None,
        planned=True,
        **model_opts,
    )


@click.command()
@model_options
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Our checkpoint (with its .json) or a torchvision-style .pth state dict.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output .onnx (default: <arch>.onnx)."
)
@click.option(
    "--opset", type=int, default=None, help="ONNX opset (default 18; 17 or lower for TensorRT 8.x / JetPack 5)."
)
@click.option(
    "--static-batch", type=click.IntRange(min=1), default=None, help="Fix the batch size (default: dynamic batch)."
)
@click.option("--simplify", is_flag=True, help="Simplify the graph with onnxslim.")
@click.option("--no-verify", "no_verify", is_flag=True, help="Skip the ONNX Runtime vs PyTorch check.")
@overwrite_option
@click.option(
    "--tolerance",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Allowed max |error| relative to the logit scale (default 1e-4); where PyTorch FP32's own error "
    "against float64 is larger (deep models such as ResNet-101/152), up to 4x that error is allowed instead.",
)
@json_option
def export(
    checkpoint: str | None,
    output: str | None,
    opset: int | None,
    static_batch: int | None,
    simplify: bool,
    no_verify: bool,
    tolerance: float | None,
    overwrite: bool,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Export a model to one self-contained ONNX file and verify it against PyTorch.

    \b
    Examples:
      resnet-deploy export --depth 50 -o r50.onnx
      resnet-deploy export --checkpoint resnet18-f37072fd.pth -o r18.onnx
      resnet-deploy export --checkpoint runs/r20/model.pt --opset 17 --static-batch 8
    """
    out = Reporter(as_json)
    result = run_export(
        out,
        checkpoint,
        output,
        opset=opset,
        static_batch=static_batch,
        simplify=simplify,
        verify=not no_verify,
        tolerance=tolerance,
        overwrite=overwrite,
        **model_kwargs(kwargs),
    )
    out.result({"ok": True, **result.to_dict()})
