"""``resnet-deploy calibrate``: INT8 Q/DQ ONNX for TensorRT (symmetric s8) or ONNX Runtime CPU (u8s8)
(``CalibrateJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.budget_options import budget_from, budget_options
from resnet_deploy.cli.options import calibration_from, calibration_options, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import CalibrateJob
from resnet_deploy.quantize.options import TARGETS


@click.command()
@click.argument("model", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="tensorrt",
    show_default=True,
    help="tensorrt: symmetric int8 Q/DQ placed for TensorRT (also TensorRT-RTX, ONNX Runtime); "
    "cpu: ONNX Runtime's fast uint8-activation form.",
)
@calibration_options(
    "Calibration dataset spec (default: the model's training dataset); folder:PATH takes a folder of unlabelled "
    "images, any nesting."
)
@budget_options
@output_options("Default: MODEL.int8.onnx (MODEL.cpu.int8.onnx for --target cpu).")
def calibrate(
    model: str, target: str, output: str | None, overwrite: bool, dry_run: bool, as_json: bool, **options: Any
) -> None:
    """Calibrate an FP32 model and write its INT8 Q/DQ ONNX.

    MODEL is an ONNX from `export`, or a checkpoint: it is then exported (and verified) to
    MODEL.onnx beside the output first.

    With --max-top1-drop the top-1 drop is measured on held-out test images and, while it is over
    the budget, the most sensitive remaining layer is kept out of INT8 (see `sensitivity`); the
    layers kept out are recorded in the model's metadata.

    \b
    Examples:
      resnet-deploy calibrate resnet20.onnx                       # digits, entropy, TensorRT placement
      resnet-deploy calibrate r50.onnx --data imagefolder:/data/imagenet --calib-images 512
      resnet-deploy calibrate r50.onnx --target cpu -o r50.cpu.int8.onnx
      resnet-deploy calibrate runs/resnet20/model.pt               # exports runs/resnet20/model.onnx first
      resnet-deploy calibrate r50.onnx --data imagefolder:/data/imagenet --max-top1-drop 0.5 --try-methods
    """
    out = Reporter(as_json)
    budget = budget_from(options)
    job = CalibrateJob(model, target, calibration_from(options), budget, output, overwrite)
    result = execute(job, out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
