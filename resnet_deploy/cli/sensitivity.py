"""``resnet-deploy sensitivity``: which layers cost accuracy in INT8, ranked, named for PyTorch and TensorRT
(``SensitivityJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import calibration_from, calibration_options, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import SensitivityJob
from resnet_deploy.quantize.qdq_tensorrt import KEEP_OUT_PRECISIONS

DEFAULTS = SensitivityJob("")


@click.command()
@click.argument("onnx", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@calibration_options(
    "Dataset spec (default: the model's): calibration from its training split, scoring on its test one."
)
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=DEFAULTS.images,
    show_default=True,
    help="Held-out test images to score on.",
)
@click.option(
    "--keep-out-precision",
    type=click.Choice(KEEP_OUT_PRECISIONS),
    default=DEFAULTS.keep_out_precision,
    show_default=True,
    help="What a layer left out of INT8 computes in.",
)
@click.option("--top", type=click.IntRange(min=1), default=None, help="Print only the N most sensitive layers.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write the table as Markdown.")
@output_options(None)
def sensitivity(onnx: str, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Rank every INT8 layer of an FP32 ONNX by the accuracy it costs.

    Each layer the TensorRT placement quantizes is scored twice against the FP32 model on held-out
    test images: quantized alone (everything else FP32), and left out (everything else INT8). The
    table names the ONNX node (TensorRT names engine layers after it) and the PyTorch module, with
    its share of MACs, top-1 agreement and KL; most sensitive first: the order in which
    `calibrate --max-top1-drop` keeps layers out of INT8.

    \b
    Examples:
      resnet-deploy sensitivity resnet20.onnx
      resnet-deploy sensitivity r50.onnx --data imagefolder:/data/imagenet --images 512 --top 10 --json
    """
    out = Reporter(as_json)
    job = SensitivityJob(onnx, calibration_from(options), **options)
    result = execute(job, out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
