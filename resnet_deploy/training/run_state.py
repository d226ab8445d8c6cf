"""A run directory: the deployable checkpoint, the resumable training state, the log.

    run_dir/model.pt        plain state dict of the latest epoch (export/calibrate/validate take it)
    run_dir/model.pt.json   its metadata: architecture, dataset, classes, mean/std, epochs, test errors
    run_dir/train_state.pt  model + optimizer + step + plan + history: what --resume needs, in one file
    run_dir/log.csv, log.json

Each file is replaced atomically at the end of every epoch, train_state.pt last; an interrupted
run therefore always leaves a consistent last good epoch behind.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_deploy._io import atomic_output
from resnet_deploy.artifacts.model_spec import ResNetConfig
from resnet_deploy.artifacts.naming import LOCK_FILE, STATE_FILE
from resnet_deploy.artifacts.train_state import (
    FORMAT,
    NOT_OURS,
    EpochRecord,
    RunSetup,
    history_records,
    plan_fields,
    read_format,
)
from resnet_deploy.errors import ArtifactError, OutputPathError, ResnetDeployError, TrainingError
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.models.checkpoint import load_state_into, pickled_global, torch_load_reason
from resnet_deploy.models.resnet import ResNet
from resnet_deploy.training.recipes import Plan

STATE_FORMAT = FORMAT  # the format tag train_state.pt carries (resnet-deploy-train-state/N)


@contextlib.contextmanager
def run_lock(run_dir: Path, out: Messages = SILENT) -> Iterator[None]:
    """Hold ``run_dir`` for one training process: a second `train` on it is refused, not interleaved.

    An advisory lock (flock) the kernel drops when the holder dies, so kill -9 leaves no stale lock.
    Only the holder cleans up: a directory it made that is still empty at the end (the run failed to
    start) is removed again, before the lock is released. File systems without flock get a warning.
    """
    import fcntl  # inside: POSIX only (the rest of the run directory works everywhere)

    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create run directory {run_dir} ({exc.strerror}); choose another `output`", field="output"
        ) from None
    lock = run_dir / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(fd).st_ino == os.stat(lock).st_ino  # not a lock file a finishing holder just removed
        except BlockingIOError:
            pass
        except FileNotFoundError:
            held = False
        except OSError as exc:  # ENOLCK, EOPNOTSUPP: some network and FUSE mounts have no flock
            out.warn(f"{run_dir} cannot be locked ({exc.strerror}): do not start a second `train` on it meanwhile")
            yield
            return
        if not held:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise TrainingError(
                f"another `resnet-deploy train` (pid {holder}) is writing to {run_dir}; "
                "wait for it to finish, or choose another `output`"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        if held and created:
            try:
                if [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
                    lock.unlink()
                    run_dir.rmdir()
            except OSError:
                pass  # tidying only; never hide the run's own outcome
        os.close(fd)  # releases the lock, after the tidying


@dataclass
class TrainState:
    """What --resume needs: the tensors, and the typed records of ``artifacts.train_state``."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    epoch: int  # epochs completed
    step: int  # optimizer steps taken
    config: ResNetConfig
    plan: Plan
    setup: RunSetup  # data spec, seed, normalisation, class names, mean/std
    history: list[EpochRecord]

    def to_payload(self) -> dict[str, Any]:
        """What ``train_state.pt`` holds: tensors and plain data only (``weights_only`` loads it)."""
        return {
            "format": FORMAT,
            "model": self.model,
            "optimizer": self.optimizer,
            "epoch": self.epoch,
            "step": self.step,
            "config": self.config.to_dict(),
            "plan": self.plan.to_dict(),
            "setup": self.setup.to_dict(),
            "history": [row.to_dict() for row in self.history],
        }

    @classmethod
    def from_payload(cls, payload: object, path: Path) -> TrainState:
        """The state in a loaded payload, written by this release or an older one; one line if damaged."""
        try:
            read_format(payload, str(path))
        except ArtifactError as exc:
            raise TrainingError(str(exc)) from None
        assert isinstance(payload, dict)
        _check_payload(payload, path)
        try:
            return cls(
                model=payload["model"],
                optimizer=payload["optimizer"],
                epoch=payload["epoch"],
                step=payload["step"],
                config=ResNetConfig.from_dict(payload["config"]),
                plan=Plan.from_dict(plan_fields(payload["plan"])),
                setup=RunSetup.from_dict(payload["setup"]),
                history=history_records(payload["history"]),
            )
        except ResnetDeployError as exc:
            raise TrainingError(f"{path} is a damaged training state: {exc}") from None


def save_state(run_dir: Path, state: TrainState) -> None:
    with atomic_output(run_dir / STATE_FILE) as tmp:
        with open(tmp, "wb") as fh:  # same bytes for the same state (see save_checkpoint)
            torch.save(state.to_payload(), fh)


