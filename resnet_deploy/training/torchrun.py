"""What torchrun gives a process of its job, torch-free (plans and the CLI read it without importing torch):
whether this process is one of a group, and where its agent reads a failed process's one-line error."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

ERROR_FILE = "TORCHELASTIC_ERROR_FILE"  # where torchrun's agent reads a failed worker's message


def record_failure(message: str, exit_code: int = 2, environ: Mapping[str, str] = os.environ) -> None:
    """Leave this process's one-line error where torchrun's agent reads it, so the job's failure report
    names the rank and the cause (it would otherwise say only "exitcode 2")."""
    path = environ.get(ERROR_FILE)
    if not path:
        return
    try:
        with open(path, "w") as handle:
            # torchrun's own layout (ErrorHandler.record_exception), the one line where a traceback would be
            extra = {"py_callstack": message, "timestamp": str(int(time.time())), "exit_code": exit_code}
            json.dump({"message": {"message": message, "extraInfo": extra}}, handle)
    except OSError:
        pass  # the report is a courtesy; the error itself is printed either way


def launched(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether torchrun (or ``train --nproc``) started this process as one of a group."""
    return "WORLD_SIZE" in environ and "RANK" in environ
