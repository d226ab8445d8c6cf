"""``resnet-deploy demo``: the main job end to end on the embedded default, offline (``DemoJob``)."""

from __future__ import annotations

import time
from typing import Any

import click

from resnet_deploy.cli.options import execute, output_options, progress_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import DemoJob

DEFAULTS = DemoJob()


@click.command()
@click.option(
    "--out",
    "directory",
    type=click.Path(file_okay=False),
    default=str(DEFAULTS.directory),
    show_default=True,
    help="Directory for every artifact the demo writes (a previous demo there is replaced).",
)
@click.option("--depth", type=int, default=DEFAULTS.depth, show_default=True, help="CIFAR-family depth to train.")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the recipe's 20 on digits)."
)
@click.option("--calib-images", type=click.IntRange(min=1), default=DEFAULTS.calib_images, show_default=True)
@progress_option
@output_options(None)
def demo(no_progress: bool, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Run the pipeline end to end on the embedded digits: train, export, INT8, FP16, engines,
    validate, benchmark."""
    out = Reporter(as_json, bars=not no_progress)
    start = time.perf_counter()
    result = execute(DemoJob(**options), out, dry_run)
    if result is None:
        return
    seconds = time.perf_counter() - start
    out.say("files:")
    for line in result.files:
        out.say(f"  {line}")
    out.say(f"demo finished in {seconds:.0f} s; artifacts and validation.md in {result.directory}/")
    out.result(result.to_dict(seconds))
