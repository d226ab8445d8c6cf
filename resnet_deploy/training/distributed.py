"""Data-parallel training across processes: torchrun's environment, the process group, rank 0's say.

``torchrun --nproc_per_node N -m resnet_deploy train ...`` (or ``resnet-deploy train --nproc N``)
starts one process per device and tells each its place through RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/MASTER_PORT. :func:`join` turns that into a :class:`World`: NCCL between GPUs (one per
process, ``cuda:LOCAL_RANK``), Gloo between CPU processes. A plain run is ``World()``: one process,
no process group, and every collective below is the identity, so the trainer has one code path.

What the processes agree on, and how:
- the data: every process computes the epoch's order from (seed, epoch) and takes its part of each
  global batch (``data.Shard``), so no order is ever sent;
- the weights: DDP averages the gradients; running BatchNorm statistics are averaged before each
  evaluation and save (:meth:`World.average_buffers`); :func:`model_digest` checks the replicas;
- decisions only rank 0 can make (the run directory, the state to resume): :meth:`World.decide`
  runs them on rank 0 and sends the outcome, or its error, to the others.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from resnet_deploy.data.base import Shard
from resnet_deploy.errors import PeerFailed, ResnetDeployError, TrainingError

T = TypeVar("T")
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; ``World()`` is a plain, single run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl" or "gloo"; None: no process group

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard | None:
        return Shard(self.rank, self.size) if self.distributed else None

    def label(self) -> str:
        return f"rank {self.rank} of {self.size}"

    # --- collectives: the identity in a plain run ------------------------------------------------------

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the processes (float64: counts stay exact up to 2**53)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        torch.distributed.all_reduce(tensor)
        return [float(v) for v in tensor.cpu()]

    def min(self, value: int) -> int:
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self._device())
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
        return int(tensor.item())

    def gather(self, value: T) -> list[T]:
        """Every process's ``value`` (picklable), in rank order."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(values, value)
        return values

    def decide(self, decision: Callable[[], T]) -> T:
        """``decision()`` run on rank 0 only, its result sent to every process. When it raises, rank 0
        raises it and the others raise :class:`PeerFailed`, so the job ends with one message, not N."""
        if not self.distributed:
            return decision()
        outcome: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                outcome = [("ok", decision())]
            except BaseException as exc:  # sent on before it propagates, or the others wait forever
                error = exc
                outcome = [("failed", str(exc) or type(exc).__name__)]
        torch.distributed.broadcast_object_list(outcome, src=0, device=self._device())
        if error is not None:
            raise error
        status, value = outcome[0]
        if status != "ok":
            raise PeerFailed(value)
        return value  # type: ignore[no-any-return]

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Every process's running BatchNorm statistics replaced by their mean over the processes:
        each saw only its part of the batches, and evaluation and the saved model need one set."""
        if not self.distributed:
            return
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point() and name.endswith(("running_mean", "running_var")):
                torch.distributed.all_reduce(buffer)
                buffer.div_(self.size)

    def check_replicas(self, model: torch.nn.Module, epoch: int) -> None:
        """Refuse to save unless every process holds the same weights and statistics as rank 0."""
        if not self.distributed:
            return
        digests = self.gather(model_digest(model))
        differing = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
        if differing:
            raise TrainingError(
                f"after epoch {epoch} the model of rank {', '.join(map(str, differing))} differs from rank 0's; "
                "the processes diverged (mixed PyTorch versions or devices?); nothing was saved for this epoch"
            )

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer, by name: equal digests, equal models bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def join(device: str, environ: Mapping[str, str] = os.environ) -> tuple[World, str]:
    """Join torchrun's process group: the world, and the device this process trains on."""
    missing = [name for name in ENVIRONMENT if name not in environ]
    if missing:
        raise TrainingError(
            f"started as one of a group (WORLD_SIZE is set) but {', '.join(missing)} is not; "
            "launch with torchrun, or with `nproc=N`",
            field="nproc",
        )
    try:
        rank, size, local_rank = (int(environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise TrainingError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; launch with torchrun") from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        # caught before the rendezvous, which would wait for a process that never comes (SIGTERM does not end it)
        raise TrainingError(
            f"RANK {rank} is not a process of a group of WORLD_SIZE {size} (LOCAL_RANK {local_rank}): ranks run from "
            f"0 to WORLD_SIZE - 1; launch with torchrun, or with `nproc=N`",
            field="nproc",
        )
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_gpu:
        device = _gpu_for(local_rank, device)
    backend = "nccl" if on_gpu else "gloo"
    # NCCL bound to this process's GPU: its communicator starts here (an error surfaces in join, not in the
    # first collective), and barrier() uses that device rather than guessing (torch warns when it guesses)
    bound = torch.device(device) if on_gpu else None
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(minutes=30), device_id=bound)
    return World(rank, size, local_rank, backend), device


def check_node(device: str, nproc: int) -> None:
    """``nproc`` processes on ``device="cuda"`` need as many GPUs on this node (``auto`` takes them when
    present): checked before any is started."""
    if not device.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise TrainingError(
            f"`device={device}` asked for, but PyTorch sees no CUDA GPU; use `device=cpu` (Gloo)", field="device"
        )
    if nproc > count:
        raise TrainingError(
            f"{nproc} processes on `device={device}` need {nproc} GPUs, and this node has {count}; "
            f"use `nproc={count}`, or `device=cpu`",
            field="nproc",
        )


def _gpu_for(local_rank: int, asked: str) -> str:
    if not torch.cuda.is_available():
        raise TrainingError(
            f"`device={asked}` asked for, but PyTorch sees no CUDA GPU; use `device=cpu`", field="device"
        )
    if asked not in ("auto", "cuda"):
        raise TrainingError(
            f"`device={asked}` names one GPU, but each process takes its own (cuda:LOCAL_RANK); use `device=cuda`",
            field="device",
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise TrainingError(
            f"local rank {local_rank} has no GPU of its own: this node has {count}; start at most {count} processes"
        )
    torch.cuda.set_device(local_rank)
    return f"cuda:{local_rank}"


def leave(world: World, finished: bool) -> None:
    """Leave the process group. A finished run's processes leave together: one that tore its
    connections down while rank 0 still wrote the last epoch was killed by SIGABRT in Gloo (seen
    here, 1 of 4 runs). After a failure the others may be gone, so nobody is waited for."""
    if not (world.distributed and torch.distributed.is_initialized()):
        return
    if finished:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective failing because another process died (that one says why):
    torch raises DistError subclasses, or plain RuntimeErrors from deep in Gloo ("Connection reset by
    peer", "Connection closed by peer", a read or write error on the pair's socket)."""
    if isinstance(exc, ResnetDeployError):
        return False
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(word in text for word in ("gloo", "nccl", "by peer", "socket"))
