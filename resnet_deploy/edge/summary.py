"""What a stream did, at its end: frames/s, latency percentiles, and every frame accounted for.

Every place the source passed is one of: classified, skipped (``every``), corrupt (did not decode) or
dropped (read, but not classified: a live source's frame replaced by a newer one while inference was
busy, or a frame in flight when the loop stopped). So ``frames = classified + skipped + corrupt + dropped``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENDINGS = {
    "end": "the source ended",
    "max-frames": "`max_frames` reached",
    "interrupted": "interrupted",
    "lost": "the source was lost",
    "stopped": "stopped by the application",
}
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class StreamSummary:
    source: str  # what was read ("camera /dev/video0")
    live: bool
    frames: int  # places in the source passed
    classified: int
    skipped: int
    corrupt: int
    dropped: int
    reconnects: int
    seconds: float  # from the start of reading to the last result
    ended: str  # one of ENDINGS
    every: int = 1
    batch: int = 1
    latencies_ms: Sequence[float] = field(default=(), repr=False)  # capture to result, per classified frame
    missing: int = 0  # frames a video file promised after it stopped decoding
    images: bool = False  # the source is image files (its description says "images in ...")

    @property
    def fps(self) -> float:
        """Frames classified per second."""
        return self.classified / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, percentile: float) -> float | None:
        """A percentile of the capture-to-result latency; None when nothing was classified."""
        if not len(self.latencies_ms):
            return None
        return float(np.percentile(np.asarray(self.latencies_ms, dtype=np.float64), percentile))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "live": self.live,
            "frames": self.frames,
            "classified": self.classified,
            "skipped": self.skipped,
            "corrupt": self.corrupt,
            "dropped": self.dropped,
            "missing": self.missing,
            "reconnects": self.reconnects,
            "every": self.every,
            "batch": self.batch,
            "seconds": round(self.seconds, 4),
            "fps": round(self.fps, 3),
            "latency_ms": {f"p{p}": _rounded(self.latency_ms(p)) for p in PERCENTILES},
            "ended": self.ended,
            "images": self.images,
        }

    def lines(self) -> list[str]:
        """The summary in words: what was classified, how fast, and what was not and why."""
        of = f"{self.frames} {self.source}" if self.images else f"{self.frames} frames of {self.source}"
        if self.classified:
            latency = ", ".join(f"p{p} {self.latency_ms(p):.1f} ms" for p in PERCENTILES)
            first = (
                f"classified {self.classified} of {of} in {self.seconds:.1f} s: {self.fps:.1f} "
                f"{'images' if self.images else 'frames'}/s; latency (read to result) {latency}"
            )
        else:
            first = f"classified none of {of}"
        every = f" (every {self.every})" if self.every > 1 else ""
        rest = [
            f"skipped {self.skipped}{every}",
            f"dropped {self.dropped}",
            f"corrupt {self.corrupt}",
            *([f"missing {self.missing}"] if self.missing else []),
            *([f"reconnects {self.reconnects}"] if self.live else []),
        ]
        return [first, f"{', '.join(rest)}; ended: {ENDINGS.get(self.ended, self.ended)}"]

    def text(self) -> str:
        return "\n".join(self.lines())


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
