"""The paper's schedules, scaled: milestones, warm-up and batch scaling as fractions of training."""

from __future__ import annotations

import pytest

from resnet_deploy.errors import TrainingError
from resnet_deploy.training.recipes import Plan, get_recipe, make_plan


def test_paper_cifar_schedule_at_the_papers_scale() -> None:
    # 64k iterations of batch 128: lr 0.1, /10 at 32k and 48k (He et al. 2015, section 4.2)
    recipe = get_recipe("paper-cifar", "cifar")
    plan = make_plan(recipe, train_images=128 * 400, depth=56, epochs=160, on_digits=False)
    assert plan.total_steps == 64000 and plan.milestone_steps == (32000, 48000) and plan.warmup_steps == 0
    assert (recipe.momentum, recipe.weight_decay, plan.batch_size) == (0.9, 1e-4, 128)
    assert [plan.lr_at(s) for s in (0, 31999, 32000, 47999, 48000, 63999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


def test_resnet110_warms_up_at_001_for_400_of_64k_steps() -> None:
    plan = make_plan(get_recipe("paper-cifar", "cifar"), train_images=128 * 400, depth=110, epochs=160, on_digits=False)
    assert plan.warmup_steps == 400
    assert plan.lr_at(0) == pytest.approx(0.01) and plan.lr_at(399) == pytest.approx(0.01)
    assert plan.lr_at(400) == pytest.approx(0.1)


def test_schedule_scales_to_short_runs() -> None:
    plan = make_plan(get_recipe(None, "cifar"), train_images=1437, depth=20, epochs=30, on_digits=True)
    assert plan.steps_per_epoch == 12 and plan.total_steps == 360 and plan.milestone_steps == (180, 270)
    assert make_plan(get_recipe(None, "cifar"), train_images=1437, depth=20, epochs=None, on_digits=True).epochs == 20
    assert (
        make_plan(get_recipe(None, "cifar"), train_images=50000, depth=20, epochs=None, on_digits=False).epochs == 164
    )


def test_paper_imagenet_recipe() -> None:
    recipe = get_recipe(None, "imagenet")
    plan = make_plan(recipe, train_images=1_281_167, depth=50, epochs=None, on_digits=False)
    assert recipe.name == "paper-imagenet" and plan.batch_size == 256 and plan.lr == pytest.approx(0.1)
    assert plan.epochs == 120 and plan.steps_per_epoch == 5005
    assert plan.milestone_steps == tuple(round(plan.total_steps * f) for f in (0.25, 0.5, 0.75))
    assert recipe.normalize == "channel"


def test_batch_size_scales_lr_linearly_unless_given() -> None:
    recipe = get_recipe("paper-imagenet", "imagenet")
    assert make_plan(recipe, train_images=1000, depth=18, epochs=1, on_digits=False, batch_size=64).lr == pytest.approx(
        0.025
    )
    plan = make_plan(recipe, train_images=1000, depth=18, epochs=1, on_digits=False, batch_size=64, lr=0.3)
    assert plan.lr == pytest.approx(0.3)


def test_plan_round_trips_through_a_dict() -> None:
    plan = make_plan(get_recipe("paper-cifar", "cifar"), train_images=999, depth=110, epochs=7, on_digits=False)
    assert Plan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(("kwargs", "message"), [({"epochs": 0}, "`epochs`"), ({"batch_size": -1}, "`batch_size`")])
def test_bad_numbers(kwargs, message) -> None:
    args = {"train_images": 100, "depth": 20, "epochs": 1, "on_digits": False, **kwargs}
    with pytest.raises(TrainingError, match=message):
        make_plan(get_recipe("paper-cifar", "cifar"), **args)


def test_unknown_recipe() -> None:
    with pytest.raises(TrainingError, match="choose one of paper-cifar, paper-imagenet"):
        get_recipe("adamw", "cifar")
