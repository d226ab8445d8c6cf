"""What SOURCE names, and the frames it yields.

SOURCE is one of:

- an image file, or a folder: every image below it at any depth, in path order (Pillow decodes them;
  a file that does not decode is skipped and named in one warning);
- a video file (``.mp4``, ``.avi``, ``.mkv``, ...): read whole, every frame, in order;
- a camera: its index (``0``) or its device (``/dev/video0``, read through V4L2);
- a URL: ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://``;
- a GStreamer pipeline: text with ``!`` in it, ending in ``appsink`` (the Jetson CSI camera's way in;
  OpenCV must be built with GStreamer, as JetPack's is).

Videos, cameras, URLs and pipelines are read with OpenCV's ``VideoCapture``. Cameras, pipelines and
streams are *live*: they do not wait for the reader, so the loop keeps the newest frames and drops
the rest, and a live source that drops is opened again, ``reconnects`` times at most with a growing
pause between tries (reset by every frame read). An HTTP URL of a file (one whose frame count is
known) is read whole, like a video file. A video frame that does not decode is skipped and named;
a video that stops decoding before its last frame ends there, with one line saying so.

Every frame comes out as a :class:`Frame`: BGR uint8 HWC, as OpenCV decodes (image files are
flipped from Pillow's RGB without a copy), with its place in the source and when it was read.
"""

from __future__ import annotations

import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from resnet_deploy.data.plain_folder import decode_rgb
from resnet_deploy.data.unlabelled_folder import NAMED_SUFFIXES, image_suffixes, list_images
from resnet_deploy.edge.opencv import has_gstreamer, opencv
from resnet_deploy.errors import RunnerError
from resnet_deploy.messages import SILENT, Messages

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp")  # never a file
URL_SCHEMES = (*LIVE_SCHEMES, "http", "https")  # http(s): live unless it has a frame count
SOURCE_HELP = (
    "give an image, a folder of images, a video file, a camera (0 or /dev/video0), an rtsp:// or http:// URL, "
    "or a GStreamer pipeline"
)
# OpenCV's VideoCaptureProperties (stable since OpenCV 2): numbers, so a capture stand-in needs no cv2
POS_MSEC, FPS, FRAME_COUNT = 0, 5, 7
MAX_DECODE_FAILURES = 25  # failed reads in a row after which a video file is taken to end there
MAX_BACKOFF_SECONDS = 8.0

Capture = Any  # cv2.VideoCapture, or anything with read(), grab(), isOpened(), get(prop) and release()
CaptureFactory = Callable[[Any, str], Capture]  # (target, api: "any" | "v4l2" | "gstreamer") -> a capture


@dataclass(frozen=True)
class Frame:
    """One frame or image, as read."""

    index: int  # its place in the source: frame number (skipped and undecodable frames count), image number
    timestamp: float | None  # seconds: a video's media time; a live frame's wall-clock time (time.time()); None
    image: np.ndarray = field(repr=False, compare=False)  # BGR uint8 HWC
    captured: float = field(repr=False, compare=False)  # time.perf_counter() when read: where latency starts
    name: str | None = None  # the image file


@dataclass
class SourceCounts:
    """What the source has been through so far (written by the reading thread only)."""

    frames: int = 0  # places passed: frames or images read, skipped or undecodable
    skipped: int = 0  # passed over by `every`
    corrupt: int = 0  # did not decode
    reconnects: int = 0  # times a live source was opened again after dropping
    lost: bool = False  # a live source that dropped and did not come back
    missing: int = 0  # frames a video file's header promised after the point where it stopped decoding


@dataclass(frozen=True)
class SourceSpec:
    """SOURCE, parsed: ``kind`` is image, folder, video, camera, url or pipeline."""

    kind: str
    target: str | int  # a path, a camera index or device, a URL, a pipeline
    api: str = "any"  # the VideoCapture backend: any, v4l2 (a /dev/video device), gstreamer

    @property
    def is_images(self) -> bool:
        return self.kind in ("image", "folder")

    @property
    def needs_opencv(self) -> bool:
        return not self.is_images

    @property
    def path(self) -> Path | None:
        """The file or folder read, when it is one."""
        return Path(str(self.target)) if self.kind in ("image", "folder", "video") else None

    def describe(self) -> str:
        """What it is, for messages ("camera /dev/video0"); a URL's password is never shown."""
        if self.kind == "camera":
            return f"camera {self.target}"
        if self.kind == "url":
            return f"stream {redact(str(self.target))}"
        if self.kind == "pipeline":
            return "GStreamer pipeline"
        return {"image": "image", "folder": "images in", "video": "video"}[self.kind] + f" {self.target}"


