"""TensorRT's IProgressMonitor as progress bars, and Ctrl-C as a clean cancel of the build.

Each build phase is a bar of ``out.progress`` (drawn only where the caller's messages draw bars: the
CLI's on a terminal, never in a log file); the monitor carries Ctrl-C to TensorRT either way.
TensorRT 8.6 (JetPack 6.0) has no IProgressMonitor: there ``make_monitor`` returns None, no bars are
drawn, and Ctrl-C interrupts once TensorRT returns from the build (nothing is written either way).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from resnet_deploy.errors import Terminated
from resnet_deploy.messages import Messages, Progress
from resnet_deploy.trt.flavours import EngineBackend


def make_monitor(backend: EngineBackend, out: Messages) -> Any:
    """An ``IProgressMonitor`` of the backend's module showing one bar of ``out`` per phase, which also
    carries Ctrl-C to TensorRT; None where the release has no progress monitor."""
    if not backend.has_progress_monitor:
        return None
    trt = backend.module

    class Monitor(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, Progress] = {}
            self.cancelled = False

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.bars[phase_name] = out.progress(num_steps, phase_name)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(1)
            return not self.cancelled  # False makes TensorRT abandon the build

        def phase_finish(self, phase_name: str) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return Monitor()


@contextmanager
def cancel_on_interrupt(monitor: Any) -> Iterator[None]:
    """While building, Ctrl-C (and SIGTERM) ask TensorRT to stop at its next step instead of killing
    the process; the interrupt is raised once TensorRT returns (Terminated for SIGTERM: exit 143).

    Without a monitor (TensorRT 8.6) Python's own handling stays: KeyboardInterrupt once TensorRT returns.
    """
    if monitor is None:
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        monitor.cancelled = True

    try:
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return

    def interrupt() -> KeyboardInterrupt:
        return Terminated() if signal.SIGTERM in received else KeyboardInterrupt()

    try:
        yield
    except Exception:
        if monitor.cancelled:  # TensorRT returns no engine once cancelled: report the interrupt, not a failure
            raise interrupt() from None
        raise
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
    if monitor.cancelled:
        raise interrupt()
