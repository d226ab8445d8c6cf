"""``resnet-deploy validate``: top-1/top-5 error of every artifact against the original model."""

from __future__ import annotations

from contextlib import ExitStack

import click
from click.core import ParameterSource

from resnet_deploy.cli.options import FiniteFloat, json_option, overwrite_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.evaluate.paired_stats import GATES


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
    type=FiniteFloat(min=0),
    default=None,
    help="Fail (exit 4) when an artifact's top-1 error rises more than this (pp), or it could not be validated "
    "here. Gates on the point estimate unless --gate-on upper-bound.",
)
@click.option(
    "--gate-on",
    type=click.Choice(GATES),
    default="estimate",
    show_default=True,
    help="What --max-top1-drop is compared with: the point estimate of each top-1 change, or the upper bound "
    "of its 95% interval (passes only a change these images show is within budget).",
)
@click.option(
    "--backend",
    type=click.Choice(("auto", "onnxruntime", "openvino")),
    default="auto",
    show_default=True,
    help="Runtime of .onnx artifacts: auto runs each on OpenVINO unless ONNX Runtime is faster here (timed at "
    "load; ONNX Runtime when OpenVINO is not installed). The table's backend column says which ran.",
)
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write a Markdown report.")
@overwrite_option
@json_option
def validate_command(
    checkpoint: str,
    artifacts_flag: bool,
    artifacts: tuple[str, ...],
    data: str | None,
    limit: int | None,
    batch_size: int,
    max_top1_drop: float | None,
    gate_on: str,
    backend: str,
    report: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Run the original and every artifact on the same labelled images; print one table.

    Each artifact's top-1 change comes with its 95% interval, the images it got wrong where the
    original was right and the reverse (worse/better), and whether the change is significant.

    Test images that do not decode are scored by none of them and named in a warning; without an
    NVIDIA GPU, TensorRT engines are skipped with a warning and the other artifacts still scored.

    \b
    Examples:
      resnet-deploy validate --checkpoint runs/r20/model.pt --artifacts r20.onnx r20.int8.onnx r20.fp16.onnx
      resnet-deploy validate --checkpoint r50.pth r50.int8.onnx --data imagefolder:/data/imagenet \\
          --max-top1-drop 0.5 --gate-on upper-bound --report validation.md
    """
    from resnet_deploy.evaluate.validate import check_gate, open_artifacts, validate, write_report
    from resnet_deploy.files.output_plan import OutputPlan
    from resnet_deploy.files.provenance import inputs_digest, report_mark, report_of
    from resnet_deploy.runtime import open_backend
    from resnet_deploy.runtime.load import TORCH_SUFFIXES

    out = Reporter(as_json)
    if not artifacts:
        raise click.UsageError("name at least one artifact to validate, e.g. --artifacts model.onnx")
    if not checkpoint.lower().endswith(TORCH_SUFFIXES):
        raise click.BadParameter(
            f"the reference is the original PyTorch model (.pt/.pth), not {checkpoint}; "
            "pass exported artifacts after the options",
            param_hint="--checkpoint",
        )
    if max_top1_drop is None and _given("gate_on"):
        raise click.UsageError("--gate-on chooses what --max-top1-drop is compared with: give --max-top1-drop too")
    mark = ""
    if report:  # never over the checkpoint, an artifact or their sidecars; planned before minutes of scoring
        if not report.lower().endswith((".md", ".markdown", ".txt")):
            raise click.BadParameter(f"the report is Markdown: end it in .md, not {report}", param_hint="--report")
        digest = inputs_digest([checkpoint, *artifacts], extra=f"{data}|{limit}")
        mark = report_mark("validate", digest)
        plan = OutputPlan("validate", overwrite=overwrite)
        plan.read(checkpoint, "reference checkpoint")
        plan.read_all(artifacts, "artifact")
        plan.write(report, "report", ours=report_of("validate", digest))
        plan.check()
        for note in plan.notes():
            out.say(note)
    with ExitStack() as stack:
        reference = stack.enter_context(open_backend(checkpoint))
        opened, skipped = open_artifacts(artifacts, stack, backend=backend)
        for artifact in opened:
            if backend == "auto" and artifact.chosen_because:
                out.say(f"{artifact.path.name}: {artifact.chosen_because}")
            for note in artifact.notes:
                out.warn(note)
        for item in skipped:  # now, not after minutes of scoring the rest
            out.warn(f"not validating {item.artifact}: {item.reason}")
        result = validate(reference, opened, data=data, limit=limit, batch_size=batch_size, skipped_artifacts=skipped)
    out.say(f"{result.images} images of {result.dataset} (test split); {result.machine}")
    out.say(result.table(notes=False))  # what was left out goes out as warnings instead
    images_note = result.skipped_images_note()
    if images_note:
        out.warn(images_note)
    if report:
        out.say(f"report: {write_report(result, report, mark)}")
    out.result({"ok": True, **result.to_dict()})
    check_gate(result, max_top1_drop, gate=gate_on)


def _given(name: str) -> bool:
    """Whether the option was given on the command line (a default gates nothing)."""
    return click.get_current_context().get_parameter_source(name) is not ParameterSource.DEFAULT
