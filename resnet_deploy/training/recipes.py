"""The paper's training recipes, scaled to a dataset's size and the number of epochs.

CIFAR (He et al. 2015, section 4.2): SGD, momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 32k and 48k of 64k iterations (50% and 75% of training); 4-pixel pad + random
crop + horizontal flip; per-pixel mean subtraction. ResNet-110 and deeper start at lr 0.01 until
training error falls below 80% (about 400 iterations of 64k), then go back to 0.1.

ImageNet (section 3.4): SGD, momentum 0.9, weight decay 1e-4, batch 256, lr 0.1 divided by 10 when
the error plateaus, up to 60e4 iterations (about 120 epochs). With no plateau detector the drops
sit at 25/50/75% of training: epochs 30/60/90 of 120, the standard reproduction schedule.
Random-resized crop and flip (the paper's scale augmentation, as torchvision trains it).

Scaling: milestones and warm-up are fractions of the total iterations, so any --epochs keeps the
shape of the schedule; a batch size other than the recipe's scales lr linearly (Goyal et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from resnet_deploy.artifacts.train_state import PlanFields, RecipeFields
from resnet_deploy.errors import TrainingError


@dataclass(frozen=True)
class Recipe:
    name: str
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    milestones: tuple[float, ...]  # fractions of training at which lr is divided by 10
    warmup_fraction: float  # fraction of training at lr * warmup_factor (deep CIFAR nets only)
    warmup_factor: float
    warmup_min_depth: int  # the warm-up applies to depths >= this
    normalize: str  # "pixel-mean" or "channel"
    epochs: int  # default epochs on the recipe's own dataset
    epochs_digits: int  # default epochs on the embedded digits

    def to_dict(self) -> RecipeFields:
        return RecipeFields(
            name=self.name,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            milestones=self.milestones,
            warmup_fraction=self.warmup_fraction,
            warmup_factor=self.warmup_factor,
            warmup_min_depth=self.warmup_min_depth,
            normalize=self.normalize,
            epochs=self.epochs,
            epochs_digits=self.epochs_digits,
        )

    @classmethod
    def from_dict(cls, data: RecipeFields) -> Recipe:
        return cls(
            name=data["name"],
            batch_size=data["batch_size"],
            lr=data["lr"],
            momentum=data["momentum"],
            weight_decay=data["weight_decay"],
            milestones=tuple(data["milestones"]),
            warmup_fraction=data["warmup_fraction"],
            warmup_factor=data["warmup_factor"],
            warmup_min_depth=data["warmup_min_depth"],
            normalize=data["normalize"],
            epochs=data["epochs"],
            epochs_digits=data["epochs_digits"],
        )


RECIPES = {
    "paper-cifar": Recipe(
        name="paper-cifar",
        batch_size=128,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        milestones=(0.5, 0.75),
        warmup_fraction=400 / 64000,
        warmup_factor=0.1,
        warmup_min_depth=110,
        normalize="pixel-mean",
        epochs=164,  # 64k iterations at batch 128 on 50k images
        epochs_digits=20,
    ),
    "paper-imagenet": Recipe(
        name="paper-imagenet",
        batch_size=256,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        milestones=(0.25, 0.5, 0.75),
        warmup_fraction=0.0,
        warmup_factor=1.0,
        warmup_min_depth=10**9,
        normalize="channel",
        epochs=120,
        epochs_digits=20,
    ),
}


def get_recipe(name: str | None, family: str) -> Recipe:
    if name is None:
        name = "paper-cifar" if family == "cifar" else "paper-imagenet"
    if name not in RECIPES:
        raise TrainingError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


@dataclass(frozen=True)
class Plan:
    """A recipe made concrete for one run: everything the schedule depends on, saved for --resume."""

    recipe: Recipe
    epochs: int
    batch_size: int
    lr: float
    steps_per_epoch: int
    warmup_steps: int
    milestone_steps: tuple[int, ...]

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * self.recipe.warmup_factor
        drops = sum(step >= m for m in self.milestone_steps)
        return self.lr * 0.1**drops

    def to_dict(self) -> PlanFields:
        """Stored in ``train_state.pt`` (tuples kept: the same plan, the same bytes)."""
        return PlanFields(
            recipe=self.recipe.to_dict(),
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            steps_per_epoch=self.steps_per_epoch,
            warmup_steps=self.warmup_steps,
            milestone_steps=self.milestone_steps,
        )

    @classmethod
    def from_dict(cls, data: PlanFields) -> Plan:
        """The plan of a stored :class:`PlanFields` (check one read from a file with ``plan_fields``)."""
        return cls(
            recipe=Recipe.from_dict(data["recipe"]),
            epochs=data["epochs"],
            batch_size=data["batch_size"],
            lr=data["lr"],
            steps_per_epoch=data["steps_per_epoch"],
            warmup_steps=data["warmup_steps"],
            milestone_steps=tuple(data["milestone_steps"]),
        )


def make_plan(
    recipe: Recipe,
    *,
    train_images: int,
    depth: int,
    epochs: int | None,
    on_digits: bool,
    batch_size: int | None = None,
    lr: float | None = None,
) -> Plan:
    if epochs is None:
        epochs = recipe.epochs_digits if on_digits else recipe.epochs
    if epochs < 1:
        raise TrainingError(f"`epochs` must be at least 1, got {epochs}", field="epochs")
    batch = recipe.batch_size if batch_size is None else batch_size
    if batch < 2:
        raise TrainingError(
            f"`batch_size` must be at least 2 (BatchNorm trains on batch statistics), got {batch}", field="batch_size"
        )
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise TrainingError(f"`lr` must be a positive number, got {lr}", field="lr")
    base_lr = lr if lr is not None else recipe.lr * batch / recipe.batch_size
    steps = math.ceil(train_images / batch)
    total = epochs * steps
    warmup = math.ceil(total * recipe.warmup_fraction) if depth >= recipe.warmup_min_depth else 0
    milestones = tuple(round(total * f) for f in recipe.milestones)
    return Plan(recipe, epochs, batch, base_lr, steps, warmup, milestones)
