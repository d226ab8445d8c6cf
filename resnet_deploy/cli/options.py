"""Options shared by several commands."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from resnet_deploy.artifacts.model_spec import ModelSpec

F = Callable[..., Any]
SEED_RANGE = click.IntRange(0, 2**63 - 1)  # what torch.manual_seed takes


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and inf (NaN compares false, so it slips through ranges)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def overwrite_option(f: F) -> F:
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Replace existing output files that this command did not make from these inputs "
        "(never an input, never another output).",
    )(f)


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["resnet_deploy.json"] = value  # so the error handler can answer in JSON too
    return value


def json_option(f: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=_remember_json,
        expose_value=True,
        is_eager=True,
        help="Print one JSON object (paths, timings, figures) on stdout; the text goes to stderr.",
    )(f)


def model_options(f: F) -> F:
    """--depth and the architecture options; None means the family default (see `info`)."""
    options = [
        click.option(
            "--depth", type=int, default=None, help="18/34/50/101/152 (ImageNet) or 20/32/44/56/110/1202 (CIFAR)."
        ),
        click.option(
            "--variant",
            type=click.Choice(["v1", "v1.5"]),
            default=None,
            help="Bottleneck stride placement: v1 = paper (first 1x1), v1.5 = torchvision (3x3, default).",
        ),
        click.option("--plain", is_flag=True, help="The paper's plain twin: same layers, no shortcuts."),
        click.option(
            "--shortcut",
            type=click.Choice(["A", "B", "C"], case_sensitive=False),
            default=None,
            help="A: zero-padding identity (CIFAR default); B: projection where shapes change "
            "(ImageNet default); C: projection everywhere.",
        ),
        click.option(
            "--num-classes",
            type=click.IntRange(min=1),
            default=None,
            help="Classifier outputs (default 1000 ImageNet, 10 CIFAR).",
        ),
        click.option(
            "--input-size",
            type=click.IntRange(min=1),
            default=None,
            help="Square input side (default 224 ImageNet, 32 CIFAR; at least the model's total stride).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def model_spec(kwargs: dict[str, Any]) -> ModelSpec:
    """Pop the architecture options out of a command's kwargs, as one :class:`ModelSpec`."""
    keys = ("depth", "variant", "plain", "shortcut", "num_classes", "input_size")
    values = {k: kwargs.pop(k) for k in keys}
    if values["shortcut"]:
        values["shortcut"] = values["shortcut"].upper()
    return ModelSpec(**values)