def state_path(resume: str | Path) -> Path:
    path = Path(resume)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise TrainingError(
            f"nothing to resume at {resume}: no {STATE_FILE} (give the run directory of a `resnet-deploy train`)"
        )
    return path


def load_state(resume: str | Path) -> TrainState:
    path = state_path(resume)
    try:
        with warnings.catch_warnings():  # torch's advice on unusual pickles is not ours to relay
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for foreign or damaged files
        raise TrainingError(_unreadable(path, exc)) from None
    state = TrainState.from_payload(payload, path)
    model = ResNet(state.config)
    _check_model(state, model, path)
    _check_optimizer(state, model, path)
    return state


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``path`` did not load, in resnet-deploy's words: torch's own text advises loading it unsafely."""
    if isinstance(exc, pickle.UnpicklingError):
        found = pickled_global(exc)
        if found is None and not zipfile.is_zipfile(path):
            return f"{path} is not a readable training state (it does not unpickle); {NOT_OURS}"
        needs = f" (it pickles {found})" if found else ""
        return (
            f"{path} holds objects other than tensors{needs}: loading it would run code, which resnet-deploy never "
            f"does; resume a run directory written by `resnet-deploy train`, or resave the weights with "
            "torch.save(model.state_dict(), path) and start a new run from them with `checkpoint`"
        )
    why = torch_load_reason(exc) if zipfile.is_zipfile(path) else "neither a zip archive nor a pickle"
    return f"{path} is not a readable training state ({why}); {NOT_OURS}"


_PAYLOAD_FIELDS = {
    "model": dict,
    "optimizer": dict,
    "epoch": int,
    "step": int,
    "config": dict,
    "plan": dict,
    "setup": dict,
    "history": list,
}


def _check_payload(payload: dict[str, Any], path: Path) -> None:
    """Refuse a damaged state now, in one line, not as a torch error deep inside the resume."""
    damaged = f"{path} is a damaged training state"
    missing = [name for name in _PAYLOAD_FIELDS if name not in payload]
    if missing:
        raise TrainingError(f"{path} is an incomplete training state (no {', '.join(missing)})")
    for name, kind in _PAYLOAD_FIELDS.items():
        if not isinstance(payload[name], kind):
            raise TrainingError(f"{damaged}: its {name} is a {type(payload[name]).__name__}, not a {kind.__name__}")
    if payload["epoch"] < 0 or payload["step"] < 0:
        raise TrainingError(f"{damaged}: epoch {payload['epoch']}, step {payload['step']}")
    optimizer = payload["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list):
        raise TrainingError(f"{damaged}: its optimizer state has no state/param_groups")


def _check_model(state: TrainState, model: ResNet, path: Path) -> None:
    """The saved weights fit the saved architecture."""
    try:
        load_state_into(model, state.model, f"the model in {path}")
    except ResnetDeployError as exc:
        raise TrainingError(f"{path} is a damaged training state: {exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise TrainingError(f"{path} is a damaged training state: {type(exc).__name__} {exc}") from None


def _shape(shape: torch.Size) -> str:
    return "x".join(map(str, shape)) or "a scalar"


def _check_optimizer(state: TrainState, model: ResNet, path: Path) -> None:
    """The saved optimizer state fits the model: one parameter group holding each of its parameters in
    order, and every per-parameter tensor (a momentum buffer) of its parameter's shape. Refused in one
    line here, where ``optimizer.load_state_dict`` would raise (or a later step fail) deep in the run."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    groups = state.optimizer["param_groups"]
    fix = "start a new run with another `output`, or resume the run this state came from"
    unfit = f"{path} holds an optimizer state that does not fit its model ({state.config.name})"
    if len(groups) != 1:
        raise TrainingError(f"{unfit}: it has {len(groups)} parameter groups, where training uses 1; {fix}")
    ids = groups[0].get("params") if isinstance(groups[0], dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TrainingError(f"{path} is a damaged training state: its optimizer's parameter group lists no params")
    if len(ids) != len(names):
        raise TrainingError(f"{unfit}: it covers {len(ids)} parameters, the model has {len(names)}; {fix}")
    if len(set(ids)) != len(ids):
        raise TrainingError(f"{path} is a damaged training state: its optimizer lists a parameter twice")
    index = {saved: i for i, saved in enumerate(ids)}
    for saved, entry in state.optimizer["state"].items():
        if saved not in index or not isinstance(entry, dict):
            raise TrainingError(f"{path} is a damaged training state: its optimizer holds state for no parameter")
        i = index[saved]
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shapes[i]:
                raise TrainingError(
                    f"{unfit}: its {key} for {names[i]} is {_shape(value.shape)}, the parameter "
                    f"{_shape(shapes[i])}; {fix}"
                )
