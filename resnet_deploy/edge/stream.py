"""The edge loop: frames classified as they arrive, decoding and preparation hidden behind inference.

    from resnet_deploy.edge.stream import stream

    with Runner.load("model.int8.engine") as runner, stream(runner, "/dev/video0", topk=3) as frames:
        for result in frames:                     # in source order
            print(result.index, result.top[0].label, f"{result.top[0].score:.0%}", result.latency_ms)
    print(frames.summary().text())

Three threads: a reader decodes frames from the source into a small buffer; a batcher takes the next
batch from it and runs ``runner.preprocess`` on it (resize and normalise, or nothing for a model with
its preprocessing inside) while the current batch infers; inference and the results run in the
thread that iterates. A video file is processed whole: the reader waits for room. A live source (a
camera, a stream) never waits: the buffer keeps the newest frames and the older ones are dropped
(counted), so a result is never further behind the camera than one batch being inferred and one
being prepared. Ending the loop early (``break``, ``close()``, leaving the ``with`` block, an
exception, Ctrl-C) stops the threads, joins them and releases the camera.

``runner`` is anything with ``preprocess(images, channel_order=)``, ``infer(batch)`` and
``predictions(logits, topk)``: a :class:`~resnet_deploy.runtime.Runner`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from resnet_deploy.edge.buffer import END, Failed, FrameBuffer, Handoff, Prepared
from resnet_deploy.edge.sources import CaptureFactory, Source, SourceSpec, open_source
from resnet_deploy.edge.summary import StreamSummary
from resnet_deploy.errors import RunnerError
from resnet_deploy.messages import SILENT, Messages

JOIN_SECONDS = 5.0  # how long close() waits for a thread (a capture's read can block up to its timeout)


class Ranked(Protocol):
    index: int
    label: str
    score: float


class Classifier(Protocol):
    """What the loop needs of a runner."""

    def preprocess(self, images: Any, channel_order: str = "RGB") -> Any: ...

    def infer(self, batch: Any) -> Any: ...

    def predictions(self, logits: Any, topk: int = 5) -> Any: ...


@dataclass(frozen=True)
class FrameResult:
    """One classified frame or image."""

    index: int  # its place in the source (frame number; image number in a folder)
    timestamp: float | None  # a video's media time, a live frame's wall-clock time (s); None for an image
    top: list[Any]  # the top-k classes, best first: Prediction (index, label, score)
    latency_ms: float  # from the frame being read to this result
    name: str | None = None  # the image file
    frame: Any = field(default=None, repr=False, compare=False)  # the BGR frame classified

    def to_dict(self) -> dict[str, Any]:
        """One JSON line's worth: index, timestamp, (file,) top-k labels and scores, latency."""
        when = None if self.timestamp is None else round(self.timestamp, 6)
        line: dict[str, Any] = {"index": self.index, "timestamp": when}
        if self.name is not None:
            line["file"] = self.name
        line["top"] = [{"index": p.index, "label": p.label, "score": round(float(p.score), 6)} for p in self.top]
        line["latency_ms"] = round(self.latency_ms, 3)
        return line