def redact(url: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://user:***@host/x``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def parse_source(source: str | int | os.PathLike[str] | SourceSpec) -> SourceSpec:
    """SOURCE as given (text, a camera index, a path) -> what it names; one line when it names nothing."""
    if isinstance(source, SourceSpec):
        return source
    if isinstance(source, bool) or not isinstance(source, (str, int, os.PathLike)):
        raise RunnerError(f"a source is text, a path or a camera index, not {source!r}", field="source")
    if isinstance(source, int):
        if source < 0:
            raise RunnerError(f"camera index {source} is negative; cameras count from 0", field="source")
        return SourceSpec("camera", source)
    text = os.fspath(source).strip()
    if not text:
        raise RunnerError(f"the source is empty: {SOURCE_HELP}", field="source")
    if "!" in text:
        return SourceSpec("pipeline", text, "gstreamer")
    if re.fullmatch(r"\d+", text):
        return SourceSpec("camera", int(text))
    if urlsplit(text).scheme.lower() in URL_SCHEMES:
        return SourceSpec("url", text)
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec("camera", text, "v4l2")
    path = Path(text).expanduser()
    if path.is_dir():
        return SourceSpec("folder", str(path))
    if path.is_file():
        return SourceSpec("image" if path.suffix.lower() in image_suffixes() else "video", str(path))
    if text.startswith("/dev/"):  # a camera by another name (/dev/v4l/by-id/...) that is not there
        raise RunnerError(f"camera {text} not found: no such device; {SOURCE_HELP}", field="source")
    raise RunnerError(f"source {text} not found: {SOURCE_HELP}", field="source")


def open_capture(target: Any, api: str) -> Capture:
    """``cv2.VideoCapture(target, api)``: the default ``capture_factory``."""
    cv2 = opencv()
    apis = {"any": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "gstreamer": cv2.CAP_GSTREAMER}
    return cv2.VideoCapture(target, apis[api])


class Source(ABC):
    """Frames of one SOURCE, read by one thread: :meth:`frames`, then :meth:`close`."""

    spec: SourceSpec
    live: bool = False  # does not wait for the reader: the loop keeps the newest frames
    fps: float | None = None  # frames per second the source declares
    counts: SourceCounts

    @property
    def description(self) -> str:
        return self.spec.describe()

    @abstractmethod
    def frames(self, every: int = 1, limit: int | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
        """Every ``every``-th frame (the others passed over, not decoded), ``limit`` of them at most,
        until the source ends, is lost, or ``stop`` is set."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the file, camera or stream."""


class ImageFiles(Source):
    """An image file, or the image files below a folder, decoded with Pillow."""

    def __init__(self, spec: SourceSpec, paths: list[str], out: Messages = SILENT) -> None:
        self.spec, self.paths, self.out = spec, paths, out
        self.counts = SourceCounts()

    def frames(self, every: int = 1, limit: int | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
        yielded = 0
        for index, path in enumerate(self.paths):
            if (stop is not None and stop.is_set()) or (limit is not None and yielded >= limit):
                return
            self.counts.frames = index + 1
            if index % every:
                self.counts.skipped += 1
                continue
            rgb = decode_rgb(path)
            if rgb is None:
                self.counts.corrupt += 1
                self.out.warn(f"{path}: skipped, not a readable image")
                continue
            yield Frame(index, None, np.asarray(rgb)[:, :, ::-1], time.perf_counter(), name=path)
            yielded += 1

    def close(self) -> None:
        pass  # each file is closed once decoded


class VideoCapture(Source):
    """A video file, camera, URL or GStreamer pipeline through a capture (OpenCV's ``VideoCapture``)."""

    def __init__(
        self,
        spec: SourceSpec,
        capture_factory: CaptureFactory | None = None,
        *,
        reconnects: int = 3,
        backoff: float = 0.5,
        out: Messages = SILENT,
    ) -> None:
        self.spec, self.out = spec, out
        self.factory = capture_factory or open_capture
        self.reconnects, self.backoff = reconnects, backoff
        self.counts = SourceCounts()
        self.capture: Capture | None = self._open()
        count = _number(self.capture.get(FRAME_COUNT))
        self.frame_count = int(count) if count and count > 0 else None
        fps = _number(self.capture.get(FPS))
        self.fps = fps if fps and 0 < fps < 1000 else None
        url_scheme = urlsplit(str(spec.target)).scheme.lower() if spec.kind == "url" else ""
        self.live = (
            spec.kind in ("camera", "pipeline")
            or url_scheme in LIVE_SCHEMES
            or (spec.kind == "url" and self.frame_count is None)
        )
        self._tries = 0  # reconnect attempts since the last frame read
        self._origin: tuple[float, int] | None = None  # a file's first decoded frame: (media time, index)

    def _open(self) -> Capture:
        capture = self._try_open()
        if capture is None:
            raise RunnerError(self._cannot_open(), field="source")
        return capture

    def _try_open(self) -> Capture | None:
        """An opened capture, or None (OpenCV answers some targets with an exception, others with a closed one)."""
        try:
            capture = self.factory(self.spec.target, self.spec.api)
            if capture is not None and capture.isOpened():
                return capture
        except Exception:  # cv2.error: what it says is in OpenCV's own log lines already
            return None
        if capture is not None:
            capture.release()
        return None

    def _cannot_open(self) -> str:
        spec = self.spec
        if spec.kind == "video":
            return (
                f"cannot open video {spec.target}: OpenCV cannot read it (not a video, damaged, or a codec this "
                "OpenCV build lacks)"
            )
        if spec.kind == "camera":
            return (
                f"cannot open camera {spec.target}: no such camera, it is in use by another program, or this user "
                "may not read it (on Linux: in the video group? ls -l /dev/video*)"
            )
        if spec.kind == "url":
            return (
                f"cannot open stream {redact(str(spec.target))}: nothing answered there, or OpenCV cannot decode "
                "what did; check the URL and that the camera or server is up"
            )
        if not has_gstreamer():
            return (
                "cannot open the GStreamer pipeline: this OpenCV is built without GStreamer (pip's "
                "opencv-python-headless never has it); on a Jetson use JetPack's OpenCV: see the classify page of "
                "the docs"
            )
        return (
            "cannot open the GStreamer pipeline: GStreamer refused it (try it with gst-launch-1.0; it must end in "
            "appsink and give BGR frames)"
        )

    def frames(self, every: int = 1, limit: int | None = None, stop: threading.Event | None = None) -> Iterator[Frame]:
        stop = stop or threading.Event()
        index = yielded = failures = 0
        while not stop.is_set() and (limit is None or yielded < limit):
            decode = index % every == 0
            ok, image = self._read(decode)
            if ok:
                captured = time.perf_counter()
                self._tries = 0
                when = self._when() if decode else None
                if failures:  # frames in the middle of a file that did not decode
                    index, failures = self._resync(index, failures, when)
                    self._undecodable(index - failures, index - 1)
                    failures = 0
                index += 1
                self.counts.frames = index
                if not decode:
                    self.counts.skipped += 1
                    continue
                if self._origin is None and when is not None:
                    self._origin = (when, index - 1)
                yield Frame(index - 1, when, image, captured)
                yielded += 1
            elif self.live:
                if not self._reconnect(stop, index):
                    return
            elif self.frame_count is None or index >= self.frame_count:
                if failures:
                    self._stopped_decoding(index - failures)
                return  # the end of the file
            elif failures < MAX_DECODE_FAILURES:
                failures += 1  # skip it; the frames after it may decode
                index += 1
            else:
                self._stopped_decoding(index - failures)
                return

    def _when(self) -> float | None:
        """The frame just read: a live frame's wall-clock time, a file's media time (s)."""
        if self.live or self.capture is None:
            return time.time()
        return _number(self.capture.get(POS_MSEC)) / 1000.0

    def _resync(self, index: int, failures: int, when: float | None) -> tuple[int, int]:
        """After failed reads in a file: the frame's place by its media time, when a failed read passed over
        more than one frame (only then: a variable frame rate never counts as frames lost)."""
        if self.live or when is None or self.fps is None or self._origin is None:
            return index, failures
        origin_time, origin_index = self._origin
        place = origin_index + round((when - origin_time) * self.fps)
        return (place, failures + place - index) if place > index else (index, failures)

    def _read(self, decode: bool) -> tuple[bool, Any]:
        capture = self.capture
        if capture is None:
            return False, None
        try:
            if not decode and hasattr(capture, "grab"):
                return bool(capture.grab()), None  # passed over: not converted to BGR
            ok, image = capture.read()
        except Exception:  # cv2.error from a broken stream or frame: a read that failed
            return False, None
        good = ok and isinstance(image, np.ndarray) and image.ndim == 3 and image.size > 0
        return bool(good), image if good else None

    def _undecodable(self, first: int, last: int) -> None:
        self.counts.corrupt += last - first + 1
        which = f"frame {first}" if first == last else f"frames {first}-{last}"
        self.out.warn(f"{self.description}: {which} did not decode; skipped")

    def _stopped_decoding(self, index: int) -> None:
        self.counts.frames = index
        missing = (self.frame_count or index) - index
        self.counts.missing = missing
        if missing > 1:  # a container's count can be one off (estimated from the duration)
            self.out.warn(
                f"{self.description} stopped decoding after frame {index - 1} of its {self.frame_count}; the last "
                f"{missing} were not read (a truncated or damaged file?)"
            )

    def _reconnect(self, stop: threading.Event, index: int) -> bool:
        """Open a live source again after it dropped; False when it stays lost or ``stop`` is set."""
        self._release()
        if self._tries >= self.reconnects:
            return self._lost(index)
        while self._tries < self.reconnects:
            self._tries += 1
            delay = min(self.backoff * 2 ** (self._tries - 1), MAX_BACKOFF_SECONDS)
            self.out.warn(
                f"{self.description} dropped after frame {index - 1}; reconnecting in {delay:.1f} s "
                f"(try {self._tries} of {self.reconnects})"
            )
            if stop.wait(delay):
                return False
            capture = self._try_open()
            if capture is not None:
                self.capture = capture
                self.counts.reconnects += 1
                self.out.warn(f"{self.description} reconnected")
                return True
        return self._lost(index)

    def _lost(self, index: int) -> bool:
        self.counts.lost = True
        tries = f"after {self.reconnects} reconnect tries" if self.reconnects else "(`reconnects=0`: none tried)"
        self.out.warn(f"{self.description} dropped after frame {index - 1} and did not come back {tries}")
        return False

    def _release(self) -> None:
        capture, self.capture = self.capture, None
        if capture is not None:
            capture.release()

    def close(self) -> None:
        self._release()


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if np.isfinite(number) else 0.0


def open_source(
    source: str | int | os.PathLike[str] | SourceSpec,
    *,
    capture_factory: CaptureFactory | None = None,
    reconnects: int = 3,
    backoff: float = 0.5,
    out: Messages = SILENT,
) -> Source:
    """SOURCE opened, ready to read; one line when it cannot be (``capture_factory``: how a capture is
    made, ``cv2.VideoCapture`` by default; a test passes a stand-in)."""
    spec = parse_source(source)
    if spec.kind == "image":
        return ImageFiles(spec, [str(spec.target)], out)
    if spec.kind == "folder":
        paths = list_images(Path(str(spec.target)))
        if not paths:
            raise RunnerError(f"folder {spec.target} holds no images ({NAMED_SUFFIXES}, ...)", field="source")
        return ImageFiles(spec, paths, out)
    if capture_factory is None:
        opencv(f"reading {spec.describe()}")  # one line naming the extra, before anything else
    return VideoCapture(spec, capture_factory, reconnects=reconnects, backoff=backoff, out=out)
