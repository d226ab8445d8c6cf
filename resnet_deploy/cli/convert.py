"""``resnet-deploy convert --fp16``: an FP16 twin of an exported ONNX, float32 I/O, verified."""

from __future__ import annotations

from pathlib import Path

import click

from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter, human_bytes


@click.command()
@click.argument("onnx_path", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option("--fp16", is_flag=True, help="Convert weights and activations to float16 (float32 inputs/outputs).")
@click.option("--keep-fp32", multiple=True, help="Op type to keep in float32 besides the converter's defaults.")
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime FP16 vs FP32 check.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Default: MODEL.fp16.onnx.")
@json_option
def convert(
    onnx_path: str, fp16: bool, keep_fp32: tuple[str, ...], no_verify: bool, output: str | None, as_json: bool
) -> None:
    """Convert an exported FP32 ONNX to another precision (today: --fp16).

    \b
    Example:
      resnet-deploy convert resnet20.onnx --fp16            # -> resnet20.fp16.onnx
    """
    from resnet_deploy.fp16 import convert_to_fp16

    out = Reporter(as_json)
    if not fp16:
        raise click.UsageError("choose a precision: --fp16 (INT8 is `resnet-deploy calibrate`)")
    output = output or str(Path(onnx_path).with_suffix("")) + ".fp16.onnx"
    result = convert_to_fp16(onnx_path, output, keep_fp32=keep_fp32, verify=not no_verify)
    out.say(f"wrote {result.path} ({human_bytes(result.path.stat().st_size)}) in {result.seconds:.1f} s")
    if not no_verify:
        out.say(
            f"verified against FP32 in ONNX Runtime: max |err| {result.max_abs_error:.2e} "
            f"(allowed {result.allowed:.1e}), top-1 agreement {result.top1_agreement:.0%}"
        )
    out.result({"ok": True, **result.to_dict()})
