"""TensorRT build progress bars are drawn only to a terminal; the monitor carries Ctrl-C either way."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from resnet_deploy.engine.progress import make_monitor
from resnet_deploy.messages import SILENT, Bars, draws_bars
from resnet_deploy.trt.flavours import EngineBackend


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Monitor:  # the module's IProgressMonitor base
    def __init__(self) -> None:
        pass


FAKE_TRT = SimpleNamespace(IProgressMonitor=_Monitor, IBuilderConfig=SimpleNamespace(progress_monitor=None))


class Drawn:
    """Messages whose bars go to ``stream`` when it is a terminal (as the CLI's)."""

    def __init__(self, stream: io.StringIO, enabled: bool = True) -> None:
        self.bars = Bars(enabled, stream)

    def say(self, message: str = "") -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def progress(self, total: int | None, desc: str):
        return self.bars.progress(total, desc)


def _build(stream: io.StringIO, enabled: bool = True) -> tuple[object, str]:
    monitor = make_monitor(EngineBackend("tensorrt-rtx", FAKE_TRT, "1.7"), Drawn(stream, enabled))
    monitor.phase_start("Building engine", None, 3)
    assert all(monitor.step_complete("Building engine", step) for step in range(3))
    monitor.phase_finish("Building engine")
    return monitor, stream.getvalue()


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()], ids=["file", "terminal"])
def test_bars_only_on_a_terminal(stream: io.StringIO) -> None:
    tty = stream.isatty()
    _, written = _build(stream)
    assert draws_bars(True, stream) is tty
    if tty:
        assert "Building engine" in written and "\r" in written and "0/3" in written
    else:
        assert written == ""  # no carriage returns or escape codes in a log


def test_no_bars_when_not_asked_even_on_a_terminal() -> None:
    _, written = _build(Terminal(), enabled=False)
    assert written == "" and draws_bars(False, Terminal()) is False


def test_a_closed_or_bare_stream_draws_nothing() -> None:
    closed = io.StringIO()
    closed.close()
    assert draws_bars(True, closed) is False and draws_bars(True, object()) is False


def test_the_monitor_still_cancels_without_bars() -> None:
    monitor = make_monitor(EngineBackend("tensorrt-rtx", FAKE_TRT, "1.7"), SILENT)
    monitor.phase_start("Building engine", None, 2)
    monitor.cancelled = True  # what the Ctrl-C handler sets
    assert monitor.step_complete("Building engine", 0) is False  # TensorRT abandons the build


def test_sigterm_during_a_build_cancels_it_and_ends_as_terminated() -> None:
    """SIGTERM asks TensorRT to stop at its next step (as Ctrl-C does), then exits 143, not minutes later."""
    import os
    import signal
    from types import SimpleNamespace

    from resnet_deploy.engine.progress import cancel_on_interrupt
    from resnet_deploy.errors import Terminated

    monitor = SimpleNamespace(cancelled=False)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with cancel_on_interrupt(monitor):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while "TensorRT builds"
            assert monitor.cancelled  # the build is told to stop; the process is not killed
    assert signal.getsignal(signal.SIGTERM) is before
