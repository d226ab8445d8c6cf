"""``resnet-deploy train``: the paper's recipes on digits, CIFAR or ImageFolder data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.model_spec import ModelSpec
from resnet_deploy.artifacts.train_state import DEFAULT_DATA, EpochRecord
from resnet_deploy.cli.options import SEED_RANGE, json_option, model_options, model_spec, overwrite_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.errors import Terminated, interrupted_code
from resnet_deploy.output_plan import OutputPlan
from resnet_deploy.training.log import describe_epoch

if TYPE_CHECKING:  # seen by mypy and import-linter
    from resnet_deploy.training import run_state, trainer
else:  # they import torch: `resnet-deploy --help` stays instant
    run_state = lazy_module("resnet_deploy.training.run_state")
    trainer = lazy_module("resnet_deploy.training.trainer")

DATA_HELP = "digits (embedded, default), cifar10:PATH, cifar100:PATH or imagefolder:PATH"


@click.command()
@model_options
@click.option("--data", default=DEFAULT_DATA, show_default=True, help=f"Dataset: {DATA_HELP}.")
@click.option(
    "--recipe",
    type=click.Choice(["paper-cifar", "paper-imagenet"]),
    default=None,
    help="Training recipe (default: paper-cifar for CIFAR depths, paper-imagenet for ImageNet depths).",
)
@click.option("--epochs", type=int, default=None, help="Epochs (default: 20 on digits, 164 CIFAR, 120 ImageNet).")
@click.option("--batch-size", type=int, default=None, help="Batch size (default: the recipe's; lr scales linearly).")
@click.option("--lr", type=float, default=None, help="Base learning rate (default: the recipe's, batch-scaled).")
@click.option(
    "--normalize",
    type=click.Choice(["pixel-mean", "channel"]),
    default=None,
    help="pixel-mean: subtract the training set's mean image, inside the model (paper, CIFAR); "
    "channel: per-channel mean/std.",
)
@click.option("--seed", type=SEED_RANGE, default=None, help="Seed for init, shuffling, augmentation (default 0).")
@click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N."
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Image decoding processes for ImageFolder data (default: min(8, CPU cores)).",
)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Start from these weights.")
@click.option("--new-head", is_flag=True, help="With --checkpoint: a new classifier for the dataset's classes.")
@click.option(
    "--resume",
    type=click.Path(),
    default=None,
    help="Continue the run in this directory from its last epoch (bit for bit).",
)
@click.option(
    "--max-bad-fraction",
    type=float,
    default=0.01,
    show_default=True,
    help="Fraction of undecodable images to skip before failing.",
)
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None, help="Run directory.")
@overwrite_option
@click.option("--no-progress", is_flag=True, help="No progress bar (epoch lines only).")
@json_option
def train(
    data: str,
    recipe: str | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    normalize: str | None,
    seed: int | None,
    device: str,
    workers: int | None,
    checkpoint: str | None,
    new_head: bool,
    resume: str | None,
    max_bad_fraction: float,
    output: str | None,
    overwrite: bool,
    no_progress: bool,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Train a ResNet with the paper's recipe; write a checkpoint every epoch.

    \b
    Examples:
      resnet-deploy train --depth 20 -o runs/r20              # embedded digits, ~2 min on 2 cores
      resnet-deploy train --depth 56 --plain --data cifar10:~/data/cifar-10-batches-py -o runs/p56
      resnet-deploy train --depth 50 --data imagefolder:/data/imagenet -o runs/r50
      resnet-deploy train --resume runs/r20                   # continue after Ctrl-C
    """
    out = Reporter(as_json)
    spec = model_spec(kwargs)
    _check_usage(spec, checkpoint, new_head, resume, max_bad_fraction)
    options = trainer.TrainOptions(
        model=spec,
        data=_given("data", data),  # None: the default, or on --resume the run's own data
        recipe=recipe,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        workers=min(8, os.cpu_count() or 1) if workers is None else workers,
        normalize=normalize,
        checkpoint=checkpoint,
        new_head=new_head,
        max_bad_fraction=max_bad_fraction,
    )
    run_dir = _run_dir(output, resume, spec, data)
    progress = not no_progress and sys.stderr.isatty()
    result = _train(options, run_dir, resume=resume, overwrite=overwrite, progress=progress, out=out)
    _report(out, result)


