"""The classified frames as a video, each with its top-1 label and score drawn in the top-left corner.

The video is written to a temporary file beside ``path`` and renamed onto it by :meth:`AnnotatedVideo.commit`
(:func:`resnet_deploy._io.atomic_output`): a run that fails or is killed never leaves a half-written
video at ``path``. The container follows the suffix: ``.mp4`` and ``.mkv`` hold MPEG-4 Part 2
(``mp4v``, what every OpenCV build can write), ``.avi`` Motion JPEG. Frames of another size than the
first (a camera that came back at another resolution) are resized to it.

A file is written at its own frame rate divided by ``every``, so it plays at its real speed. A live
source's frames are placed by their timestamps: a frame is repeated until the next classified one,
so frames dropped while inference was busy do not make the video play fast.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from resnet_deploy._io import atomic_output, check_writable
from resnet_deploy.edge.opencv import opencv
from resnet_deploy.edge.stream import FrameResult
from resnet_deploy.errors import OutputPathError

CODECS = {".mp4": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
SUFFIXES = tuple(CODECS)
DEFAULT_FPS = 30.0  # a source that declares no frame rate
MAX_REPEAT_SECONDS = 10.0  # a live gap longer than this is not filled frame by frame


class _Discarded(Exception):
    """Thrown into the temporary file's context so it is deleted."""


def label_text(result: FrameResult) -> str:
    best = result.top[0]
    return f"{best.label} {best.score:.0%}"


def draw_label(image: Any, text: str) -> Any:
    """A copy of the BGR ``image`` with ``text`` in white on a black band, top left, sized to the frame."""
    cv2 = opencv("writing an annotated video")
    out = image.copy()
    scale = max(0.4, out.shape[0] / 720)
    thickness = max(1, round(2 * scale))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)
    pad = max(2, round(6 * scale))
    cv2.rectangle(out, (0, 0), (width + 2 * pad, height + baseline + 2 * pad), (0, 0, 0), cv2.FILLED)
    cv2.putText(out, text, (pad, pad + height), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


class AnnotatedVideo:
    """``write`` each result, then ``commit`` (or ``discard``)."""

    def __init__(self, path: str | os.PathLike[str], fps: float | None, *, timeline: bool = False) -> None:
        self.path = check_writable(path)
        if self.path.suffix.lower() not in CODECS:
            raise OutputPathError(
                f"an annotated video ends in {', '.join(SUFFIXES)}, not {self.path.name}", field="output"
            )
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.timeline = timeline  # place frames by their timestamps (a live source)
        self.written = 0  # frames in the file, repeats included
        self.frames = 0  # results written
        self._context: AbstractContextManager[Path] | None = None
        self._video: Path | None = None  # what the writer writes: the temporary file with the real suffix
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self._first_time: float | None = None
        self._previous: Any = None  # the last frame drawn (live: it fills the time until the next)

    def write(self, result: FrameResult) -> None:
        if result.frame is None:
            raise ValueError("the result carries no frame to draw on")
        cv2 = opencv("writing an annotated video")
        image = result.frame
        if self._writer is None:
            self._open(cv2, image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        drawn = draw_label(image, label_text(result))
        for _ in range(self._gap(result.timestamp)):  # a live source: the previous frame until this one's time
            self._writer.write(self._previous)
            self.written += 1
        self._writer.write(drawn)
        self.written += 1
        self.frames += 1
        self._previous = drawn if self.timeline else None

    def _gap(self, timestamp: float | None) -> int:
        """Frame slots between the previous frame written and this one's place on the timeline (live)."""
        if not self.timeline or timestamp is None:
            return 0
        if self._first_time is None or self._previous is None:
            self._first_time = timestamp - self.written / self.fps
            return 0
        place = round((timestamp - self._first_time) * self.fps)
        return int(min(max(place - self.written, 0), MAX_REPEAT_SECONDS * self.fps))

    def _open(self, cv2: Any, width: int, height: int) -> None:
        self._context = atomic_output(self.path)
        temporary = self._context.__enter__()
        # VideoWriter picks the container by the suffix: the temporary file's name ends in the real one
        self._video = temporary.with_name(temporary.name + self.path.suffix.lower())
        fourcc = cv2.VideoWriter_fourcc(*CODECS[self.path.suffix.lower()])
        self._writer = cv2.VideoWriter(str(self._video), fourcc, self.fps, (width, height))
        self._size = (width, height)
        if not self._writer.isOpened():
            self.discard()
            raise OutputPathError(
                f"cannot write {self.path}: OpenCV cannot open a {CODECS[self.path.suffix.lower()]} video writer "
                f"for {width}x{height} frames; try another suffix ({', '.join(SUFFIXES)})",
                field="output",
            )

    def commit(self) -> Path | None:
        """Finish the video and move it onto ``path``; None (nothing written) when no frame came."""
        if self._context is None:
            return None
        context, video = self._context, self._video
        self._context = None
        assert video is not None
        try:
            self._writer.release()
            if not video.is_file() or video.stat().st_size == 0:
                raise OutputPathError(f"cannot write {self.path}: OpenCV wrote nothing (disk full?)", field="output")
            temporary = Path(str(video)[: -len(self.path.suffix)])
            os.replace(video, temporary)
        except BaseException as exc:
            video.unlink(missing_ok=True)
            context.__exit__(type(exc), exc, exc.__traceback__)
            raise
        context.__exit__(None, None, None)  # renamed onto path
        return self.path

    def discard(self) -> None:
        """Delete what was written; ``path`` is left as it was."""
        if self._context is None:
            return
        context, self._context = self._context, None
        if self._writer is not None:
            self._writer.release()
        if self._video is not None:
            self._video.unlink(missing_ok=True)
        failure = _Discarded()
        context.__exit__(_Discarded, failure, None)
