"""``resnet-deploy triton``: a Triton model repository, one model per artifact (``TritonJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import IntList, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline.triton import TritonJob
from resnet_deploy.serve.triton_repository import INSTANCE_KINDS, ONNX_TRITON_BACKENDS

DEFAULTS = TritonJob()


@click.command("triton")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="The model's name (one artifact only). Default: the file's name.")
@click.option(
    "--version", type=click.IntRange(min=1), default=DEFAULTS.version, show_default=True, help="Version directory."
)
@click.option(
    "--backend",
    type=click.Choice(ONNX_TRITON_BACKENDS),
    default=DEFAULTS.backend,
    show_default=True,
    help="The Triton backend that runs ONNX files (OpenVINO: CPU only).",
)
@click.option(
    "--triton-release",
    metavar="YY.MM",
    default=None,
    help="The Triton container that will serve (e.g. 24.08): an engine its TensorRT cannot load is refused.",
)
@click.option(
    "--bench",
    type=click.Path(dir_okay=False),
    default=None,
    help="A `resnet-deploy bench --json` result: its fastest batch sizes become the preferred ones.",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Largest batch Triton forms. Default: an engine's profile max; 32 for ONNX files.",
)
@click.option("--preferred-batch-sizes", type=IntList(), default=None, help="The dynamic batcher's sizes (4,8,16).")
@click.option(
    "--max-queue-delay-us",
    type=click.IntRange(min=0),
    default=DEFAULTS.max_queue_delay_us,
    show_default=True,
    help="How long a request waits for others to batch with, in microseconds.",
)
@click.option("--instances", type=click.IntRange(min=1), default=DEFAULTS.instances, show_default=True)
@click.option(
    "--instance-kind",
    type=click.Choice(INSTANCE_KINDS),
    default=DEFAULTS.instance_kind,
    show_default=True,
    help="auto: GPU for engines, CPU for ONNX files.",
)
@click.option("--warmup/--no-warmup", default=DEFAULTS.warmup, show_default=True, help="A zero-filled warm-up request.")
@click.option(
    "--ensemble/--no-ensemble",
    default=DEFAULTS.ensemble,
    show_default=True,
    help="Also a preprocessing model and an ensemble that take encoded images (models without in-graph preprocessing).",
)
@output_options("The repository directory (made if missing; other models in it are kept).", directory=True)
def triton_command(artifacts: tuple[str, ...], dry_run: bool, as_json: bool, **options: Any) -> None:
    """Write a Triton model repository with one model per ARTIFACT (an engine or an ONNX file).

    Each config.pbtxt comes from what the artifact records: its inputs and outputs, batch sizes, class
    names (labels.txt, for Triton's classification), and for engines the Triton releases whose TensorRT
    loads them. Models that take normalised tensors also get an ensemble taking encoded images, whose
    preprocessing runs resnet-deploy's own in Triton's Python backend (pip install resnet-deploy in the
    container). Models converted with a frame size take raw uint8 frames and need none.

    \b
    Examples:
      resnet-deploy triton r20.onnx -o models
      resnet-deploy triton r20.int8.engine --triton-release 24.08 --bench bench.json -o models
      resnet-deploy triton r20.onnx --backend openvino --name digits --no-ensemble -o models
    """
    out = Reporter(as_json)
    report = execute(TritonJob(artifacts=artifacts, **options), out, dry_run)
    if report is not None:
        out.result({"ok": True, **report.to_dict()})
