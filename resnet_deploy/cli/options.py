"""Option groups, each declared once and shared by every command that takes it (the model, calibration
and output groups; the budget group is ``budget_options``), each turning its options into the library's
record; and ``execute``, the plan-run-print every command ends with. Defaults come from the records."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from resnet_deploy.artifacts.model_spec import ModelSpec
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import Job, plan, run
from resnet_deploy.quantize.options import METHODS, CalibrationOptions

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
SEED_RANGE = click.IntRange(0, 2**63 - 1)  # what torch.manual_seed takes
CALIBRATION = CalibrationOptions()


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and inf (NaN compares false, so it slips through ranges)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class IntList(click.ParamType):
    """``1,8,32`` -> (1, 8, 32)."""

    name = "N,N,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(b) for b in str(value).split(",") if b.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)


class NameList(click.ParamType):
    """``onnxruntime,openvino`` -> ("onnxruntime", "openvino"), without repeats."""

    name = "NAME,NAME,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        return tuple(dict.fromkeys(b.strip() for b in str(value).split(",") if b.strip()))


def apply_options(f: F, decorators: Sequence[Callable[[Any], Any]]) -> F:
    """``f`` with an option group's decorators, in the order ``--help`` lists them."""
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def data_option(help_text: str) -> Callable[[F], F]:
    """--data: a dataset spec (digits, cifar10:PATH, cifar100:PATH, imagefolder:PATH, folder:PATH); what it is
    for, per command."""
    return click.option("--data", default=None, metavar="SPEC", help=help_text)


progress_option = click.option(
    "--no-progress",
    is_flag=True,
    help="No progress bars (none are drawn when stderr is not a terminal, or with --json).",
)


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


def output_options(output_help: str | None, *, directory: bool = False) -> Callable[[F], F]:
    """-o (when the command writes a main file), --overwrite, --dry-run and --json."""

    def group(f: F) -> F:
        decorators: list[Callable[[F], F]] = []
        if output_help is not None:
            kind = click.Path(file_okay=False) if directory else click.Path(dir_okay=False)
            decorators.append(click.option("-o", "--output", type=kind, default=None, help=output_help))
        decorators += [
            click.option(
                "--overwrite",
                is_flag=True,
                help="Replace existing output files that this command did not make from these inputs "
                "(never an input, never another output).",
            ),
            click.option(
                "--dry-run",
                is_flag=True,
                help="Check everything and print the plan (each step, what it reads and writes); do nothing.",
            ),
            json_option,
        ]
        return apply_options(f, decorators)

    return group


def model_options(f: F) -> F:
    """--depth and the architecture options; None means the family default (see `info`)."""
    return apply_options(
        f,
        [
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
        ],
    )


def model_spec(kwargs: dict[str, Any]) -> ModelSpec:
    """Pop the architecture options out of a command's kwargs, as one :class:`ModelSpec`."""
    keys = ("depth", "variant", "plain", "shortcut", "num_classes", "input_size")
    values = {k: kwargs.pop(k) for k in keys}
    if values["shortcut"]:
        values["shortcut"] = values["shortcut"].upper()
    return ModelSpec(**values)


def calibration_options(data_help: str) -> Callable[[F], F]:
    """How INT8 calibration measures ranges: the same options for every command that calibrates."""

    def group(f: F) -> F:
        return apply_options(
            f,
            [
                data_option(data_help),
                click.option(
                    "--calib-images",
                    type=click.IntRange(min=1),
                    default=CALIBRATION.count,
                    show_default=True,
                    help="Images to calibrate on.",
                ),
                click.option("--method", type=click.Choice(METHODS), default=CALIBRATION.method, show_default=True),
                click.option(
                    "--percentile",
                    type=FiniteFloat(min=50, max=100),
                    default=CALIBRATION.percentile,
                    show_default=True,
                    help="For --method percentile (50..100).",
                ),
                click.option(
                    "--cache-dir",
                    type=click.Path(file_okay=False),
                    default=str(CALIBRATION.cache_dir),
                    show_default=True,
                    help="Content-addressed calibration cache (ranges JSON + TensorRT calibration cache).",
                ),
                click.option("--no-cache", is_flag=True, help="Neither read nor write the calibration cache."),
            ],
        )

    return group


def calibration_from(kwargs: dict[str, Any]) -> CalibrationOptions:
    """Pop the calibration options out of a command's kwargs, as one :class:`CalibrationOptions`."""
    no_cache, cache_dir = kwargs.pop("no_cache"), kwargs.pop("cache_dir")
    return CalibrationOptions(
        method=kwargs.pop("method"),
        percentile=kwargs.pop("percentile"),
        data=kwargs.pop("data"),
        count=kwargs.pop("calib_images"),
        cache_dir=None if no_cache else Path(cache_dir),
    )


def execute(job: Job[R], out: Reporter, dry_run: bool) -> R | None:
    """Plan ``job`` (every output checked), then print the plan (``dry_run``) or run it; the result."""
    planned = plan(job)
    if dry_run:
        for line in planned.describe():
            out.say(line)
        out.result({"ok": True, "dry_run": True, **planned.to_dict()})
        return None
    return run(planned, out)
