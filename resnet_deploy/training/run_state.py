"""A run directory: the deployable checkpoint, the resumable training state, the log.

    run_dir/model.pt        plain state dict of the latest epoch (export/calibrate/validate take it)
    run_dir/model.pt.json   its metadata: architecture, dataset, classes, mean/std, epochs, test errors
    run_dir/train_state.pt  model + optimizer + step + plan + history: what --resume needs, in one file
    run_dir/log.csv, log.json

Each file is replaced atomically at the end of every epoch, train_state.pt last; an interrupted
run therefore always leaves a consistent last good epoch behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_deploy._io import atomic_output
from resnet_deploy.errors import TrainingError

STATE_FORMAT = "resnet-deploy-train-state/1"
MODEL_FILE = "model.pt"
STATE_FILE = "train_state.pt"


@dataclass
class TrainState:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    epoch: int  # epochs completed
    step: int  # optimizer steps taken
    config: dict[str, Any]  # ResNetConfig.to_dict()
    plan: dict[str, Any]  # Plan.to_dict()
    setup: dict[str, Any]  # data spec, seed, normalisation, class names, mean/std
    history: list[dict[str, Any]]

    def to_payload(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, **self.__dict__}


def save_state(run_dir: Path, state: TrainState) -> None:
    with atomic_output(run_dir / STATE_FILE) as tmp:
        torch.save(state.to_payload(), tmp)


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
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for foreign or damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainingError(f"{path} is not a readable training state ({first}); resume from a run directory") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path} is not a resnet-deploy training state; resume from a run directory")
    payload.pop("format")
    try:
        return TrainState(**payload)
    except TypeError as exc:
        raise TrainingError(f"{path} is an incomplete training state ({exc})") from None
