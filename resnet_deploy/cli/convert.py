"""``resnet-deploy convert --fp16``: an FP16 twin of an exported ONNX, float32 I/O, verified (``ConvertJob``)."""

from __future__ import annotations

import click

from resnet_deploy.cli.options import execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import ConvertJob


@click.command()
@click.argument("onnx", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option("--fp16", is_flag=True, help="Convert weights and activations to float16 (float32 inputs/outputs).")
@click.option("--keep-fp32", multiple=True, help="Op type to keep in float32 besides the converter's defaults.")
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime FP16 vs FP32 check.")
@output_options("Default: MODEL.fp16.onnx.")
def convert(
    onnx: str,
    fp16: bool,
    keep_fp32: tuple[str, ...],
    no_verify: bool,
    output: str | None,
    overwrite: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Convert an exported FP32 ONNX to another precision (--fp16).

    \b
    Example:
      resnet-deploy convert resnet20.onnx --fp16            # -> resnet20.fp16.onnx
    """
    if not fp16:
        raise click.UsageError("choose a precision: --fp16 (INT8 is `resnet-deploy calibrate`)")
    out = Reporter(as_json)
    job = ConvertJob(onnx, output=output, keep_fp32=keep_fp32, verify=not no_verify, overwrite=overwrite)
    result = execute(job, out, dry_run)
    if result is not None:
        out.result({"ok": True, **result.to_dict()})
