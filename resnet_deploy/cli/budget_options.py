"""The accuracy-budget options ``calibrate`` and ``build-engine`` share, and the record they make."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from resnet_deploy.cli.options import FiniteFloat, apply_options
from resnet_deploy.quantize.budget import RECOVERIES, BudgetOptions
from resnet_deploy.quantize.qat_options import QatOptions

F = TypeVar("F", bound=Callable[..., Any])
NAMES = (
    "max_top1_drop",
    "gate_on",
    "held_out_images",
    "keep_out_precision",
    "try_methods",
    "recover",
    "qat_epochs",
    "qat_lr",
)
_RECORD = {f.name: f.default for f in dataclasses.fields(BudgetOptions)}  # the defaults are the record's
DEFAULTS = {
    "gate_on": _RECORD["gate"],
    "held_out_images": _RECORD["images"],
    "keep_out_precision": _RECORD["precision"],
    "try_methods": _RECORD["try_methods"],
    "recover": _RECORD["recover"],
    "qat_epochs": QatOptions().epochs,
    "qat_lr": QatOptions().lr,
}


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
        click.option(
            "--recover",
            type=click.Choice(RECOVERIES),
            default=DEFAULTS["recover"],
            show_default=True,
            help="How an over-budget INT8 model gets back within it: keep-out (sensitive layers in FP16), qat "
            "(quantization-aware training, every layer stays INT8), or qat,keep-out (QAT, then keep layers out "
            "of the QAT model if still over).",
        ),
        click.option(
            "--qat-epochs",
            type=click.IntRange(min=1),
            default=DEFAULTS["qat_epochs"],
            show_default=True,
            help="Epochs of quantization-aware training with --recover qat (a re-run with more resumes).",
        ),
        click.option(
            "--qat-lr",
            type=FiniteFloat(min=0, min_open=True),
            default=DEFAULTS["qat_lr"],
            show_default=True,
            help="Peak learning rate of quantization-aware training with --recover qat.",
        ),
    ]
    return apply_options(f, decorators)


def budget_from(kwargs: dict[str, Any]) -> BudgetOptions | None:
    """Pop the budget options out of a command's kwargs: the budget they ask for; None without
    --max-top1-drop (then the others must be unset)."""
    values = {name: kwargs.pop(name) for name in NAMES}
    if values["max_top1_drop"] is None:
        ctx = click.get_current_context()
        given = [name for name in DEFAULTS if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
        tuned = [f"--{name.replace('_', '-')}" for name in given]
        if tuned:
            verb = "tunes" if len(tuned) == 1 else "tune"
            raise click.UsageError(f"{', '.join(tuned)} {verb} the accuracy budget: add --max-top1-drop PP")
        return None
    return BudgetOptions(
        max_top1_drop=values["max_top1_drop"],
        gate=values["gate_on"],
        images=values["held_out_images"],
        precision=values["keep_out_precision"],
        try_methods=values["try_methods"],
        recover=values["recover"],
        qat=QatOptions(epochs=values["qat_epochs"], lr=values["qat_lr"]),
    )
