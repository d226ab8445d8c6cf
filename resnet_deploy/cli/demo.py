"""``resnet-deploy demo``: the main job end to end on the embedded default, offline.

Today: train a CIFAR-style ResNet on the embedded digits with the paper's recipe, export the trained
checkpoint to ONNX and verify it in ONNX Runtime. INT8, engines, validation and benchmarks join as
those stages land.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.export import run_export
from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.cli.train import describe_epoch


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
@click.option("--epochs", type=int, default=None, help="Training epochs (default: the recipe's 20 on digits).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@json_option
def demo(out_dir: str, depth: int, epochs: int | None, no_progress: bool, as_json: bool) -> None:
    """Run the pipeline end to end on the embedded digits: train, export, verify."""
    from resnet_deploy.training.run_state import STATE_FILE
    from resnet_deploy.training.trainer import Trainer, TrainOptions

    out = Reporter(as_json)
    directory = Path(out_dir)
    run_dir = directory / "train"
    if (run_dir / STATE_FILE).exists():
        shutil.rmtree(run_dir)  # the demo always starts fresh; use `train` for runs you keep
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    out.say(f"== 1. train resnet{depth} on the embedded digits")
    trainer = Trainer(
        TrainOptions(depth=depth, data="digits", epochs=epochs),
        run_dir,
        on_info=out.say,
        on_epoch=lambda row: out.say(describe_epoch(row, trainer.plan.epochs if trainer.plan else 0)),
        progress=not no_progress,
    )
    trained = trainer.run()
    final = trained.final

    out.say("== 2. export to ONNX and verify against PyTorch")
    exported = run_export(
        out,
        str(trained.checkpoint),
        str(directory / f"{trained.config.name}.onnx"),
        opset=None,
        static_batch=None,
        simplify=False,
        verify=True,
        tolerance=None,
    )
    total = time.perf_counter() - start
    rows: list[dict[str, Any]] = [
        {
            "artifact": "PyTorch checkpoint",
            "path": str(trained.checkpoint),
            "test_top1_error": final["test_top1_error"],
            "test_top5_error": final["test_top5_error"],
            "max_abs_error": None,
        },
        {
            "artifact": "ONNX FP32",
            "path": str(exported.path),
            "test_top1_error": None,
            "test_top5_error": None,
            "max_abs_error": exported.verification.max_abs_error,
        },
    ]
    out.say("")
    out.say(f"{'artifact':<20} {'top-1 err':>9} {'top-5 err':>9} {'max |err|':>10}  path")
    for row in rows:
        t1 = f"{row['test_top1_error']:.2f}%" if row["test_top1_error"] is not None else "-"
        t5 = f"{row['test_top5_error']:.2f}%" if row["test_top5_error"] is not None else "-"
        err = f"{row['max_abs_error']:.1e}" if row["max_abs_error"] is not None else "-"
        out.say(f"{row['artifact']:<20} {t1:>9} {t5:>9} {err:>10}  {row['path']}")
    out.say(f"demo finished in {total:.0f} s; artifacts in {directory}/")
    out.result(
        {
            "ok": True,
            "model": trained.config.name,
            "epochs": trained.epochs,
            "artifacts": rows,
            "out_dir": str(directory),
            "train_seconds": round(trained.seconds, 2),
            "seconds": round(total, 2),
        }
    )
