"""What passes between the stream's threads: frames from the reader to the batcher (:class:`FrameBuffer`),
and one prepared batch from the batcher to inference (:class:`Handoff`).

Both wake every waiting thread on :meth:`stop`, so the loop can end from any point.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resnet_deploy.edge.sources import Frame


class FrameBuffer:
    """Frames read but not yet batched, oldest first, ``capacity`` at most.

    A file's reader waits for room, so every frame is classified. A live source's reader never waits:
    the oldest frame makes room for the newest, and is counted in :attr:`dropped`; the batcher then
    always takes the newest frames the camera gave."""

    def __init__(self, capacity: int, keep_newest: bool) -> None:
        if capacity < 1:
            raise ValueError("a frame buffer holds at least one frame")
        self.capacity, self.keep_newest = capacity, keep_newest
        self.dropped = 0
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._finished = self._stopped = False

    def put(self, frame: Frame) -> bool:
        """Add ``frame`` (waiting for room unless ``keep_newest``); False once stopped."""
        with self._cond:
            if self.keep_newest:
                if len(self._frames) >= self.capacity:
                    self._frames.popleft()
                    self.dropped += 1
            else:
                while len(self._frames) >= self.capacity and not self._stopped:
                    self._cond.wait()
            if self._stopped:
                return False
            self._frames.append(frame)
            self._cond.notify_all()
            return True

    def take(self, count: int, whole: bool) -> list[Frame]:
        """Up to ``count`` frames, oldest first: at least one (with ``whole``, ``count`` of them) unless the
        source has ended; an empty list once it has ended and nothing is left, or once stopped."""
        with self._cond:
            need = count if whole else 1
            while len(self._frames) < need and not self._finished and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return []
            taken = [self._frames.popleft() for _ in range(min(count, len(self._frames)))]
            self._cond.notify_all()
            return taken

    def finish(self) -> None:
        """No more frames will come."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Wake every waiting thread; ``put`` and ``take`` do nothing from now on."""
        with self._cond:
            self._stopped = True
            self._frames.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


@dataclass(frozen=True)
class Prepared:
    """A batch ready to infer: its frames and what ``runner.preprocess`` made of them."""

    frames: Sequence[Frame]
    batch: Any


@dataclass(frozen=True)
class Failed:
    """Preparing a batch failed (or the reader did): raised where the results are read."""

    error: BaseException


END = None  # the source has ended and every frame was handed over


class Handoff:
    """One slot between the batcher and inference. The batcher waits for the slot to be free (:meth:`wait_free`)
    *before* it takes frames, so it prepares batch k+1 while batch k infers, from the newest frames there are."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Prepared | Failed | None = None
        self._full = self._stopped = False

    def wait_free(self) -> bool:
        """Until the slot is empty; False once stopped."""
        with self._cond:
            while self._full and not self._stopped:
                self._cond.wait()
            return not self._stopped

    def put(self, item: Prepared | Failed | None) -> None:
        with self._cond:
            self._item, self._full = item, True
            self._cond.notify_all()

    def get(self) -> Prepared | Failed | None:
        """The next item (:data:`END` at the end, or once stopped)."""
        with self._cond:
            while not self._full and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return END
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._item = None
            self._cond.notify_all()
