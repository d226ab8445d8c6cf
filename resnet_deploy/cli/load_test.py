"""``resnet-deploy load-test``: latency percentiles and throughput of a model on any Triton server, at each
concurrency and batch size (``LoadTestJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import IntList, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline.load_test import LoadTestJob

DEFAULTS = LoadTestJob()


def _list(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


@click.command("load-test")
@click.argument("url")
@click.option("--model", default=None, help="The Triton model to load (default: the server's only model).")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default=DEFAULTS.protocol, show_default=True)
@click.option(
    "--concurrency",
    type=IntList(),
    default=_list(DEFAULTS.concurrency),
    show_default=True,
    help="Requests outstanding at once, comma-separated: each a setting.",
)
@click.option(
    "--batch",
    type=IntList(),
    default=_list(DEFAULTS.batch),
    show_default=True,
    help="Images per request, comma-separated.",
)
@click.option("--requests", type=int, default=None, help="Requests measured per setting (default: --duration 5).")
@click.option("--duration", type=float, default=None, help="Seconds measured per setting, instead of --requests.")
@click.option("--warmup", type=int, default=DEFAULTS.warmup, show_default=True, help="Untimed requests per setting.")
@click.option(
    "--input",
    default=str(DEFAULTS.input),
    show_default=True,
    metavar="random|DIR",
    help="What to send: random data (PNGs of random pixels to a BYTES input), or the images of a folder.",
)
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG chart (needs [plot]).")
@output_options("Write the report as JSON (with the client's machine).")
def load_test_command(dry_run: bool, as_json: bool, **options: Any) -> None:
    """Measure a model on a Triton server: latency percentiles and throughput at each concurrency and batch.

    URL is the server's host:port (or http://host:port): `resnet-deploy serve`'s, or NVIDIA's Triton
    container's. The model's input (name, datatype, shape) and max batch come from the server, so any
    classifier works: float or uint8 tensors, or encoded images (BYTES). Needs the [client] extra.

    Each setting sends --warmup requests, then measures --requests requests (or --duration seconds)
    with --concurrency threads, each with its own client, sending as soon as its last request answered.

    \b
    Examples:
      resnet-deploy load-test localhost:8000 --model r50 --concurrency 1,4,16 --batch 1,8
      resnet-deploy load-test localhost:8001 --protocol grpc --model r50_images --input photos/
      resnet-deploy load-test localhost:8000 --model r50 --requests 500 -o load.json --plot load.png
    """
    out = Reporter(as_json)
    report = execute(LoadTestJob(**options), out, dry_run)
    if report is not None:
        out.result({"ok": True, **report.to_dict()})