def check_whole(name: str, value: Any, least: int, optional: bool = False) -> None:
    """``value`` a whole number of at least ``least`` (or None, when ``optional``); one line naming ``name``."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise RunnerError(f"`{name}` must be a whole number of at least {least}, got {value!r}", field=name)


class FrameStream:
    """The results of one SOURCE, in order: iterate it (once). :meth:`summary` at any point, and after."""

    def __init__(
        self,
        runner: Classifier,
        source: str | int | os.PathLike[str] | SourceSpec | Source,
        *,
        topk: int = 5,
        batch: int = 1,
        every: int = 1,
        max_frames: int | None = None,
        reconnects: int = 3,
        backoff: float = 0.5,
        capture_factory: CaptureFactory | None = None,
        out: Messages = SILENT,
    ) -> None:
        check_whole("topk", topk, 1)
        check_whole("batch", batch, 1)
        check_whole("every", every, 1)
        check_whole("max_frames", max_frames, 1, optional=True)
        check_whole("reconnects", reconnects, 0)
        self.runner, self.topk, self.batch, self.every, self.max_frames = runner, topk, batch, every, max_frames
        self.out = out
        self._given = source
        self._open_options = {"capture_factory": capture_factory, "reconnects": reconnects, "backoff": backoff}
        self.source: Source | None = None
        self._stop = threading.Event()
        self._buffer: FrameBuffer | None = None
        self._handoff = Handoff()
        self._threads: list[threading.Thread] = []
        self._reader_error: BaseException | None = None
        self._iterated = self._closed = False
        self._started = self._last = 0.0
        self._latencies: list[float] = []
        self.ended: str | None = None

    # ------------------------------------------------------------------ life cycle

    def open(self) -> Source:
        """Open the source now (a camera, a URL: one line when it cannot be); iterating opens it otherwise."""
        if self.source is None:
            if self._closed:
                raise RunnerError("this stream was closed; start another")
            if isinstance(self._given, Source):
                self.source = self._given
            else:
                self.source = open_source(self._given, out=self.out, **self._open_options)  # type: ignore[arg-type]
        return self.source

    def __enter__(self) -> FrameStream:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, KeyboardInterrupt) and self.ended is None:
            self.ended = "interrupted"
        self.close()

    def close(self) -> None:
        """Stop reading and preparing, join the threads, let go of the source. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.ended is None:
            self.ended = "stopped"
        self._stop.set()
        if self._buffer is not None:
            self._buffer.stop()
        self._handoff.stop()
        for thread in self._threads:
            thread.join(JOIN_SECONDS)
        if any(t.is_alive() for t in self._threads):
            self.out.warn(
                f"reading {self.source.description if self.source else 'the source'} did not stop within "
                f"{JOIN_SECONDS:g} s (a read that blocks); it ends with the program"
            )
        elif self.source is not None:
            self.source.close()  # the reader closed it already, or never started

    # ------------------------------------------------------------------ the loop

    def __iter__(self) -> Iterator[FrameResult]:
        if self._iterated:
            raise RunnerError("a stream is read once; start another to read the source again")
        self._iterated = True
        return self._results()

    def _results(self) -> Iterator[FrameResult]:
        try:
            source = self.open()
            self._start(source)
            classified = 0
            while self.max_frames is None or classified < self.max_frames:
                item = self._handoff.get()
                if item is END:
                    if self._reader_error is not None:
                        raise self._reader_error
                    self.ended = self.ended or ("lost" if source.counts.lost else "end")
                    return
                if isinstance(item, Failed):
                    raise item.error
                assert isinstance(item, Prepared)
                top = self.runner.predictions(self.runner.infer(item.batch), self.topk)
                done = time.perf_counter()
                for frame, ranked in zip(item.frames, top, strict=True):
                    if self.max_frames is not None and classified >= self.max_frames:
                        break  # a live batch taken before the last result was counted
                    classified += 1
                    self._latencies.append((done - frame.captured) * 1000.0)
                    self._last = time.perf_counter()
                    yield FrameResult(
                        frame.index, frame.timestamp, ranked, self._latencies[-1], frame.name, frame.image
                    )
            self.ended = self.ended or "max-frames"
        except KeyboardInterrupt:
            self.ended = self.ended or "interrupted"
            raise
        finally:
            self.close()

    def _start(self, source: Source) -> None:
        live = source.live
        # a live source: the newest `batch` frames; a file: a little read-ahead, never a dropped frame
        self._buffer = FrameBuffer(self.batch if live else 2 * self.batch, keep_newest=live)
        self._started = self._last = time.perf_counter()
        limit = None if live else self.max_frames
        self._threads = [
            threading.Thread(target=self._read, args=(source, limit), name="resnet-deploy-read", daemon=True),
            threading.Thread(target=self._prepare, args=(live,), name="resnet-deploy-prepare", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, source: Source, limit: int | None) -> None:
        """The reader thread: every frame of the source into the buffer, until it ends or the loop stops."""
        assert self._buffer is not None
        try:
            for frame in source.frames(self.every, limit, self._stop):
                if not self._buffer.put(frame):
                    break
        except BaseException as exc:  # handed to the iterating thread, raised there
            self._reader_error = exc
        finally:
            self._buffer.finish()
            source.close()

    def _prepare(self, live: bool) -> None:
        """The batcher thread: the next batch taken and preprocessed while the current one infers."""
        assert self._buffer is not None
        try:
            while self._handoff.wait_free():
                frames = self._buffer.take(self.batch, whole=not live)
                if not frames:
                    self._handoff.put(END)
                    return
                batch = self.runner.preprocess([f.image for f in frames], channel_order="BGR")
                self._handoff.put(Prepared(frames, batch))
        except BaseException as exc:
            self._handoff.put(Failed(exc))

    # ------------------------------------------------------------------ the account

    def summary(self) -> StreamSummary:
        """What was read, classified, skipped, dropped and how fast; at any point, and after the loop."""
        source = self.source
        counts = source.counts if source is not None else None
        frames = counts.frames if counts else 0
        skipped = counts.skipped if counts else 0
        corrupt = counts.corrupt if counts else 0
        classified = len(self._latencies)
        return StreamSummary(
            source=source.description if source is not None else str(self._given),
            live=bool(source and source.live),
            frames=frames,
            classified=classified,
            skipped=skipped,
            corrupt=corrupt,
            dropped=max(frames - classified - skipped - corrupt, 0),
            reconnects=counts.reconnects if counts else 0,
            seconds=max(self._last - self._started, 0.0),
            ended=self.ended or "running",
            every=self.every,
            batch=self.batch,
            latencies_ms=tuple(self._latencies),
            missing=counts.missing if counts else 0,
            images=bool(source and source.spec.is_images),
        )


def stream(
    runner: Classifier, source: str | int | os.PathLike[str] | SourceSpec | Source, **options: Any
) -> FrameStream:
    """``runner``'s top-``topk`` classes of every ``every``-th frame of ``source``, in order, ``batch`` frames
    per inference, ``max_frames`` results at most (``options``: those of :class:`FrameStream`).

    ``source``: an image, a folder, a video file, a camera (``0``, ``"/dev/video0"``), an RTSP/HTTP URL or
    a GStreamer pipeline (see :mod:`resnet_deploy.edge.sources`). A live source that drops is opened
    again ``reconnects`` times at most, ``backoff`` seconds apart at first, doubling. Warnings (an image
    that does not decode, a stream that dropped) go to ``out``."""
    return FrameStream(runner, source, **options)
