"""The accuracy-budget options ``calibrate`` and ``build-engine`` share, and the record they make."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from resnet_deploy.cli.options import FiniteFloat

if TYPE_CHECKING:
    from resnet_deploy.quantize.budget import BudgetOptions

F = TypeVar("F", bound=Callable[..., Any])
NAMES = ("max_top1_drop", "gate_on", "held_out_images", "keep_out_precision", "try_methods")
DEFAULTS = {"gate_on": "estimate", "held_out_images": 256, "keep_out_precision": "fp16", "try_methods": False}


def budget_options(f: F) -> F:
    """``--max-top1-drop`` and the options that tune the search it starts."""
    decorators = [
        click.option(
            "--max-top1-drop",
            type=FiniteFloat(min=0),
            default=None,
            metavar="PP",
            help="INT8 within an accuracy budget: keep the most sensitive layers out of INT8 until top-1 error "
            "on held-out test images rises at most PP percentage points over FP32. Gates on the point estimate "
            "unless --gate-on upper-bound.",
        ),
        click.option(
            "--gate-on",
            type=click.Choice(["estimate", "upper-bound"]),
            default=DEFAULTS["gate_on"],
            show_default=True,
            help="Compare --max-top1-drop with the measured drop (estimate) or with the upper bound of its 95% "
            "interval (stricter: needs enough held-out images).",
        ),
        click.option(
            "--held-out-images",
            type=click.IntRange(min=1),
            default=DEFAULTS["held_out_images"],
            show_default=True,
            help="Test-split images the drop is measured on (none is a calibration image).",
        ),
        click.option(
            "--keep-out-precision",
            type=click.Choice(["fp16", "fp32"]),
            default=DEFAULTS["keep_out_precision"],
            show_default=True,
            help="What a layer kept out of INT8 computes in (FP16: Casts in the graph, so strongly typed TensorRT "
            "runs it in FP16).",
        ),
        click.option(
            "--try-methods",
            is_flag=True,
            help="Search with each calibration method (entropy, percentile, minmax); keep the one that meets "
            "the budget with the most MACs in INT8.",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def budget_from(kwargs: dict[str, Any]) -> BudgetOptions | None:
    """The budget the options ask for; None without --max-top1-drop (then the others must be unset)."""
    if kwargs["max_top1_drop"] is None:
        ctx = click.get_current_context()
        given = [name for name in DEFAULTS if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
        tuned = [f"--{name.replace('_', '-')}" for name in given]
        if tuned:
            verb = "tunes" if len(tuned) == 1 else "tune"
            raise click.UsageError(f"{', '.join(tuned)} {verb} the accuracy budget: add --max-top1-drop PP")
        return None
    from resnet_deploy.quantize.budget import BudgetOptions

    return BudgetOptions(
        max_top1_drop=kwargs["max_top1_drop"],
        gate=kwargs["gate_on"],
        images=kwargs["held_out_images"],
        precision=kwargs["keep_out_precision"],
        try_methods=kwargs["try_methods"],
    )
