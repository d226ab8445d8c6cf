"""Where the library's progress lines, warnings and progress bars go: one channel, :class:`Messages`.

Every function that reports takes ``out: Messages`` (default :class:`Silent`): the CLI passes its
reporter, a script :class:`Printed`, a test :class:`Recorded`. Nothing below the CLI prints, logs or
draws a bar by itself.

Parameters are named in backticks (`` `calib_images` ``, `` `precision=int8` ``): a Python caller
reads them as written; the CLI shows each as its flag (``--calib-images``, ``--int8``). Bars are drawn
only to a terminal: in a log file their carriage returns and escape codes would pile up.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from resnet_deploy._lazy import lazy_import

if TYPE_CHECKING:
    import tqdm
else:
    tqdm = lazy_import("tqdm")  # only where a bar is drawn


class Progress(Protocol):
    """One progress bar: ``update`` as work is done, ``note`` a short status after it, ``close`` at the end."""

    def update(self, n: int = 1) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


class Messages(Protocol):
    """Where progress lines, warnings and bars go (the CLI's reporter; :class:`Printed`; a test's :class:`Recorded`)."""

    def say(self, message: str = "") -> None: ...

    def warn(self, message: str) -> None: ...

    def progress(self, total: int | None, desc: str) -> Progress: ...


class NoProgress:
    """A bar that draws nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def draws_bars(enabled: bool, stream: Any = None) -> bool:
    """Whether bars are drawn: asked for (``enabled``) and ``stream`` (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(enabled and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Bars:
    """tqdm bars on ``stream`` when :func:`draws_bars`; nested bars (TensorRT's phases) stack below each other."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.drawing = draws_bars(enabled, self.stream)
        self.open = 0

    def progress(self, total: int | None, desc: str) -> Progress:
        if not self.drawing:
            return NoProgress()
        return _Bar(
            self,
            tqdm.tqdm(total=total, desc=desc, position=self.open, leave=False, file=self.stream, dynamic_ncols=True),
        )


class _Bar:
    def __init__(self, owner: Bars, bar: Any) -> None:
        self.owner, self.bar = owner, bar
        owner.open += 1

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.owner.open -= 1


class Silent:
    """Messages dropped: a library call that should print nothing (every function's default)."""

    def say(self, message: str = "") -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def progress(self, total: int | None, desc: str) -> Progress:
        return NoProgress()


SILENT = Silent()  # the default ``out`` of every function that reports


class Printed:
    """Messages printed to stdout, warnings prefixed, bars on stderr when it is a terminal: for scripts."""

    def __init__(self, bars: bool = True) -> None:
        self.bars = Bars(bars)

    def say(self, message: str = "") -> None:
        print(message, flush=True)

    def warn(self, message: str) -> None:
        print(f"warning: {message}", flush=True)

    def progress(self, total: int | None, desc: str) -> Progress:
        return self.bars.progress(total, desc)


class Recorded:
    """Messages kept in lists (``lines``, ``warnings``; ``bars``: each bar's description): for tests and callers
    that show them their own way."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self.bars: list[str] = []

    def say(self, message: str = "") -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def progress(self, total: int | None, desc: str) -> Progress:
        self.bars.append(desc)
        return NoProgress()
