"""The JSON-able half of a training run's resumable state (``train_state.pt``), as typed records.

``train_state.pt`` is one ``torch.save``'d dict, format ``resnet-deploy-train-state/N``: the model's
and the optimizer's tensors (which stay with ``training.run_state.TrainState``) beside the records
here, each stored as its plain dict (``torch.load(weights_only=True)`` reads nothing else):

- :class:`RunSetup`: what a run fixes at its start and keeps across --resume (data, seed, normalisation);
- :class:`PlanFields`: the schedule (``training.recipes.Plan``, which computes the learning rate from it);
- :class:`EpochRecord`: one epoch's figures, a row of the run's history and of ``log.csv``/``log.json``.

Readers are lenient where older files lack something (an epoch row logged before the undecodable
files' paths were kept) and refuse a newer format, or a wrong type, with one line naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from resnet_deploy.artifacts.versions import format_tag, read_version
from resnet_deploy.errors import ArtifactError

KIND, VERSION = "resnet-deploy-train-state", 1
FORMAT = format_tag(KIND, VERSION)
NOT_OURS = "resume from a run directory"
DEFAULT_DATA = "digits"  # the embedded dataset: what a new run trains on when given no data


def read_format(payload: object, source: str) -> int:
    """The format version of a loaded ``train_state.pt`` payload, when this release reads it."""
    tag = payload.get("format") if isinstance(payload, dict) else None
    if not isinstance(tag, str) or not tag.startswith(f"{KIND}/"):
        raise ArtifactError(f"{source} is not a resnet-deploy training state; {NOT_OURS}")
    return read_version(tag, KIND, VERSION, source, not_ours=NOT_OURS)


# --- checking what a file holds -------------------------------------------------------------------------

_NUMBER = (int, float)


def _field(data: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str) -> Any:
    """``data[key]``, refused in one line when absent or not one of ``kinds`` (bool is no number)."""
    if key not in data:
        raise ArtifactError(f"{where} has no {key!r}")
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ArtifactError(f"{where}: {key!r} is a {type(value).__name__}, not a {names}")
    return value


def _items(value: Any, kinds: tuple[type, ...], key: str, where: str) -> tuple[Any, ...]:
    """A list's (or tuple's) items, each one of ``kinds``."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
        names = " or ".join(k.__name__ for k in kinds)
        raise ArtifactError(f"{where}: {key!r} must be a list of {names}")
    return tuple(value)


def _mapping(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ArtifactError(f"{where} is a {type(data).__name__}, not a dict")
    return data


# --- the run's setup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSetup:
    """What a run fixes at its start and keeps across --resume."""

    data: str  # the dataset spec (``digits``, ``cifar10:/abs/path``, ...)
    seed: int
    normalize: str  # "pixel-mean" (inside the model) or "channel"
    mean: tuple[float, ...]  # per channel; 0 with pixel-mean
    std: tuple[float, ...]  # per channel; 1 with pixel-mean
    class_names: tuple[str, ...]
    init_checkpoint: str | None = None  # the weights a fine-tuning run started from

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "seed": self.seed,
            "normalize": self.normalize,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
            "init_checkpoint": self.init_checkpoint,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "the run's setup") -> RunSetup:
        d = _mapping(data, where)
        return cls(
            data=_field(d, "data", (str,), where),
            seed=_field(d, "seed", (int,), where),
            normalize=_field(d, "normalize", (str,), where),
            mean=_items(d.get("mean"), _NUMBER, "mean", where),
            std=_items(d.get("std"), _NUMBER, "std", where),
            class_names=_items(d.get("class_names"), (str,), "class_names", where),
            init_checkpoint=_field(d, "init_checkpoint", (str, type(None)), where) if "init_checkpoint" in d else None,
        )


# --- the schedule ---------------------------------------------------------------------------------------


class RecipeFields(TypedDict):
    """``training.recipes.Recipe`` as stored: the paper's hyperparameters."""

    name: str
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    milestones: Sequence[float]  # fractions of training at which lr is divided by 10
    warmup_fraction: float
    warmup_factor: float
    warmup_min_depth: int
    normalize: str
    epochs: int
    epochs_digits: int


class PlanFields(TypedDict):
    """``training.recipes.Plan`` as stored: a recipe made concrete for one run."""

    recipe: RecipeFields
    epochs: int
    batch_size: int
    lr: float
    steps_per_epoch: int
    warmup_steps: int
    milestone_steps: Sequence[int]


