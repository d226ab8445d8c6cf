"""``resnet-deploy deepstream``: a DeepStream Gst-nvinfer config for a classifier, with its label file and what
nvinfer's preprocessing costs it in top-1 (``DeepStreamJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import FiniteFloat, IntList, data_option, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline.deepstream import DeepStreamJob
from resnet_deploy.runtime.load import ONNX_BACKENDS

DEFAULTS = DeepStreamJob()


@click.command("deepstream")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option(
    "--secondary",
    is_flag=True,
    help="Classify the objects a detector finds (process-mode 2) instead of whole frames (process-mode 1).",
)
@click.option(
    "--gie-unique-id",
    type=click.IntRange(min=1),
    default=None,
    help="This element's id in the pipeline [default: 1, or 2 with --secondary].",
)
@click.option(
    "--operate-on-gie-id",
    type=click.IntRange(min=1),
    default=DEFAULTS.operate_on_gie_id,
    show_default=True,
    help="With --secondary: the id of the detector whose objects are classified.",
)
@click.option(
    "--operate-on-class-ids",
    type=IntList(),
    default=(),
    help="With --secondary: only objects of these detector classes (e.g. 0,2); all when left out.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True)
@click.option(
    "--threshold",
    type=FiniteFloat(min=0),
    default=DEFAULTS.threshold,
    show_default=True,
    help="classifier-threshold: the model gives logits, so a label needs its logit above this (and above 0).",
)
@click.option(
    "--maintain-aspect-ratio", is_flag=True, help="Let nvinfer pad (centred) instead of stretching to the input."
)
@click.option(
    "--measure/--no-measure",
    default=DEFAULTS.measure,
    show_default=True,
    help="Measure what nvinfer's preprocessing costs in top-1 (paired, against the exact one) and write it in.",
)
@data_option("Labelled images to measure on (default: the test split of the dataset the model records).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Measure on the first N test images only.")
@click.option(
    "--backend",
    type=click.Choice(ONNX_BACKENDS),
    default=DEFAULTS.backend,
    show_default=True,
    help="Runtime of the ONNX the measurement runs.",
)
@output_options("Directory for config_infer_NAME.txt and labels.txt [default: the artifact's].", directory=True)
def deepstream_command(artifact: str, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Write a DeepStream nvinfer config for a classifier: an engine or an ONNX file.

    The config (config_infer_NAME.txt) names the engine, and the ONNX nvinfer rebuilds it from where
    it cannot load it, the precision, the input and the normalisation; labels.txt holds the class
    names. nvinfer normalises with one scale for all channels, so a model trained with per-channel
    stds gets the closest single scale, and the config's comments say what that and nvinfer's resize
    cost in top-1, measured on the model's test images (--no-measure: not measured, and it says so).

    \b
    Examples:
      resnet-deploy deepstream r20.int8.engine -o deepstream/
      resnet-deploy deepstream r50.onnx -o ds/ --data imagefolder:/data/val --limit 5000
      resnet-deploy deepstream cars.fp16.engine --secondary --operate-on-gie-id 1 --operate-on-class-ids 0
    """
    out = Reporter(as_json)
    result = execute(DeepStreamJob(artifact=artifact, **options), out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
