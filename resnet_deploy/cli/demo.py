"""``resnet-deploy demo``: the main job end to end on the embedded default, offline (the steps are
``resnet_deploy.pipeline.demo``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.errors import UnknownModelError


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="demo-out",
    show_default=True,
    help="Directory for every artifact the demo writes (a previous demo there is replaced).",
)
@click.option("--depth", type=int, default=20, show_default=True, help="CIFAR-family depth to train.")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the recipe's 20 on digits)."
)
@click.option("--calib-images", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars (none are drawn when stderr is not a terminal).")
@click.option("--overwrite", is_flag=True, help="Use an --out directory that holds files a demo did not write.")
@json_option
def demo(
    out_dir: str, depth: int, epochs: int | None, calib_images: int, no_progress: bool, overwrite: bool, as_json: bool
) -> None:
    """Run the pipeline end to end on the embedded digits: train, export, INT8, FP16, engines,
    validate, benchmark."""
    from resnet_deploy.engine.progress import draws_bars
    from resnet_deploy.pipeline.demo import check_demo_depth, run_demo

    out = Reporter(as_json)
    try:
        check_demo_depth(depth)
    except UnknownModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--depth") from None
    threads = os.cpu_count() or 1
    start = time.perf_counter()
    result = run_demo(
        out,
        Path(out_dir),
        depth=depth,
        epochs=epochs,
        calib_images=calib_images,
        threads=threads,
        overwrite=overwrite,
        progress=draws_bars(not no_progress),  # only on a terminal: in a log file bars are kilobytes of escape codes
    )
    seconds = time.perf_counter() - start
    out.say("files:")
    for line in result.files:
        out.say(f"  {line}")
    out.say(f"demo finished in {seconds:.0f} s; artifacts and validation.md in {result.directory}/")
    out.result(result.to_dict(seconds))
