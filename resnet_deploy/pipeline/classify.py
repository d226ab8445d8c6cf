"""``ClassifyJob``: a model's top-k classes for every frame of a camera, a video file or a stream, or for
every image of a folder, as they come; the frames, labelled, written as a video on request.

    from resnet_deploy.pipeline import ClassifyJob, plan, run

    report = run(plan(ClassifyJob("r20.onnx", "clip.mp4", output="clip.labelled.mp4")))
    print(report.summary.text())                         # frames/s, latency, what was dropped

Each result goes to ``on_result`` as it comes (the command line prints it). Without ``on_result`` the
report keeps every result (without its frame): for an endless source (a camera) give ``on_result``,
or embed :func:`resnet_deploy.edge.stream.stream` instead. Ctrl-C or SIGTERM ends the loop cleanly:
the labelled video so far is kept, the summary said, and :class:`ClassifyInterrupted` raised with
the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy.edge.annotate import SUFFIXES, AnnotatedVideo
from resnet_deploy.edge.opencv import opencv
from resnet_deploy.edge.sources import Source, SourceSpec, parse_source
from resnet_deploy.edge.stream import FrameResult, check_whole, stream
from resnet_deploy.edge.summary import StreamSummary
from resnet_deploy.errors import RunnerError, Terminated
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, output_path, runnable_model
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last
from resnet_deploy.runtime import Runner


@dataclass(frozen=True)
class ClassifyReport:
    """What a classify run did: its summary, and the results when no ``on_result`` took them."""

    model: str
    backend: str
    summary: StreamSummary
    output: Path | None = None  # the labelled video written
    results: tuple[FrameResult, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "backend": self.backend,
            "summary": self.summary.to_dict(),
            "output": str(self.output) if self.output else None,
        }


class ClassifyInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) ended the loop; the summary was said, the labelled video so far kept."""

    def __init__(self, report: ClassifyReport, terminated: bool = False) -> None:
        super().__init__()
        self.report, self.terminated = report, terminated

    @property
    def exit_code(self) -> int:
        return Terminated.exit_code if self.terminated else 130


@dataclass(frozen=True)
class ClassifyJob(Job[ClassifyReport]):
    """Classify every ``every``-th frame of ``source`` with ``model`` (an engine, an ONNX on ``backend``, a
    checkpoint): its ``topk`` classes, ``batch`` frames per inference, ``max_frames`` results at most.

    ``source``: an image, a folder of images, a video file, a camera (``0``, ``/dev/video0``), an
    ``rtsp://`` or ``http://`` URL, or a GStreamer pipeline. A live source that drops is opened again
    ``reconnects`` times at most. ``output`` (``.mp4``, ``.mkv``, ``.avi``): the classified frames with
    their top-1 label and score drawn, never over an existing file unless ``overwrite``."""

    command = "classify"

    model: str | Path | None = None
    source: str | int | Path | None = None
    topk: int = 5
    batch: int = 1
    every: int = 1
    max_frames: int | None = None
    output: str | Path | None = None
    backend: str = "auto"
    reconnects: int = 3
    overwrite: bool = False
    on_result: Callable[[FrameResult], None] | None = field(default=None, compare=False, repr=False)

    def source_spec(self) -> SourceSpec:
        """What ``source`` names; one line when it names nothing."""
        if self.source is None:
            raise RunnerError(
                "no source to classify: an image, a folder, a video, a camera, a URL or a pipeline", field="source"
            )
        return parse_source(self.source)

    def plan(self) -> Plan[ClassifyReport]:
        model = runnable_model(self.model, self.backend, "to classify with")
        check_whole("topk", self.topk, 1)
        check_whole("batch", self.batch, 1)
        check_whole("every", self.every, 1)
        check_whole("max_frames", self.max_frames, 1, optional=True)
        check_whole("reconnects", self.reconnects, 0)
        spec = self.source_spec()
        output = output_path(self.output, SUFFIXES, "annotated video")
        if output is not None and spec.is_images:
            what = "an image" if spec.kind == "image" else "a folder of images"
            raise RunnerError(
                f"`output` writes the labelled frames of a video, a camera or a stream; {spec.target} is {what}: "
                "leave out `output`",
                field="output",
            )
        if spec.needs_opencv:
            opencv(f"reading {spec.describe()}")
        if output is not None:
            opencv("writing an annotated video")
        step = Classify(
            model,
            spec,
            topk=self.topk,
            batch=self.batch,
            every=self.every,
            max_frames=self.max_frames,
            reconnects=self.reconnects,
            backend=self.backend,
            output=output,
            on_result=self.on_result,
        )
        return checked(self.command, [step], last, overwrite=self.overwrite)


