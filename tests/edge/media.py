"""Frames, videos and capture stand-ins for the edge tests."""

from __future__ import annotations

import contextlib
import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from resnet_deploy.edge.sources import FPS, FRAME_COUNT, POS_MSEC

SIZE = (64, 48)  # video frames (width, height): larger than the model's input, so they are resized


def digit_frames(images: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` BGR frames of SIZE, each a test-split digit (RGB, 32x32) on a dark background, in turn."""
    frames = []
    for i in range(count):
        frame = np.full((SIZE[1], SIZE[0], 3), 16, np.uint8)
        digit = images[i % len(images)]
        frame[8:40, 16 + (i % 3) * 4 : 48 + (i % 3) * 4] = digit[:, :, ::-1]
        frames.append(frame)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0, fourcc: str = "MJPG") -> Path:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path``, as the still-image runner would be given them."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def numbered(n: int, base: np.ndarray | None = None) -> np.ndarray:
    """A BGR frame that carries its number ``n`` (below 65536) in 16 grey 8x8 blocks along its bottom, which
    survive JPEG and a label drawn at the top (:func:`number_of` reads them back), and a pattern above them
    that changes with ``n``."""
    frame = np.full((SIZE[1], SIZE[0], 3), 40, np.uint8) if base is None else base.copy()
    for bit in range(16):
        row, column = divmod(bit, 8)
        frame[32 + row * 8 : 40 + row * 8, column * 8 : column * 8 + 8] = 255 if n >> bit & 1 else 0
    frame[8:28, (n * 7) % 40 : (n * 7) % 40 + 20, n % 3] = 230
    return frame


def number_of(frame: np.ndarray) -> int:
    blocks = [frame[34 + r * 8 : 38 + r * 8, c * 8 + 2 : c * 8 + 6].mean() for r in range(2) for c in range(8)]
    return sum(1 << bit for bit, mean in enumerate(blocks) if mean > 128)


class FakeCapture:
    """``cv2.VideoCapture``'s interface over numbered frames: ``frames`` of them, then reads fail (a file's
    end, or a camera that dropped); ``opened=False``: a device that cannot be opened."""

    def __init__(
        self, frames: int | None = None, *, opened: bool = True, fps: float = 30.0, live: bool = True, start: int = 0
    ) -> None:
        self.frames, self.opened, self.fps, self.live = frames, opened, fps, live
        self.start = start  # the number of the first frame (a camera that came back keeps counting)
        self.count = 0  # frames read or grabbed
        self.released = False
        self.cond = threading.Condition()

    def isOpened(self) -> bool:
        return self.opened and not self.released

    def _next(self) -> bool:
        if self.released or (self.frames is not None and self.count >= self.frames):
            return False
        with self.cond:
            self.count += 1
            self.cond.notify_all()
        return True

    def read(self) -> tuple[bool, Any]:
        if not self._next():
            return False, None
        return True, numbered(self.start + self.count - 1)

    def grab(self) -> bool:
        return self._next()

    def get(self, prop: int) -> float:
        if prop == FPS:
            return self.fps
        if prop == FRAME_COUNT:
            return -1.0 if self.live else float(self.frames or 0)
        if prop == POS_MSEC:
            return (self.count - 1) * 1000.0 / self.fps
        return 0.0

    def release(self) -> None:
        self.released = True
        with self.cond:
            self.cond.notify_all()


class Camera(FakeCapture):
    """A live camera that never stops: a frame every ``period`` seconds."""

    def __init__(self, period: float = 0.0005, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)
        self.period = period

    def read(self) -> tuple[bool, Any]:
        time.sleep(self.period)
        return super().read()


class SlowRunner:
    """A runner whose every inference lasts while the camera delivers ``frames`` more frames: slower than the
    camera, deterministically."""

    def __init__(self, runner: Any, camera: Camera, frames: int = 5) -> None:
        self.runner, self.camera, self.frames = runner, camera, frames
        self.batches: list[int] = []

    def preprocess(self, images: Any, channel_order: str = "RGB") -> Any:
        return self.runner.preprocess(images, channel_order=channel_order)

    def infer(self, batch: Any) -> Any:
        camera = self.camera
        with camera.cond:
            target = camera.count + self.frames
            assert camera.cond.wait_for(lambda: camera.count >= target or camera.released, timeout=10)
        self.batches.append(len(batch))
        return self.runner.infer(batch)

    def predictions(self, logits: Any, topk: int = 5) -> Any:
        return self.runner.predictions(logits, topk)


def same_predictions(got: list[Any], expected: list[Any], rel: float = 1e-5) -> bool:
    """The same classes with the same scores (to float tolerance); the order may differ only between classes
    whose scores tie within it."""
    import pytest

    scores = {p.index: p.score for p in got}
    wanted = {p.index: p.score for p in expected}
    if set(scores) != set(wanted):  # a near-tie at the k-th place may swap the last class
        last = min(wanted.values())
        return all(abs(wanted.get(i, last) - s) <= rel * s + 1e-7 for i, s in scores.items())
    return all(scores[i] == pytest.approx(wanted[i], rel=rel) for i in wanted)


@contextlib.contextmanager
def mjpeg_server(frames: list[np.ndarray], fps: float = 50.0, forever: bool = False) -> Iterator[str]:
    """An HTTP MJPEG stream (multipart/x-mixed-replace, as IP cameras serve) of ``frames`` on 127.0.0.1, on a
    free port, in a thread: ``forever`` repeats them until the server stops. Yields its URL."""
    import cv2

    jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]
    stopping = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                n = 0
                while not stopping.is_set() and (forever or n < len(jpegs)):
                    jpeg = jpegs[n % len(jpegs)]
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(head.encode() + jpeg + b"\r\n")
                    n += 1
                    time.sleep(1 / fps)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/camera.mjpg"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
