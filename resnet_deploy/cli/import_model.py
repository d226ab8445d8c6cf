"""``resnet-deploy import``: an outside ResNet (ONNX, or torchvision/timm weights) made an artifact (``ImportJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.convert.import_onnx import PREPROCESS_HELP
from resnet_deploy.data.spec import DATASET_SPECS_HELP
from resnet_deploy.pipeline import ImportJob


@click.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--preprocess", default=None, help=f"How images become its input: {PREPROCESS_HELP}. Default: the family's."
)
@click.option(
    "--labels", type=click.Path(dir_okay=False), default=None, help="Class names, one per line, in output order."
)
@click.option(
    "--dataset", default=None, help=f"The dataset validate and calibrate use by default: {DATASET_SPECS_HELP}."
)
@output_options("Output .onnx (default: MODEL.imported.onnx; a state dict's <architecture>.onnx).")
def import_command(dry_run: bool, as_json: bool, **options: Any) -> None:
    """Bring an outside ResNet in: an ONNX file from any exporter (torch.onnx, timm, tf2onnx, the ONNX
    model zoo), or a torchvision or timm state dict.

    The architecture is recognised from the weights; the graph gets one NCHW float32 input, a dynamic
    batch and our metadata (preprocessing, classes, where it came from), and is verified against the
    original on the same inputs. Every other command then takes it.

    \b
    Examples:
      resnet-deploy import resnet18.onnx --labels classes.txt --dataset imagefolder:/data/val
      resnet-deploy import timm_resnet50.pth --preprocess 0.485/0.456/0.406,0.229/0.224/0.225,224,0.95
      resnet-deploy import tf_resnet50.onnx --preprocess imagenet -o r50.onnx
    """
    out = Reporter(as_json)
    result = execute(ImportJob(**options), out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