@dataclass(frozen=True)
class Classify(Step):
    """Open the model and the source, classify as the frames come, say the summary."""

    model: Path
    source: SourceSpec
    topk: int = 5
    batch: int = 1
    every: int = 1
    max_frames: int | None = None
    reconnects: int = 3
    backend: str = "auto"
    output: Path | None = None
    on_result: Callable[[FrameResult], None] | None = field(default=None, compare=False, repr=False)

    @property
    def title(self) -> str:
        which = "every frame" if self.every == 1 else f"every {_nth(self.every)} frame"
        what = "every image" if self.source.is_images else which
        limit = f", {self.max_frames} at most" if self.max_frames else ""
        video = f"; the labelled frames to {self.output}" if self.output else ""
        return f"classify {what} of {self.source.describe()} with {self.model.name} (top-{self.topk}){limit}{video}"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.model, "model"), (self.source.path, "source"))

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.output, "annotated video", with_companion=False),) if self.output else ()

    def run(self, out: Messages, earlier: Sequence[Any]) -> ClassifyReport:
        results: list[FrameResult] = []
        interrupted: KeyboardInterrupt | None = None
        video: AnnotatedVideo | None = None
        with Runner.load(self.model, backend=self.backend) as runner:
            described = runner.describe()
            self._say_how_it_runs(described, out)
            frames = stream(
                runner,
                self.source,
                topk=self.topk,
                batch=self.batch,
                every=self.every,
                max_frames=self.max_frames,
                reconnects=self.reconnects,
                out=out,
            )
            try:
                source = frames.open()
                out.say(self._reading(source, described))
                if self.output is not None:
                    fps = source.fps / self.every if source.fps and not source.live else source.fps
                    video = AnnotatedVideo(self.output, fps, timeline=source.live)
                for result in frames:
                    if video is not None:
                        video.write(result)
                    if self.on_result is not None:
                        self.on_result(result)
                    else:
                        results.append(dataclasses.replace(result, frame=None))
            except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: a clean end, the video so far kept
                interrupted = exc
                frames.ended = "interrupted"
            except BaseException:
                if video is not None:
                    video.discard()
                raise
            finally:
                frames.close()
            written = video.commit() if video is not None else None
        summary = frames.summary()
        for line in summary.lines():
            out.say(line)
        if written is not None and video is not None:
            out.say(f"labelled video: {written} ({video.frames} frames classified, {video.written} written)")
        elif self.output is not None:
            out.warn(f"no frame was classified: {self.output} was not written")
        report = ClassifyReport(str(self.model), str(described.get("backend")), summary, written, tuple(results))
        if interrupted is not None:
            raise ClassifyInterrupted(report, terminated=isinstance(interrupted, Terminated)) from None
        if summary.classified == 0 and summary.corrupt and summary.ended == "end":
            if summary.images and summary.frames == 1:
                what = f"{summary.source} is not a readable image"
            else:
                kind = "images" if summary.images else "frames"
                what = f"none of the {summary.frames} {kind} read from {summary.source} decoded"
            raise RunnerError(f"nothing was classified: {what}", field="source")
        return report

    def _say_how_it_runs(self, described: dict[str, Any], out: Messages) -> None:
        if self.backend == "auto" and described.get("chosen_because"):
            out.say(f"{self.model.name}: {described['chosen_because']}")
        for note in described.get("notes", []):
            out.warn(note)

    def _reading(self, source: Source, described: dict[str, Any]) -> str:
        how = f"with {self.model.name} on {described.get('backend')}, batch {self.batch}, top-{self.topk}"
        fps = f", {source.fps:g} fps" if source.fps else ""
        if source.spec.kind == "folder":
            count = len(getattr(source, "paths", ()))
            return f"reading {source.description} ({count} file{'s' if count != 1 else ''}) {how}"
        if source.spec.is_images:
            return f"reading {source.description} {how}"
        if source.live:
            return (
                f"reading {source.description} (live{fps}: while inference is busy the newest frames wait, older "
                f"ones are dropped) {how}"
            )
        frames = getattr(source, "frame_count", None)
        length = f"{frames} frames" if frames else "its frames"
        return f"reading {source.description} ({length}{fps}, every one in order) {how}"


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
