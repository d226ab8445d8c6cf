"""``resnet-deploy demo``: the main job end to end on the embedded default, offline.

Today: build a CIFAR ResNet-20 and an ImageNet ResNet-50, export both, verify both in ONNX Runtime.
Training, INT8, engines, validation and benchmarks join as those stages land.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.export import run_export
from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="demo-out",
    show_default=True,
    help="Directory for every artifact the demo writes.",
)
@click.option(
    "--depth",
    "depths",
    type=int,
    multiple=True,
    default=(20, 50),
    show_default=True,
    help="Models to run through the pipeline (repeatable).",
)
@json_option
def demo(out_dir: str, depths: tuple[int, ...], as_json: bool) -> None:
    """Run the pipeline end to end: build, export, verify (more stages as they land)."""
    out = Reporter(as_json)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for depth in depths:
        out.say(f"== resnet{depth}: build, export, verify")
        result = run_export(
            out,
            None,
            str(directory / f"resnet{depth}.onnx"),
            opset=None,
            static_batch=None,
            simplify=False,
            verify=True,
            tolerance=None,
            depth=depth,
        )
        rows.append(
            {
                "model": result.metadata.config.name,
                "onnx": str(result.path),
                "max_abs_error": result.verification.max_abs_error,
                "top1_agreement": result.verification.top1_agreement,
                "export_seconds": round(result.export_seconds, 2),
            }
        )
    out.say("")
    out.say(f"{'model':<12} {'max |err|':>10} {'top-1 agree':>12} {'export s':>9}  artifact")
    for row in rows:
        out.say(
            f"{row['model']:<12} {row['max_abs_error']:>10.2e} {row['top1_agreement']:>12.0%} "
            f"{row['export_seconds']:>9.1f}  {row['onnx']}"
        )
    total = time.perf_counter() - start
    out.say(f"demo finished in {total:.0f} s; artifacts in {directory}/")
    out.result({"ok": True, "models": rows, "out_dir": str(directory), "seconds": round(total, 2)})
