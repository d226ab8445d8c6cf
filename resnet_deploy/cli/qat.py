"""``resnet-deploy qat``: quantization-aware training to an INT8 Q/DQ ONNX with every layer in INT8 (``QatJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import FiniteFloat, calibration_from, calibration_options, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import QatJob
from resnet_deploy.quantize.qat_options import QatOptions

DEFAULTS, QAT = QatJob(""), QatOptions()


@click.command()
@click.argument("model", metavar="MODEL", type=click.Path(dir_okay=False))
@calibration_options(
    "Labelled dataset spec (default: the model's): calibration and fine-tuning on its training split, "
    "scoring on its test split."
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=QAT.epochs, show_default=True, help="Epochs to fine-tune."
)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=QAT.lr, show_default=True, help="Peak SGD rate.")
@click.option(
    "--scale-lr",
    type=FiniteFloat(min=0, min_open=True),
    default=QAT.scale_lr,
    show_default=True,
    help="Adam's step on the log of each learned activation scale.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=QAT.batch_size, show_default=True)
@click.option("--train-images", type=click.IntRange(min=1), default=None, help="Training images per epoch (all).")
@click.option(
    "--learn-scales/--fixed-scales",
    default=QAT.learn_scales,
    show_default=True,
    help="Train the activation scales too, or keep them where they start.",
)
@click.option("--device", default=QAT.device, show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option(
    "--held-out-images",
    type=click.IntRange(min=1),
    default=DEFAULTS.held_out_images,
    show_default=True,
    help="Test-split images the top-1 change is measured on, before and after.",
)
@output_options("Default: MODEL.qat.int8.onnx.")
def qat(model: str, output: str | None, overwrite: bool, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Fine-tune a model with every layer in INT8 and write its INT8 Q/DQ ONNX.

    MODEL is an FP32 ONNX from `export` or `import` (any exporter's ResNet), or a checkpoint: it is
    then exported to MODEL.onnx beside the output first. Fake quantization sits where the TensorRT
    Q/DQ placement puts it, starting from calibration's scales; the result is the same form as
    `calibrate` writes, for `build-engine`, `validate` and the runners. The state is saved after each
    epoch beside the output: a run cut off resumes from it.

    \b
    Examples:
      resnet-deploy qat resnet20.onnx                                # digits, 2 epochs
      resnet-deploy qat r50.onnx --data imagefolder:/data/imagenet --epochs 1 --train-images 50000 --device cuda
    """
    out = Reporter(as_json)
    qat_fields = {name: options.pop(name) for name in ("epochs", "lr", "scale_lr", "batch_size", "device")}
    fine_tuning = QatOptions(**qat_fields, images=options.pop("train_images"), learn_scales=options.pop("learn_scales"))
    job = QatJob(model, fine_tuning, calibration_from(options), options.pop("held_out_images"), output, overwrite)
    result = execute(job, out, dry_run)
    if result is not None and result.rank == 0:  # under torchrun, the first process reports
        out.result({"ok": True, **result.to_dict()})
