"""The training progress bar is drawn for a terminal only: a log file or a pipe gets epoch lines."""

from __future__ import annotations

import io
import sys

import pytest

from resnet_deploy.messages import Printed, draws_bars
from resnet_deploy.training.trainer import Trainer, TrainOptions
from tests.cli_helpers import invoke
from tests.factories import write_tiny_cifar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"), train=16, test=4)


def test_stderr_is_terminal_only_for_a_tty(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert draws_bars(True)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file or a pipe
    assert not draws_bars(True)
    monkeypatch.setattr(sys, "stderr", None)  # pythonw
    assert not draws_bars(True)
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)  # isatty raises ValueError
    assert not draws_bars(True)


def test_train_into_a_pipe_writes_no_bar_and_no_escape_codes(cifar_dir, tmp_path) -> None:
    args = ["--depth", "20", "--data", f"cifar10:{cifar_dir}", "--epochs", "1", "--batch-size", "8"]
    result = invoke("train", *args, "-o", str(tmp_path / "r"))  # no --no-progress; stderr is not a terminal
    assert result.exit_code == 0, result.output
    assert "epoch   1/1" in result.stdout
    assert result.stderr == ""  # not a byte of bar, carriage return or escape code
    assert "\r" not in result.output and "\x1b" not in result.output


def test_a_terminal_still_gets_the_bar(cifar_dir, tmp_path, monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    opts = TrainOptions.of(depth=20, data=f"cifar10:{cifar_dir}", epochs=1, batch_size=8)
    Trainer(opts, tmp_path / "tty", out=Printed()).run()
    drawn = terminal.getvalue()
    assert "epoch 1/1" in drawn and "2/2" in drawn and "\r" in drawn  # both steps, redrawn in place