_RECIPE_NUMBERS = ("lr", "momentum", "weight_decay", "warmup_fraction", "warmup_factor")
_RECIPE_INTS = ("batch_size", "warmup_min_depth", "epochs", "epochs_digits")
_PLAN_INTS = ("epochs", "batch_size", "steps_per_epoch", "warmup_steps")


def plan_fields(data: object, where: str = "the run's plan") -> PlanFields:
    """A stored plan, checked field by field (values kept as they are: the schedule is bit for bit)."""
    d = _mapping(data, where)
    r = _mapping(d.get("recipe"), f"{where}'s recipe")
    rw = f"{where}'s recipe"
    recipe = RecipeFields(
        name=_field(r, "name", (str,), rw),
        batch_size=_field(r, "batch_size", (int,), rw),
        lr=_field(r, "lr", _NUMBER, rw),
        momentum=_field(r, "momentum", _NUMBER, rw),
        weight_decay=_field(r, "weight_decay", _NUMBER, rw),
        milestones=_items(r.get("milestones"), _NUMBER, "milestones", rw),
        warmup_fraction=_field(r, "warmup_fraction", _NUMBER, rw),
        warmup_factor=_field(r, "warmup_factor", _NUMBER, rw),
        warmup_min_depth=_field(r, "warmup_min_depth", (int,), rw),
        normalize=_field(r, "normalize", (str,), rw),
        epochs=_field(r, "epochs", (int,), rw),
        epochs_digits=_field(r, "epochs_digits", (int,), rw),
    )
    return PlanFields(
        recipe=recipe,
        epochs=_field(d, "epochs", (int,), where),
        batch_size=_field(d, "batch_size", (int,), where),
        lr=_field(d, "lr", _NUMBER, where),
        steps_per_epoch=_field(d, "steps_per_epoch", (int,), where),
        warmup_steps=_field(d, "warmup_steps", (int,), where),
        milestone_steps=_items(d.get("milestone_steps"), (int,), "milestone_steps", where),
    )


# --- one epoch's figures --------------------------------------------------------------------------------

FIGURES = (
    "lr",
    "train_loss",
    "train_top1_error",
    "test_loss",
    "test_top1_error",
    "test_top5_error",
    "images_per_second",
    "epoch_seconds",
)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run: a row of its history, of ``log.csv`` and ``log.json`` (errors in percent).

    ``record["test_top1_error"]`` reads a field as :meth:`to_dict` writes it (lists for tuples), for
    code written against the dict rows this record replaces.
    """

    epoch: int
    lr: float  # the learning rate of the epoch's last step
    train_loss: float
    train_top1_error: float
    test_loss: float
    test_top1_error: float
    test_top5_error: float  # top-k with k = min(5, classes)
    images_per_second: float  # training throughput
    epoch_seconds: float  # training and evaluation
    skipped_images: int = 0  # undecodable images left out, training and test
    skipped_paths: tuple[str, ...] = ()  # the first of them (rows of older runs have none)
    processes: int = 1  # data-parallel processes that trained the epoch (its global batch was split over them)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            **{name: getattr(self, name) for name in FIGURES},
            "skipped_images": self.skipped_images,
            "skipped_paths": list(self.skipped_paths),
            "processes": self.processes,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "an epoch row") -> EpochRecord:
        """A row as logged or saved; a figure an older row lacks reads as NaN, skipped files as none."""
        d = _mapping(data, where)
        figures = {name: _field(d, name, _NUMBER, where) if name in d else math.nan for name in FIGURES}
        return cls(
            epoch=_field(d, "epoch", (int,), where),
            skipped_images=_field(d, "skipped_images", (int,), where) if "skipped_images" in d else 0,
            skipped_paths=_items(d["skipped_paths"], (str,), "skipped_paths", where) if "skipped_paths" in d else (),
            processes=_field(d, "processes", (int,), where) if "processes" in d else 1,
            **figures,
        )


def history_records(rows: object, where: str = "the run's history") -> list[EpochRecord]:
    if not isinstance(rows, list | tuple):
        raise ArtifactError(f"{where} is a {type(rows).__name__}, not a list")
    return [EpochRecord.from_dict(row, f"row {i + 1} of {where}") for i, row in enumerate(rows)]
