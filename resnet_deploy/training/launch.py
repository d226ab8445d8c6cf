"""``resnet-deploy train --nproc N``: torchrun's engine started for one node, its failures in one line.

The processes are torchrun's own (``torch.distributed.launcher.elastic_launch``, standalone
rendezvous on a free local port, no restarts), each running ``python -m resnet_deploy train`` with
the same options, so ``--nproc N`` trains exactly as ``torchrun --standalone --nproc_per_node N -m
resnet_deploy train`` does. What it adds: a CPU budget per process (OMP_NUM_THREADS, as torchrun
sets it) and, when a process fails, one line naming the rank and its cause (its own message, or the
signal that killed it) instead of torchrun's report.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import STOPPED_BY_PEER, JobFailed, Terminated

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing import api as elastic_api
    from torch.distributed.elastic.multiprocessing import errors as elastic_errors
    from torch.distributed.launcher import api as launcher
else:
    elastic_api = lazy_import("torch.distributed.elastic.multiprocessing.api", extra="train")
    elastic_errors = lazy_import("torch.distributed.elastic.multiprocessing.errors", extra="train")
    launcher = lazy_import("torch.distributed.launcher.api", extra="train")

AGENT_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher")
LAUNCHED_BY_US = "RESNET_DEPLOY_NPROC"  # set for the processes: they leave their errors to the launcher


@dataclass(frozen=True)
class Failure:
    """A process that ended badly: its rank, exit code (negative: the signal that killed it), and the
    one line it left (torchrun's placeholder when it left none)."""

    rank: int
    exitcode: int
    message: str
    intended: int | None = None  # the exit code its error asked for (torchrun may have killed it first)

    @property
    def secondary(self) -> bool:
        """Ended because another process failed: stopped by rank 0's error, cut off from a dead peer,
        or terminated by torchrun's agent cleaning up after the first failure. Never the cause."""
        if self.own_message:
            return STOPPED_BY_PEER in self.message or "lost contact" in self.message
        return self.exitcode in (-signal.SIGTERM, 128 + signal.SIGTERM)

    @property
    def own_message(self) -> bool:
        return self.message.startswith(f"rank {self.rank} of")

    @property
    def shell_code(self) -> int:
        """The exit status its error asked for, else a shell's: 128 + N for signal N."""
        if self.intended is not None:
            return self.intended
        return 128 - self.exitcode if self.exitcode < 0 else self.exitcode or 1


def root_cause(failures: Sequence[Failure]) -> Failure:
    """The failure to report: a process that failed on its own account, before one stopped by others."""
    return sorted(failures, key=lambda f: (f.secondary, not f.own_message, f.rank))[0]


def describe(failure: Failure) -> str:
    if failure.own_message:  # its one-line error, naming itself ("rank 1 of 2: ...")
        return failure.message
    if failure.exitcode < 0:
        try:
            name = signal.Signals(-failure.exitcode).name
        except ValueError:
            name = f"signal {-failure.exitcode}"
        return f"rank {failure.rank} was killed by {name} (out of memory? killed by hand?)"
    return f"rank {failure.rank} failed with exit code {failure.exitcode}, leaving no message (see its output above)"


def _text(message: object) -> str:
    """A failure's message: torchrun keeps an error file's ``{"message": ..., "extraInfo": ...}`` whole."""
    if isinstance(message, dict):
        message = message.get("message", "")
    return str(message)


def _intended(error_file_data: object) -> int | None:
    """The exit code a process recorded with its message (``failures.record_failure``)."""
    message = error_file_data.get("message") if isinstance(error_file_data, dict) else None
    extra = message.get("extraInfo") if isinstance(message, dict) else None
    code = extra.get("exit_code") if isinstance(extra, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def threads_per_process(nproc: int, environ: Mapping[str, str] = os.environ) -> int:
    """The CPU threads each process may use: the user's OMP_NUM_THREADS, else the cores split evenly."""
    given = environ.get("OMP_NUM_THREADS")
    if given and given.isdigit() and int(given) > 0:
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // nproc)


def launch(nproc: int, train_args: Sequence[str]) -> None:
    """Run ``resnet-deploy train *train_args`` in ``nproc`` processes on this node; raise :class:`JobFailed`
    naming the rank and cause when one fails (torchrun then ends the others)."""

    saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", LAUNCHED_BY_US)}
    os.environ["OMP_NUM_THREADS"] = str(threads_per_process(nproc))  # the processes inherit both
    os.environ[LAUNCHED_BY_US] = str(nproc)
    config = launcher.LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    quiet = [logging.getLogger(name) for name in AGENT_LOGGERS]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # its INFO/WARNING lines narrate what the one-line error below says
        logger.setLevel(logging.CRITICAL)
    try:
        launcher.elastic_launch(config, sys.executable)("-m", "resnet_deploy", "train", *train_args)
    except elastic_errors.ChildFailedError as exc:
        failures = [
            Failure(rank, f.exitcode, _text(f.message), _intended(f.error_file_data))
            for rank, f in exc.failures.items()
        ]
        cause = root_cause(failures)
        raise JobFailed(describe(cause), cause.shell_code) from None
    except elastic_api.SignalException as exc:  # the agent's own SIGTERM/SIGINT, once it has stopped the processes
        raise (Terminated() if exc.sigval == signal.SIGTERM else KeyboardInterrupt()) from None
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
