"""A clock for timing code under test: ``perf_counter`` reads ``now``, which the test advances; ``sleep``
only records how long it was asked to wait."""

from __future__ import annotations


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
