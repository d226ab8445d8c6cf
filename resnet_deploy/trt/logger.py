"""The one TensorRT logger per module and process, which keeps the errors for our messages."""

from __future__ import annotations

from typing import Any

_LOGGERS: dict[int, tuple[Any, Any]] = {}  # id(module) -> (module, its logger)


def make_logger(trt: Any) -> Any:
    """The TensorRT logger of this process for ``trt``: keeps the errors for our messages.

    TensorRT keeps the first logger it is given for the whole process, so there is one per module,
    shared by every build and engine; an operation reports only its own errors with
    ``mark = logger.mark()`` before it and ``logger.since(mark)`` after.
    """
    if id(trt) not in _LOGGERS:
        _LOGGERS[id(trt)] = (trt, _new_logger(trt))  # the module is kept so its id is never reused
    return _LOGGERS[id(trt)][1]


LAYERS_HEADER = "Layers:"  # the builder's report of an engine's layers (detailed profiling, TensorRT-RTX)


class ErrorLog:
    """The errors TensorRT logged, and which of them came after a mark; and the last layer report."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.layer_report: str | None = None  # the builder's last ``Layers:`` message

    def mark(self) -> int:
        return len(self.errors)

    def since(self, mark: int, last: int = 3) -> str:
        """The last ``last`` errors logged after ``mark``, joined, or "no error message"."""
        return "; ".join(self.errors[mark:][-last:]) or "no error message from TensorRT"


def _new_logger(trt: Any) -> Any:

    class Logger(trt.ILogger, ErrorLog):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            ErrorLog.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg.strip())
            elif msg.startswith(LAYERS_HEADER):
                self.layer_report = msg

    return Logger()
