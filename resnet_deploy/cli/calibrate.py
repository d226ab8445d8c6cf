"""``resnet-deploy calibrate``: INT8 Q/DQ ONNX for TensorRT (symmetric s8) or ONNX Runtime CPU (u8s8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.budget_options import budget_from, budget_options
from resnet_deploy.cli.options import FiniteFloat, json_option, overwrite_option
from resnet_deploy.cli.output import Reporter, human_bytes


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option(
    "--target",
    type=click.Choice(["tensorrt", "cpu"]),
    default="tensorrt",
    show_default=True,
    help="tensorrt: symmetric int8 Q/DQ placed for TensorRT (also TensorRT-RTX, ONNX Runtime); "
    "cpu: ONNX Runtime's fast uint8-activation form.",
)
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]), default="entropy", show_default=True)
@click.option(
    "--percentile",
    type=FiniteFloat(min=50, max=100),
    default=99.99,
    show_default=True,
    help="For --method percentile (50..100).",
)
@click.option("--data", default=None, help="Calibration dataset spec (default: the model's training dataset).")
@click.option(
    "--calib-images", type=click.IntRange(min=1), default=512, show_default=True, help="Images to calibrate on."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default="calibration",
    show_default=True,
    help="Content-addressed calibration cache (ranges JSON + TensorRT calibration cache).",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the calibration cache.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Default: MODEL.int8.onnx (MODEL.cpu.int8.onnx for --target cpu).",
)
@budget_options
@overwrite_option
@json_option
def calibrate(
    model_path: str,
    target: str,
    method: str,
    percentile: float,
    data: str | None,
    calib_images: int,
    cache_dir: str,
    no_cache: bool,
    output: str | None,
    overwrite: bool,
    as_json: bool,
    **budget_flags: Any,
) -> None:
    """Calibrate an FP32 model and write its INT8 Q/DQ ONNX.

    MODEL is an ONNX from `export`, or a checkpoint: it is then exported (and verified) to
    MODEL.onnx beside the output first.

    With --max-top1-drop the top-1 drop is measured on held-out test images and, while it is over
    the budget, the most sensitive remaining layer is kept out of INT8 (see `sensitivity`); the
    layers kept out are recorded in the model's metadata.

    \b
    Examples:
      resnet-deploy calibrate resnet20.onnx                       # digits, entropy, TensorRT placement
      resnet-deploy calibrate r50.onnx --data imagefolder:/data/imagenet --calib-images 512
      resnet-deploy calibrate r50.onnx --target cpu -o r50.cpu.int8.onnx
      resnet-deploy calibrate runs/resnet20/model.pt               # exports runs/resnet20/model.onnx first
      resnet-deploy calibrate r50.onnx --data imagefolder:/data/imagenet --max-top1-drop 0.5 --try-methods
    """
    from resnet_deploy.files.output_plan import OutputPlan
    from resnet_deploy.files.provenance import onnx_twin_of
    from resnet_deploy.pipeline import onnx_from_model_arg, plan_model_export

    out = Reporter(as_json)
    budget = budget_from(budget_flags)
    if budget is not None and target != "tensorrt":
        raise click.UsageError(
            "--max-top1-drop chooses layers of the TensorRT placement: use it with --target tensorrt"
        )
    if not Path(model_path).is_file():
        raise click.BadParameter(f"{model_path} not found", param_hint="MODEL")
    suffix = ".int8.onnx" if target == "tensorrt" else ".cpu.int8.onnx"
    output = output or str(Path(model_path).with_suffix("")) + suffix
    if not output.endswith(".onnx"):
        raise click.BadParameter(f"the INT8 model is an ONNX file: end it in .onnx, not {output}", param_hint="-o")
    # every path is planned before an export and minutes of calibration
    plan = OutputPlan("calibrate", overwrite=overwrite)
    plan.read(model_path, "model")
    onnx_path = Path(model_path)
    reuse = False
    if onnx_path.suffix != ".onnx":
        onnx_path = Path(output).with_name(Path(model_path).stem + ".onnx")
        reuse = plan_model_export(plan, model_path, onnx_path)
    quantization = "qdq-tensorrt" if target == "tensorrt" else "qdq-onnxruntime-cpu"
    from resnet_deploy.quantize.budget import int8_twin_settings
    from resnet_deploy.quantize.options import CalibrationOptions

    options = CalibrationOptions(
        method=method, percentile=percentile, data=data, count=calib_images, cache_dir=None if no_cache else cache_dir
    )
    settings = int8_twin_settings(options, budget)
    plan.write(output, "INT8 ONNX", ours=onnx_twin_of(onnx_path, "int8", quantization, settings))
    plan.check()
    for note in plan.notes():
        out.say(note)
    if data:
        from resnet_deploy.data.spec import check_spec  # imports torch

        check_spec(data)
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    onnx_path = onnx_from_model_arg(out, model_path, onnx_path, reuse)
    result = calibrate_onnx(onnx_path, output, options, target=target, budget=budget, warn=out.warn, say=out.say)
    how = "from cache" if result.cache_hit else f"in {result.calibrate_seconds:.1f} s"
    out.say(
        f"calibrated {result.images} images of {result.dataset} ({result.method}, {how}; id {result.calibration_id})"
    )
    placed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result.placement.items())
    out.say(
        f"wrote {result.path} ({human_bytes(result.path.stat().st_size)}, target {result.target}"
        + (f": {placed}" if placed else "")
        + f") in {result.total_seconds:.1f} s"
    )
    if result.budget:
        from resnet_deploy.quantize.budget import summary_line

        out.say(summary_line(result.budget))
    for path in result.cache_files:
        out.say(f"cache: {path}")
    out.result({"ok": True, **result.to_dict()})
