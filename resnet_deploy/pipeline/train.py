"""``TrainJob``: a training run in its directory, with everything around the loop a run needs: the run
directory's name and lock, the files it may write, and, past one process, the launcher and the
errors of each rank named once.

    from resnet_deploy import TrainJob, plan, run
    result = run(plan(TrainJob.of(depth=20, epochs=3, output="runs/r20")))
    result = run(plan(TrainJob(resume="runs/r20")))      # after Ctrl-C: continues bit for bit

Under torchrun (``torchrun ... -m resnet_deploy train``) each process plans and runs the same job; rank 0
alone takes the lock, writes the run directory and speaks. ``nproc`` starts torchrun's own engine here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts import naming
from resnet_deploy.artifacts.train_state import DEFAULT_DATA
from resnet_deploy.errors import (
    JobFailed,
    PeerFailed,
    ResnetDeployError,
    RunInterrupted,
    Stopped,
    Terminated,
    TrainingError,
    raise_terminated,
)
from resnet_deploy.files.run_dir import check_run_dir, epochs_logged, resumed_dir, resumes_in_place
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.pipeline.job import Job
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last
from resnet_deploy.training.options import TrainOptions
from resnet_deploy.training.torchrun import launched, record_failure

if TYPE_CHECKING:  # they import torch: `resnet-deploy train --help` and planning stay light
    from resnet_deploy.training import distributed, launch, run_state, trainer
    from resnet_deploy.training.trainer import TrainResult
else:
    distributed, launch, run_state, trainer = map(
        lazy_module,
        (
            "resnet_deploy.training.distributed",
            "resnet_deploy.training.launch",
            "resnet_deploy.training.run_state",
            "resnet_deploy.training.trainer",
        ),
    )

_JOB_FIELDS = ("output", "resume", "nproc", "overwrite", "forward")
NO_FLAG = ("model.in_chans", "eval_batch_size")  # options no `train` flag sets: a process started by `nproc` lacks them


def _value(job: TrainJob, name: str) -> object:
    record: object = job.options
    for part in name.split("."):
        record = getattr(record, part)
    return record


@dataclass(frozen=True)
class TrainJob(Job["TrainResult"]):
    """Train as ``options`` say (the paper's recipe by default) into ``output`` (default
    ``runs/<model>-<data>``), or continue the run in ``resume``; ``nproc``: data-parallel processes on this
    node (one per GPU; Gloo on CPUs)."""

    command = "train"

    options: TrainOptions = field(default_factory=TrainOptions)
    output: str | Path | None = None
    resume: str | Path | None = None
    nproc: int | None = None
    overwrite: bool = False
    forward: tuple[str, ...] = ()  # more arguments for each of the ``nproc`` processes (the CLI's --json)

    @classmethod
    def of(cls, **fields: Any) -> TrainJob:
        """The job with the training options given flat: ``TrainJob.of(depth=20, epochs=3, output="runs/r20")``."""
        job = {k: fields.pop(k) for k in _JOB_FIELDS if k in fields}
        return cls(options=TrainOptions.of(**fields), **job)

    def plan(self) -> Plan[TrainResult]:
        options = self.options
        if self.resume is None and options.checkpoint is None and options.model.depth is None:
            raise TrainingError("give `depth` (e.g. `depth=20`), `checkpoint` or `resume`", field="depth")
        if options.new_head and options.checkpoint is None:
            raise TrainingError("`new_head` needs `checkpoint`", field="new_head")
        if not 0 <= options.max_bad_fraction <= 1:
            raise TrainingError("`max_bad_fraction` must be between 0 and 1", field="max_bad_fraction")
        if self.nproc is not None and self.nproc < 1:
            raise TrainingError(f"`nproc` must be at least 1, got {self.nproc}", field="nproc")
        directory = self.run_dir()
        if launched():  # one of torchrun's processes: rank 0 checks the run files, under the lock
            return Plan(self.command, (Train(options, directory, self.resume, self.overwrite),), last)
        check_run_dir(directory, self.resume)  # "resume it" rather than "its files are not ours"
        if self.nproc is not None:
            self.arguments(directory)  # what the processes cannot be told is refused now
            return checked(self.command, [Launch(self, directory)], last)
        step = Train(options, directory, self.resume, self.overwrite)
        return checked(self.command, [step], last, overwrite=self.overwrite)

    def run_dir(self) -> Path:
        """``output``; else the run resumed; else ``runs/<model>-<data>``."""
        if self.output:
            return Path(self.output)
        if self.resume:
            return resumed_dir(self.resume)
        spec = self.options.model
        name = f"{'plain' if spec.plain else 'resnet'}{spec.depth or 'ft'}"
        return naming.run_dir(name, self.options.data or DEFAULT_DATA)

    def arguments(self, run_dir: Path | None = None) -> list[str]:
        """This job as ``resnet-deploy train`` arguments, into ``run_dir`` (its planned directory): what each
        process of ``nproc`` runs (every field given, none of the launcher's own)."""
        options, spec, defaults = self.options, self.options.model, TrainOptions()
        unsent = [name for name in NO_FLAG if _value(self, name) != _value(TrainJob(), name)]
        if unsent:  # a process started on the command line would silently train without them
            raise TrainingError(f"`{unsent[0]}` cannot be sent to the `nproc` processes; leave it out", field=unsent[0])
        args: list[str] = []
        for name, value in dataclasses.asdict(spec).items():
            if value not in (None, False) and name != "in_chans":
                args += [f"--{name.replace('_', '-')}"] + ([] if value is True else [str(value)])
        for f in dataclasses.fields(options):
            value = getattr(options, f.name)
            if f.name in ("model", "eval_batch_size") or value == getattr(defaults, f.name):
                continue
            flag = "--compile" if f.name == "compile" else f"--{f.name.replace('_', '-')}"
            args += [flag] if value is True else [flag, str(value)]
        args += ["--output", str(run_dir or self.run_dir())]
        if self.resume is not None:
            args += ["--resume", str(self.resume)]
        return args + (["--overwrite"] if self.overwrite else [])


@dataclass(frozen=True)
class Train(Step):
    """The run itself, under its directory's lock: two runs on one directory cannot both pass its checks."""

    options: TrainOptions
    run_dir: Path
    resume: str | Path | None = None
    overwrite: bool = False

    @property
    def title(self) -> str:
        if self.resume is not None:
            return f"continue the run in {self.run_dir}"
        model = self.options.checkpoint or f"depth {self.options.model.depth}"
        return f"train {model} on {self.options.data or DEFAULT_DATA} into {self.run_dir}"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.options.checkpoint, "starting checkpoint"))

    def outputs(self) -> tuple[Output, ...]:
        if resumes_in_place(self.resume, self.run_dir):  # its own files, rewritten epoch by epoch
            return ()
        return tuple(
            Output(self.run_dir / name, f"run file {name}", with_companion=False, makes_parent=True)
            for name in naming.RUN_FILES
        )

    def run(self, out: Messages, earlier: Sequence[Any]) -> TrainResult:
        world, device = distributed.join(self.options.device) if launched() else (distributed.World(), None)
        options = self.options if device is None else dataclasses.replace(self.options, device=device)
        with _one_of_many(world):
            result = self._train(options, world, out if world.is_main else SILENT)
        return dataclasses.replace(result, rank=world.rank)

    def _check_outputs(self) -> None:
        checked(TrainJob.command, [self], last, overwrite=self.overwrite)

    def _train(self, options: TrainOptions, world: Any, out: Messages) -> TrainResult:
        current: trainer.Trainer | None = None
        lock = run_state.run_lock(self.run_dir, out) if world.is_main else contextlib.nullcontext()
        try:
            with lock:
                current = trainer.Trainer(options, self.run_dir, resume=self.resume, out=out, world=world)
                if self.outputs():  # again under the lock: what another run wrote meanwhile is not ours
                    world.decide(self._check_outputs)
                return current.run()
        except KeyboardInterrupt as exc:
            if not world.is_main or launch.LAUNCHED_BY_US in os.environ:  # rank 0, or the launcher, says where
                raise Stopped(130 if not isinstance(exc, Terminated) else Terminated.exit_code) from None
            done = current.epochs_done if current is not None else 0
            raise RunInterrupted(self.run_dir, done, isinstance(exc, Terminated)) from None


