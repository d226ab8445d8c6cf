"""``resnet-deploy bench``: latency percentiles and images/s of artifacts, side by side (``BenchJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import IntList, NameList, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import BenchJob

DEFAULTS = BenchJob(())


@click.command()
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option(
    "--batch",
    "batches",
    type=IntList(),
    default=",".join(map(str, DEFAULTS.batches)),
    show_default=True,
    help="Comma-separated batch sizes.",
)
@click.option(
    "--backend",
    "backends",
    type=NameList(),
    default=",".join(DEFAULTS.backends),
    show_default=True,
    help="Runtime of .onnx artifacts: auto (the faster of OpenVINO and ONNX Runtime, timed at load), onnxruntime "
    "or openvino; comma-separated to run each ONNX file on each.",
)
@click.option(
    "--streams",
    type=IntList(),
    default=None,
    help="Throughput mode: comma-separated numbers of concurrent requests (e.g. 1,2,4); reports images/s of "
    "each batch size and number of streams, and the best of each artifact.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=DEFAULTS.warmup,
    show_default=True,
    help="Untimed rounds per batch size (throughput mode: one round on every stream).",
)
@click.option(
    "--iters",
    type=click.IntRange(min=1),
    default=None,
    help="Timed rounds per batch size (default 30; throughput mode: 5).",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="CPU threads for ONNX Runtime, OpenVINO and PyTorch."
)
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG chart.")
@output_options(None)
def bench(dry_run: bool, as_json: bool, **options: Any) -> None:
    """Benchmark artifacts (.pt, .onnx, .engine) in one process, interleaved, on the same input.

    Each row shows its spread (IQR/p50) and is flagged unstable, with a warning, when its IQR is
    above 25% of p50 or its slowest run above 3x p50. With fewer than 100 --iters, p99 is the max.
    ONNX files run on OpenVINO or ONNX Runtime, whichever is faster here (--backend auto), or on
    the runtimes named.

    \b
    Examples:
      resnet-deploy bench r50.pt r50.onnx r50.cpu.int8.onnx --batch 1 --threads 2
      resnet-deploy bench r50.onnx r50.int8.onnx --backend onnxruntime,openvino --batch 1,8
      resnet-deploy bench r50.int8.onnx --streams 1,2,4 --batch 1,8 --json
      resnet-deploy bench r20.int8.engine r20.onnx --batch 1,8,32 --plot bench.png --json
    """
    out = Reporter(as_json)
    report = execute(BenchJob(**options), out, dry_run)
    if report is not None:
        out.result({"ok": True, **report.to_dict()})
