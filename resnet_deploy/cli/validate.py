"""``resnet-deploy validate``: top-1/top-5 error of every artifact against a reference, or against the
labels alone (``ValidateJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import FiniteFloat, data_option, execute, output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.errors import AccuracyGateError
from resnet_deploy.evaluate.paired_stats import GATES
from resnet_deploy.pipeline import ValidateJob
from resnet_deploy.runtime.load import ONNX_BACKENDS

DEFAULTS = ValidateJob()


@click.command("validate")
@click.option(
    "--checkpoint",
    "--reference",
    "checkpoint",
    default=None,
    type=click.Path(dir_okay=False),
    help="The reference every artifact is compared with: the original checkpoint, or any artifact (an ONNX of "
    "any precision, a TensorRT engine).",
)
@click.option(
    "--labels-only",
    is_flag=True,
    help="No reference: score each artifact against the labels alone (top-1 and top-5 error with exact 95% "
    "intervals, no changes). The images are --data's, else those of the dataset the artifacts record.",
)
@click.option("--artifacts", "artifacts_flag", is_flag=True, help="Marks the start of the artifact list (optional).")
@click.argument("paths", metavar="ARTIFACTS", nargs=-1, type=click.Path(dir_okay=False))
@data_option(
    "Labelled dataset spec (default: the dataset the reference records, or with --labels-only the one the "
    "artifacts record; test split)."
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Validate on the first N test images only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True)
@click.option(
    "--max-top1-drop",
    type=FiniteFloat(min=0),
    default=None,
    help="Fail (exit 4) when an artifact's top-1 error rises more than this (pp), or it could not be validated "
    "here. Gates on the point estimate unless --gate-on upper-bound. Needs a reference (not --labels-only).",
)
@click.option(
    "--gate-on",
    type=click.Choice(GATES),
    default=None,
    help="What --max-top1-drop is compared with: the point estimate of each top-1 change (default), or the upper "
    "bound of its 95% interval (passes only a change these images show is within budget).",
)
@click.option(
    "--backend",
    type=click.Choice(ONNX_BACKENDS),
    default=DEFAULTS.backend,
    show_default=True,
    help="Runtime of .onnx artifacts: auto runs each on OpenVINO unless ONNX Runtime is faster here (timed at "
    "load; ONNX Runtime when OpenVINO is not installed). The table's backend column says which ran.",
)
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write a Markdown report.")
@output_options(None)
def validate_command(
    artifacts_flag: bool, paths: tuple[str, ...], dry_run: bool, as_json: bool, **options: Any
) -> None:
    """Run a reference and every artifact on the same labelled images; print one table.

    The reference (--checkpoint, alias --reference) is the original checkpoint or any artifact: an
    ONNX of any precision, or an engine. With no artifacts, it is scored alone.

    Each artifact's top-1 change against the reference comes with its 95% interval, the images it got
    wrong where the reference was right and the reverse (worse/better), and whether the change is
    significant.

    With --labels-only there is no reference: each artifact gets its top-1 and top-5 error with exact
    (Clopper-Pearson) 95% intervals, and nothing is compared or gated.

    Test images that do not decode are scored by none of them and named in a warning; without an
    NVIDIA GPU, TensorRT engines are skipped with a warning and the other artifacts still scored.

    \b
    Examples:
      resnet-deploy validate --checkpoint runs/r20/model.pt --artifacts r20.onnx r20.int8.onnx r20.fp16.onnx
      resnet-deploy validate --reference r20.int8.onnx r20.int8.engine --limit 1000
      resnet-deploy validate --labels-only r50.int8.onnx --data imagefolder:/data/imagenet
      resnet-deploy validate --checkpoint r50.pth r50.int8.onnx --data imagefolder:/data/imagenet \\
          --max-top1-drop 0.5 --gate-on upper-bound --report validation.md
    """
    out = Reporter(as_json)
    try:
        report = execute(ValidateJob(artifacts=paths, **options), out, dry_run)
    except AccuracyGateError as exc:  # the table is out; the JSON too, then the gate's one line
        if exc.report is not None:
            out.result({"ok": True, **exc.report.to_dict()})  # type: ignore[attr-defined]
        raise
    if report is not None:
        out.result({"ok": True, **report.to_dict()})