@dataclass(frozen=True)
class Launch(Step):
    """``nproc`` processes of this same job, started by torchrun's engine; a failure named by its rank."""

    job: TrainJob
    run_dir: Path

    @property
    def title(self) -> str:
        return f"start {self.job.nproc} data-parallel processes training into {self.run_dir}"

    def run(self, out: Messages, earlier: Sequence[Any]) -> None:
        nproc = self.job.nproc
        assert nproc is not None
        distributed.check_node(self.job.options.device, nproc)  # here, once: not once per process and the launcher
        try:
            launch.launch(nproc, [*self.job.arguments(self.run_dir), *self.job.forward])
        except KeyboardInterrupt as exc:
            raise RunInterrupted(
                self.run_dir, epochs_logged(self.run_dir), isinstance(exc, Terminated), nproc
            ) from None
        except JobFailed as exc:
            exc.resumable = exc.exit_code != 2 and (self.run_dir / naming.STATE_FILE).is_file()
            exc.run_dir, exc.nproc = self.run_dir, nproc
            raise


def _say_why_before_stopping() -> None:
    """This process's error is the job's, and it is about to print it and exit. The others stop at once
    (they learn of it from a collective), and torchrun's agent SIGTERMs every survivor as soon as one
    has exited: this line was then lost to "terminated" when rank 0 was slower (1 suite run in ~20).
    From here on the CLI's SIGTERM waits for the line (a handler of the embedding application's is left
    alone); the agent's SIGKILL, 30 s later, still ends a hang."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is raise_terminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def _one_of_many(world: Any) -> Iterator[None]:
    """Under torchrun: errors named by rank and left where torchrun reports them; a process stopped
    because another failed ends quietly (that one says why); the process group is left at the end."""
    if not world.distributed:
        yield
        return
    finished = False
    try:
        yield
        finished = True
    except PeerFailed as exc:
        record_failure(f"{world.label()}: {exc}", exc.exit_code)
        raise Stopped(exc.exit_code) from None
    except Stopped:
        raise
    except ResnetDeployError as exc:
        exc.args = (f"{world.label()}: {exc}",)
        record_failure(str(exc), exc.exit_code)
        if launch.LAUNCHED_BY_US in os.environ:  # `train --nproc` prints it once, for the whole job
            raise Stopped(exc.exit_code) from None
        _say_why_before_stopping()
        raise
    except Exception as exc:  # not KeyboardInterrupt: the run says where it stands
        if not distributed.lost_peer(exc):
            raise
        message = f"{world.label()}: lost contact with another process (it failed or was killed; its error says why)"
        record_failure(message)
        if launch.LAUNCHED_BY_US in os.environ:
            raise Stopped(2) from None
        raise TrainingError(message) from None
    finally:
        distributed.leave(world, finished)
