"""``resnet-deploy convert --fp16``: an FP16 twin of an exported ONNX, float32 I/O, verified; ``--frame-size WxH``:
the model's preprocessing inside its graph, for raw uint8 frames (``ConvertJob``)."""

from __future__ import annotations

import click

from resnet_deploy.cli.options import execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import ConvertJob


def check_conversion(fp16: bool, frame_size: str | None, output: str | None) -> tuple[int, int] | None:
    """Usage errors of the flags together; the frame size asked for, as (width, height)."""
    if not fp16 and frame_size is None:
        raise click.UsageError(
            "choose a conversion: --fp16 (INT8 is `resnet-deploy calibrate`), or --frame-size WxH for the "
            "preprocessing inside the graph"
        )
    if frame_size is not None and fp16 and output is not None:
        raise click.UsageError("-o names one file: with --fp16 and --frame-size, let both take their default names")
    return parse_size(frame_size) if frame_size is not None else None


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (width, height), or a usage error naming the flag."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x720", param_hint="--frame-size") from None
    return width, height


@click.command()
@click.argument("onnx", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option("--fp16", is_flag=True, help="Convert weights and activations to float16 (float32 inputs/outputs).")
@click.option("--keep-fp32", multiple=True, help="Op type to keep in float32 besides the converter's defaults.")
@click.option(
    "--frame-size",
    metavar="WxH",
    help="Put the model's preprocessing (resize, crop, scale, normalise) inside its graph: it then takes uint8 "
    "NHWC frames of this size (e.g. 1280x720), computed exactly as on the CPU.",
)
@click.option(
    "--channel-order",
    type=click.Choice(["rgb", "bgr"], case_sensitive=False),
    default="rgb",
    show_default=True,
    help="With --frame-size: the frames' channel order (bgr: as OpenCV decodes).",
)
@click.option(
    "--frame-dtype",
    type=click.Choice(["uint8", "float32"], case_sensitive=False),
    default="uint8",
    show_default=True,
    help="With --frame-size: the frames' type. float32 takes the same pixel values (0-255) as floats, for feeders "
    "that write only float tensors (DeepStream's nvinfer).",
)
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime check against the source model.")
@output_options("Default: MODEL.fp16.onnx, MODEL.framesWxH.onnx.")
def convert(
    onnx: str,
    fp16: bool,
    keep_fp32: tuple[str, ...],
    frame_size: str | None,
    channel_order: str,
    frame_dtype: str,
    no_verify: bool,
    output: str | None,
    overwrite: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Convert an exported FP32 ONNX to another precision (--fp16), or put its preprocessing inside (--frame-size).

    \b
    Examples:
      resnet-deploy convert resnet20.onnx --fp16                        # -> resnet20.fp16.onnx
      resnet-deploy convert r50.int8.onnx --frame-size 1280x720 --channel-order bgr
                                                                       # -> r50.int8.frames1280x720.onnx
    """
    frames = check_conversion(fp16, frame_size, output)
    out = Reporter(as_json)
    precision = "fp16" if fp16 else None
    job = ConvertJob(
        onnx, precision, output, keep_fp32, not no_verify, overwrite, frames, channel_order.upper(), frame_dtype.lower()
    )
    result = execute(job, out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
