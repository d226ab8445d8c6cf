"""``resnet-deploy demo``: the main job end to end on the embedded default, offline.

Today: train a CIFAR-style ResNet on the embedded digits with the paper's recipe, export the trained
checkpoint to ONNX (verified against PyTorch), calibrate INT8 for TensorRT and for the CPU, convert
to FP16, and validate every artifact against the original on the digits test split. Engines and
benchmarks join as those stages land.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from pathlib import Path

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
@click.option("--calib-images", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@json_option
def demo(out_dir: str, depth: int, epochs: int | None, calib_images: int, no_progress: bool, as_json: bool) -> None:
    """Run the pipeline end to end on the embedded digits: train, export, INT8, FP16, validate."""
    from resnet_deploy.fp16 import convert_to_fp16
    from resnet_deploy.quantize.calibrate import calibrate_onnx
    from resnet_deploy.runtime import open_backend
    from resnet_deploy.training.run_state import STATE_FILE
    from resnet_deploy.training.trainer import Trainer, TrainOptions
    from resnet_deploy.validate import validate

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
    onnx_path = exported.path
    stem = str(onnx_path.with_suffix(""))

    out.say("== 3. calibrate INT8 (TensorRT Q/DQ placement, and ONNX Runtime's CPU form)")
    artifacts = [onnx_path]
    for target, suffix in (("tensorrt", ".int8.onnx"), ("cpu", ".cpu.int8.onnx")):
        q = calibrate_onnx(
            onnx_path,
            stem + suffix,
            target=target,
            count=calib_images,
            cache_dir=directory / "calibration",
            warn=out.warn,
        )
        out.say(f"{target}: {q.path} ({q.method}, {q.images} images, {q.calibrate_seconds:.1f} s)")
        artifacts.append(q.path)

    out.say("== 4. convert to FP16 (float32 I/O), verify against FP32")
    half = convert_to_fp16(onnx_path, stem + ".fp16.onnx")
    out.say(f"{half.path}: max |err| {half.max_abs_error:.1e} vs FP32, top-1 agreement {half.top1_agreement:.0%}")
    artifacts.append(half.path)

    out.say("== 5. validate every artifact against the original on the digits test split")
    with ExitStack() as stack:
        reference = stack.enter_context(open_backend(trained.checkpoint))
        opened = [stack.enter_context(open_backend(path)) for path in artifacts]
        report = validate(reference, opened)
    (directory / "validation.md").write_text(report.markdown())
    out.say(report.table())
    total = time.perf_counter() - start
    out.say(f"demo finished in {total:.0f} s; artifacts and validation.md in {directory}/")
    out.result(
        {
            "ok": True,
            "model": trained.config.name,
            "epochs": trained.epochs,
            "checkpoint": str(trained.checkpoint),
            "validation": report.to_dict(),
            "out_dir": str(directory),
            "train_seconds": round(trained.seconds, 2),
            "seconds": round(total, 2),
        }
    )
