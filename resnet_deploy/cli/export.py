"""``resnet-deploy export``: PyTorch -> verified, self-contained ONNX with metadata (``ExportJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import FiniteFloat, execute, model_options, model_spec, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import ExportJob


@click.command()
@model_options
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Our checkpoint (with its .json) or a torchvision-style .pth state dict.",
)
@click.option(
    "--opset",
    type=int,
    default=None,
    help="ONNX opset (default 18; 17 or lower for TensorRT 8.6 / JetPack 6.0 and older).",
)
@click.option(
    "--static-batch", type=click.IntRange(min=1), default=None, help="Fix the batch size (default: dynamic batch)."
)
@click.option("--simplify", is_flag=True, help="Simplify the graph with onnxslim.")
@click.option("--no-verify", "no_verify", is_flag=True, help="Skip the ONNX Runtime vs PyTorch check.")
@click.option(
    "--tolerance",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Allowed max |error| relative to the logit scale (default 1e-4); where PyTorch FP32's own error "
    "against float64 is larger (deep models such as ResNet-101/152), up to 4x that error is allowed instead.",
)
@output_options("Output .onnx (default: <arch>.onnx).")
def export(no_verify: bool, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Export a model to one self-contained ONNX file and verify it against PyTorch.

    \b
    Examples:
      resnet-deploy export --depth 50 -o r50.onnx
      resnet-deploy export --checkpoint resnet18-f37072fd.pth -o r18.onnx
      resnet-deploy export --checkpoint runs/r20/model.pt --opset 17 --static-batch 8
    """
    out = Reporter(as_json)
    job = ExportJob(model=model_spec(options), verify=not no_verify, **options)
    result = execute(job, out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
