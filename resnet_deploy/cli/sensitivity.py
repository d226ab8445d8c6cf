"""``resnet-deploy sensitivity``: which layers cost accuracy in INT8, ranked, named for PyTorch and TensorRT."""

from __future__ import annotations

from pathlib import Path

import click

from resnet_deploy.cli.options import FiniteFloat, json_option, overwrite_option
from resnet_deploy.cli.output import Reporter


@click.command()
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option(
    "--data",
    default=None,
    help="Dataset spec (default: the model's): calibration from its training split, scoring on its test split.",
)
@click.option(
    "--images", type=click.IntRange(min=1), default=256, show_default=True, help="Held-out test images to score on."
)
@click.option(
    "--calib-images", type=click.IntRange(min=1), default=512, show_default=True, help="Images to calibrate on."
)
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]), default="entropy", show_default=True)
@click.option(
    "--percentile", type=FiniteFloat(min=50, max=100), default=99.99, show_default=True, help="For --method percentile."
)
@click.option(
    "--keep-out-precision",
    type=click.Choice(["fp16", "fp32"]),
    default="fp16",
    show_default=True,
    help="What a layer left out of INT8 computes in.",
)
@click.option("--top", type=click.IntRange(min=1), default=None, help="Print only the N most sensitive layers.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default="calibration",
    show_default=True,
    help="Calibration cache (shared with `calibrate`).",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the calibration cache.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write the table as Markdown.")
@overwrite_option
@json_option
def sensitivity(
    model_path: str,
    data: str | None,
    images: int,
    calib_images: int,
    method: str,
    percentile: float,
    keep_out_precision: str,
    top: int | None,
    cache_dir: str,
    no_cache: bool,
    report: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Rank every INT8 layer of an FP32 ONNX by the accuracy it costs.

    Each layer the TensorRT placement quantizes is scored twice against the FP32 model on held-out
    test images: quantized alone (everything else FP32), and left out (everything else INT8). The
    table names the ONNX node (TensorRT names engine layers after it) and the PyTorch module, with
    its share of MACs, top-1 agreement and KL; most sensitive first: the order in which
    `calibrate --max-top1-drop` keeps layers out of INT8.

    \b
    Examples:
      resnet-deploy sensitivity resnet20.onnx
      resnet-deploy sensitivity r50.onnx --data imagefolder:/data/imagenet --images 512 --top 10 --json
    """
    from resnet_deploy.files.output_plan import OutputPlan

    out = Reporter(as_json)
    if not Path(model_path).is_file():
        raise click.BadParameter(f"{model_path} not found", param_hint="MODEL.onnx")
    if not model_path.lower().endswith(".onnx"):
        raise click.BadParameter(f"scan the FP32 ONNX from `export`, not {model_path}", param_hint="MODEL.onnx")
    mark = ""
    if report:  # planned before minutes of scoring; a rerun replaces its own report, nothing else
        if not report.lower().endswith((".md", ".markdown")):
            raise click.BadParameter(f"the report is Markdown: end it in .md, not {report}", param_hint="--report")
        from resnet_deploy.files.provenance import inputs_digest, report_mark, report_of

        settings = f"{data}|{images}|{calib_images}|{method}|{percentile}|{keep_out_precision}"
        digest = inputs_digest([model_path], extra=settings)
        mark = report_mark("sensitivity", digest)
        plan = OutputPlan("sensitivity", overwrite=overwrite)
        plan.read(model_path, "model")
        plan.write(report, "report", ours=report_of("sensitivity", digest))
        plan.check()
        for note in plan.notes():
            out.say(note)
    if data:
        from resnet_deploy.data.spec import check_spec  # imports torch

        check_spec(data)
    from resnet_deploy._io import write_bytes_atomic
    from resnet_deploy.quantize.options import CalibrationOptions
    from resnet_deploy.quantize.sensitivity import model_sensitivity

    options = CalibrationOptions(
        method=method, percentile=percentile, data=data, count=calib_images, cache_dir=None if no_cache else cache_dir
    )
    result = model_sensitivity(
        model_path, options, images=images, precision=keep_out_precision, warn=out.warn, say=out.say
    )
    out.say(result.summary())
    out.say(result.table(top=top))
    out.say(f"{result.variants} variants scored in {result.seconds:.1f} s")
    if report:
        text = f"# INT8 sensitivity: {result.model}\n\n{result.summary()}\n\n{result.table(markdown=True)}\n\n{mark}\n"
        out.say(f"report: {write_bytes_atomic(report, text.encode())}")
    out.result({"ok": True, **result.to_dict()})
