"""``resnet-deploy classify``: a model's top-k classes for every frame of a camera, a video or a stream,
or for every image of a folder (``ClassifyJob``)."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from resnet_deploy.cli.options import output_options
from resnet_deploy.cli.output import Reporter
from resnet_deploy.edge.stream import FrameResult
from resnet_deploy.errors import RunnerError
from resnet_deploy.pipeline import ClassifyJob, Plan, plan, run
from resnet_deploy.pipeline.classify import ClassifyInterrupted, ClassifyReport
from resnet_deploy.runtime.load import ONNX_BACKENDS

DEFAULTS = ClassifyJob()
NAME_WIDTH = 32  # the image column of the table, at least


class Table:
    """Image results as rows: the file, its top-1 class and score, then the rest of its top-k."""

    def __init__(self, topk: int) -> None:
        self.topk = topk
        self.started = False

    def __call__(self, result: FrameResult) -> None:
        if not self.started:
            self.started = True
            click.echo(
                f"{'image':<{NAME_WIDTH}}  {'top-1':<16} {'score':>6}" + ("  next best" if self.topk > 1 else "")
            )
        best, rest = result.top[0], result.top[1:]
        name = result.name or str(result.index)
        others = ", ".join(f"{p.label} {p.score:.1%}" for p in rest)
        click.echo(f"{name:<{NAME_WIDTH}}  {best.label:<16} {best.score:>6.1%}" + (f"  {others}" if others else ""))


def json_line(result: FrameResult) -> None:
    click.echo(json.dumps(result.to_dict()))


@click.command("classify")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("source")
@click.option("--topk", type=click.IntRange(min=1), default=DEFAULTS.topk, show_default=True, help="Classes per frame.")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=DEFAULTS.batch,
    show_default=True,
    help="Frames per inference. A live source's batch holds the frames that came during the last one (up to this).",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=DEFAULTS.every,
    show_default=True,
    help="Classify every N-th frame (or image) only; the others are passed over without being decoded in full.",
)
@click.option(
    "--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames are classified."
)
@click.option(
    "--reconnects",
    type=click.IntRange(min=0),
    default=DEFAULTS.reconnects,
    show_default=True,
    help="Times a live source that drops (a camera, a stream) is opened again, with a growing pause, before the "
    "run ends; every frame read resets the count.",
)
@click.option(
    "--backend",
    type=click.Choice(ONNX_BACKENDS),
    default=DEFAULTS.backend,
    show_default=True,
    help="Runtime of an .onnx model: auto runs it on OpenVINO unless ONNX Runtime is faster here (timed at load).",
)
@output_options(
    "Also write the classified frames as a video (.mp4, .mkv or .avi), each with its top-1 label and score drawn; "
    "kept when Ctrl-C ends the run, never left half-written."
)
def classify_command(model: str, source: str, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Classify every frame of a camera, a video or a stream, or every image of a folder.

    SOURCE is an image, a folder of images, a video file, a camera (0, /dev/video0), an rtsp:// or
    http:// URL, or a GStreamer pipeline (text with "!", ending in appsink: a Jetson's CSI camera).
    Videos, cameras and streams need OpenCV (pip install "resnet-deploy[video]"; on a Jetson,
    JetPack's own).

    Frames are decoded on one thread and the next batch prepared while the current one infers. A
    video file is classified whole; a live source (a camera, a stream) keeps only the newest frames
    when inference is slower, and counts the others as dropped.

    Output: one JSON line per frame (per image too with --json): index, timestamp, top-k labels and
    scores, latency; a table for images. Then a summary (on stderr under JSON lines): frames/s,
    latency percentiles, frames skipped, dropped or not decoded. Ctrl-C ends it cleanly (exit 130).

    \b
    Examples:
      resnet-deploy classify model.onnx photos/
      resnet-deploy classify model.onnx video.mp4 --output labelled.mp4
      resnet-deploy classify model.int8.engine /dev/video0 --topk 3
      resnet-deploy classify model.onnx rtsp://192.168.1.20:554/stream1 --every 5 --max-frames 1000
    """
    job = ClassifyJob(model=model, source=source, **options)
    lines = as_json or not job.source_spec().is_images  # JSON lines on stdout; the words then go to stderr
    out = Reporter(lines)
    planned = plan(dataclasses.replace(job, on_result=json_line if lines else Table(job.topk)))
    if dry_run:
        return _describe(planned, out, as_json)
    try:
        report = run(planned, out)
    except ClassifyInterrupted as exc:  # the summary is out, the labelled video so far kept
        _finish(exc.report, job, as_json, interrupted=True)
        kept = f"; {exc.report.output} holds the frames classified so far" if exc.report.output else ""
        click.echo(f"{'terminated' if exc.terminated else 'interrupted'}{kept}", err=True)
        sys.exit(exc.exit_code)
    _finish(report, job, as_json)


def _describe(planned: Plan[ClassifyReport], out: Reporter, as_json: bool) -> None:
    """--dry-run: the plan in words, and as one JSON line with --json."""
    for line in planned.describe():
        out.say(line)
    if as_json:
        click.echo(json.dumps({"ok": True, "dry_run": True, **planned.to_dict()}))


def _finish(report: ClassifyReport, job: ClassifyJob, as_json: bool, interrupted: bool = False) -> None:
    """The last JSON line (with --json), or the one error line when a live source was lost."""
    if report.summary.ended == "lost":
        raise RunnerError(
            f"{report.summary.source} dropped and did not come back after {job.reconnects} reconnect "
            "tries; check the camera or the stream, or raise `reconnects`",
            field="reconnects",
        )
    if as_json:
        click.echo(json.dumps({"ok": True, "interrupted": interrupted, **report.to_dict()}))
