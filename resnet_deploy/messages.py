"""Where a pipeline's progress lines and warnings go."""

from __future__ import annotations

from typing import Protocol


class Messages(Protocol):
    """Where progress lines and warnings go (the CLI's Reporter; a logger adapter; a test's list)."""

    def say(self, message: str = "") -> None: ...

    def warn(self, message: str) -> None: ...


class Printed:
    """Messages printed to stdout, warnings prefixed: for scripts and notebooks."""

    def say(self, message: str = "") -> None:
        print(message)

    def warn(self, message: str) -> None:
        print(f"warning: {message}")


class Silent:
    """Messages dropped: a library call that should print nothing."""

    def say(self, message: str = "") -> None:
        pass

    def warn(self, message: str) -> None:
        pass
