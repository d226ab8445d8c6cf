"""``resnet-deploy validate``: top-1/top-5 error of every artifact against the original model."""

from __future__ import annotations

from contextlib import ExitStack

import click

from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter


@click.command()
@click.option(
    "--checkpoint", required=True, type=click.Path(dir_okay=False), help="The original model (the reference)."
)
@click.option("--artifacts", "artifacts_flag", is_flag=True, help="Marks the start of the artifact list (optional).")
@click.argument("artifacts", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--data", default=None, help="Labelled dataset spec (default: the checkpoint's dataset, test split).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Validate on the first N test images only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--max-top1-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="Fail (exit 4) when an artifact loses more (pp).",
)
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write a Markdown report.")
@json_option
def validate(
    checkpoint: str,
    artifacts_flag: bool,
    artifacts: tuple[str, ...],
    data: str | None,
    limit: int | None,
    batch_size: int,
    max_top1_drop: float | None,
    report: str | None,
    as_json: bool,
) -> None:
    """Run the original and every artifact on the same labelled images; print one table.

    \b
    Examples:
      resnet-deploy validate --checkpoint runs/r20/model.pt --artifacts r20.onnx r20.int8.onnx r20.fp16.onnx
      resnet-deploy validate --checkpoint r50.pth r50.int8.onnx --data imagefolder:/data/imagenet \\
          --max-top1-drop 0.5 --report validation.md
    """
    from resnet_deploy._io import check_writable
    from resnet_deploy.runtime import open_backend
    from resnet_deploy.runtime.load import TORCH_SUFFIXES
    from resnet_deploy.validate import check_gate, write_report
    from resnet_deploy.validate import validate as run_validation

    out = Reporter(as_json)
    if not artifacts:
        raise click.UsageError("name at least one artifact to validate, e.g. --artifacts model.onnx")
    if not checkpoint.lower().endswith(TORCH_SUFFIXES):
        raise click.BadParameter(
            f"the reference is the original PyTorch model (.pt/.pth), not {checkpoint}; "
            "pass exported artifacts after the options",
            param_hint="--checkpoint",
        )
    if report:
        check_writable(report)
    with ExitStack() as stack:
        reference = stack.enter_context(open_backend(checkpoint))
        opened = [stack.enter_context(open_backend(path)) for path in artifacts]
        result = run_validation(reference, opened, data=data, limit=limit, batch_size=batch_size)
    out.say(f"{result.images} images of {result.dataset} (test split); {result.machine}")
    out.say(result.table())
    if report:
        out.say(f"report: {write_report(result, report)}")
    out.result({"ok": True, **result.to_dict()})
    check_gate(result, max_top1_drop)
