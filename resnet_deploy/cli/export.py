"""``resnet-deploy export``: PyTorch -> verified, self-contained ONNX with metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.options import json_option, model_kwargs, model_options
from resnet_deploy.cli.output import Reporter, human_bytes
from resnet_deploy.errors import OutputPathError, ResnetDeployError


def describe_verification(report: Any) -> str:
    parts = [
        f"batch {c.batch}: max |err| {c.max_abs_error:.2e} (allowed {c.allowed:.1e}), "
        f"top-1 agreement {c.top1_agreement:.0%}"
        for c in report.checks
    ]
    return "verified against PyTorch in ONNX Runtime: " + "; ".join(parts)


def _exported_from(path: Path) -> str | None:
    """The sha256 of the checkpoint an existing ONNX of ours was exported from; None for random
    weights, a file that is not ours, or no file."""
    from resnet_deploy.metadata import read_onnx_metadata

    if not path.is_file():
        return None
    try:
        return read_onnx_metadata(str(path)).checkpoint_sha256
    except ResnetDeployError:
        return None


def _refuse_replacing_trained(path: Path) -> None:
    """Random weights never replace an ONNX exported from a checkpoint (``export --depth 20`` over a
    trained resnet20.onnx, or ``build-engine --depth 20`` beside one)."""
    if _exported_from(path):
        raise OutputPathError(
            f"{path} holds weights exported from a checkpoint; random weights would replace them. "
            f"Remove it or choose another -o (or use --onnx {path} / --checkpoint to build from the trained model)"
        )


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
    **model_opts: Any,
) -> Any:
    """Shared by `export` and `demo`: open the model, warn on random weights, export, report."""
    from resnet_deploy._io import check_writable
    from resnet_deploy.export import export_onnx
    from resnet_deploy.model_source import open_model
    from resnet_deploy.verify import DEFAULT_RTOL

    if checkpoint is None and model_opts.get("depth") is None:
        raise click.UsageError("give --depth or --checkpoint")
    if output is not None:
        if not output.endswith(".onnx"):
            raise OutputPathError(f"the export is an ONNX file: give an output ending in .onnx, not {output}")
        check_writable(output)  # before minutes of work, not after
    source = open_model(checkpoint, **model_opts)
    name = source.metadata.config.name
    path = Path(output) if output else Path(f"{name}.onnx")
    if source.random_init:
        _refuse_replacing_trained(path)
        out.warn(
            f"no --checkpoint: exporting a randomly initialised {name}; its predictions are meaningless "
            "(pass --checkpoint PATH to export trained weights)"
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


def onnx_from_model_arg(out: Reporter, model_path: str, onnx_path: Path) -> Path:
    """``model_path`` as an ONNX: itself when it is one, else the checkpoint exported (and verified) to ``onnx_path``.

    An existing ``onnx_path`` exported from the same checkpoint is reused; one from anything else is
    never overwritten.
    """
    from resnet_deploy._io import sha256_file

    path = Path(model_path)
    if not path.is_file():
        raise click.BadParameter(f"{model_path} not found", param_hint="MODEL")
    if path.suffix == ".onnx":
        return path
    if onnx_path.exists():
        if _exported_from(onnx_path) != sha256_file(path):
            raise OutputPathError(
                f"{onnx_path} exists and was not exported from {model_path}; remove it, or pass an ONNX as MODEL"
            )
        out.say(f"reusing {onnx_path}, exported from {model_path}")
        return onnx_path
    run_export(
        out, str(path), str(onnx_path), opset=None, static_batch=None, simplify=False, verify=True, tolerance=None
    )
    return onnx_path


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
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Allowed max |error| relative to the logit scale (default 1e-4).",
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
        **model_kwargs(kwargs),
    )
    out.result({"ok": True, **result.to_dict()})