def _given(name: str, value: str) -> str | None:
    """``value`` when the option was given, None when it is its default (shown in --help)."""
    source = click.get_current_context().get_parameter_source(name)
    return None if source is ParameterSource.DEFAULT else value


def _check_usage(
    spec: ModelSpec, checkpoint: str | None, new_head: bool, resume: str | None, max_bad_fraction: float
) -> None:
    if resume is None and checkpoint is None and spec.depth is None:
        raise click.UsageError("give --depth (e.g. --depth 20), --checkpoint or --resume")
    if new_head and checkpoint is None:
        raise click.UsageError("--new-head needs --checkpoint")
    if not 0 <= max_bad_fraction <= 1:
        raise click.UsageError("--max-bad-fraction must be between 0 and 1")


def _run_dir(output: str | None, resume: str | None, spec: ModelSpec, data: str) -> Path:
    """-o; else the run resumed (the directory of a state file given); else runs/<model>-<data>."""
    if output:
        return Path(output)
    if resume:
        return Path(resume).parent if Path(resume).is_file() else Path(resume)
    return Path("runs") / f"{'plain' if spec.plain else 'resnet'}{spec.depth or 'ft'}-{data.split(':')[0]}"


def _train(
    options: trainer.TrainOptions,
    run_dir: Path,
    *,
    resume: str | None,
    overwrite: bool,
    progress: bool,
    out: Reporter,
) -> trainer.TrainResult:
    """The run, under the run directory's lock: two `train -o DIR` cannot both pass its checks."""
    current: trainer.Trainer | None = None

    def on_epoch(row: EpochRecord) -> None:
        out.say(describe_epoch(row, current.plan.epochs if current is not None and current.plan else 0))

    try:
        with run_state.run_lock(run_dir, warn=out.warn):
            current = trainer.Trainer(
                options, run_dir, resume=resume, on_epoch=on_epoch, on_info=out.say, on_warn=out.warn, progress=progress
            )
            if not run_state.resumes_in_place(resume, run_dir):
                _check_run_files(run_dir, options.checkpoint, overwrite)
            return current.run()
    except KeyboardInterrupt as exc:
        _exit_interrupted(exc, current.epochs_done if current is not None else 0, run_dir)


def _check_run_files(run_dir: Path, checkpoint: str | None, overwrite: bool) -> None:
    """A run never replaces files it did not write (a model.pt of no run), nor its starting checkpoint."""
    plan = OutputPlan("train", overwrite=overwrite)
    plan.read(checkpoint, "starting checkpoint")
    for name in run_state.RUN_FILES:
        plan.write(run_dir / name, f"run file {name}", with_companion=False)
    plan.check()


def _exit_interrupted(exc: KeyboardInterrupt, epochs_done: int, run_dir: Path) -> NoReturn:
    last = f"epoch {epochs_done} is saved in {run_dir}" if epochs_done else "no epoch finished, nothing was saved"
    how = "terminated" if isinstance(exc, Terminated) else "interrupted"
    click.echo(f"\n{how}; {last}; continue with: resnet-deploy train --resume {run_dir}", err=True)
    raise SystemExit(interrupted_code(exc)) from None


def _report(out: Reporter, result: trainer.TrainResult) -> None:
    final = result.final
    if final is not None:
        out.say(
            f"{result.config.name}: test top-1 error {final.test_top1_error:.2f}%, top-5 "
            f"{final.test_top5_error:.2f}% after {result.epochs} epochs ({result.seconds:.0f} s); "
            f"checkpoint {result.checkpoint} (+ .json), log {result.run_dir / 'log.csv'}"
        )
        out.say(f"next: resnet-deploy export --checkpoint {result.checkpoint}")
    out.result({"ok": True, **result.to_dict()})
