"""``resnet-deploy convert --fp16``: an FP16 twin of an exported ONNX, float32 I/O, verified."""

from __future__ import annotations

from pathlib import Path

import click

from resnet_deploy.cli.options import json_option, overwrite_option
from resnet_deploy.cli.output import Reporter, human_bytes


@click.command()
@click.argument("onnx_path", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option("--fp16", is_flag=True, help="Convert weights and activations to float16 (float32 inputs/outputs).")
@click.option("--keep-fp32", multiple=True, help="Op type to keep in float32 besides the converter's defaults.")
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime FP16 vs FP32 check.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Default: MODEL.fp16.onnx.")
@overwrite_option
@json_option
def convert(
    onnx_path: str,
    fp16: bool,
    keep_fp32: tuple[str, ...],
    no_verify: bool,
    output: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Convert an exported FP32 ONNX to another precision (today: --fp16).

    \b
    Example:
      resnet-deploy convert resnet20.onnx --fp16            # -> resnet20.fp16.onnx
    """
    from resnet_deploy.files.output_plan import OutputPlan
    from resnet_deploy.files.provenance import onnx_twin_of

    out = Reporter(as_json)
    if not fp16:
        raise click.UsageError("choose a precision: --fp16 (INT8 is `resnet-deploy calibrate`)")
    if not Path(onnx_path).is_file():
        raise click.BadParameter(f"{onnx_path} not found", param_hint="MODEL.onnx")
    output = output or str(Path(onnx_path).with_suffix("")) + ".fp16.onnx"
    if not output.endswith(".onnx"):
        raise click.BadParameter(f"the FP16 model is an ONNX file: end it in .onnx, not {output}", param_hint="-o")
    plan = OutputPlan("convert", overwrite=overwrite)
    plan.read(onnx_path, "input ONNX")
    plan.write(output, "FP16 ONNX", ours=onnx_twin_of(Path(onnx_path), "fp16"))
    plan.check()
    for note in plan.notes():
        out.say(note)
    from resnet_deploy.convert.fp16 import convert_to_fp16

    result = convert_to_fp16(onnx_path, output, keep_fp32=keep_fp32, verify=not no_verify)
    out.say(f"wrote {result.path} ({human_bytes(result.path.stat().st_size)}) in {result.seconds:.1f} s")
    if not no_verify:
        out.say(
            f"verified against FP32 in ONNX Runtime: max |err| {result.max_abs_error:.2e} "
            f"(allowed {result.allowed:.1e}), top-1 agreement {result.top1_agreement:.0%}"
        )
    out.result({"ok": True, **result.to_dict()})
