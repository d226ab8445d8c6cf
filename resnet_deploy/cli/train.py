"""``resnet-deploy train``: the paper's recipes on digits, CIFAR or ImageFolder data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from resnet_deploy.cli.options import SEED_RANGE, json_option, model_kwargs, model_options, overwrite_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.training.log import describe_epoch

DATA_HELP = "digits (embedded, default), cifar10:PATH, cifar100:PATH or imagefolder:PATH"


@click.command()
@model_options
@click.option("--data", default="digits", show_default=True, help=f"Dataset: {DATA_HELP}.")
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
    from resnet_deploy.output_plan import OutputPlan
    from resnet_deploy.training.trainer import Trainer, TrainOptions

    out = Reporter(as_json)
    model_opts = model_kwargs(kwargs)
    if resume is None and checkpoint is None and model_opts["depth"] is None:
        raise click.UsageError("give --depth (e.g. --depth 20), --checkpoint or --resume")
    if new_head and checkpoint is None:
        raise click.UsageError("--new-head needs --checkpoint")
    if not 0 <= max_bad_fraction <= 1:
        raise click.UsageError("--max-bad-fraction must be between 0 and 1")
    options = TrainOptions(
        **model_opts,
        data=data,
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
    run_dir = Path(output) if output else (Path(resume) if resume else None)
    if run_dir is None:
        name = f"{'plain' if options.plain else 'resnet'}{options.depth or 'ft'}-{data.split(':')[0]}"
        run_dir = Path("runs") / name
    if resume and Path(resume).is_file():
        run_dir = Path(output) if output else Path(resume).parent

    def on_info(line: str) -> None:
        out.say(line)

    def on_epoch(row: dict[str, Any]) -> None:
        out.say(describe_epoch(row, trainer.plan.epochs if trainer is not None and trainer.plan else 0))

    from resnet_deploy.training.run_state import RUN_FILES, STATE_FILE, run_lock

    trainer: Trainer | None = None
    try:
        # the checks below run under the lock: two `train -o DIR` cannot both pass them
        with run_lock(run_dir, warn=out.warn):
            trainer = Trainer(
                options,
                run_dir,
                resume=resume,
                on_epoch=on_epoch,
                on_info=on_info,
                on_warn=out.warn,
                progress=not no_progress and sys.stderr.isatty(),
            )
            resumed_here = resume is not None and Path(resume).resolve() in (
                run_dir.resolve(),
                (run_dir / STATE_FILE).resolve(),
            )
            if not resumed_here:  # a run never replaces files it did not write (a model.pt of no run)
                plan = OutputPlan("train", overwrite=overwrite)
                plan.read(checkpoint, "starting checkpoint")
                for name in RUN_FILES:
                    plan.write(run_dir / name, f"run file {name}", with_companion=False)
                plan.check()
            result = trainer.run()
    except KeyboardInterrupt as exc:
        from resnet_deploy.errors import Terminated, interrupted_code

        done = trainer.epochs_done if trainer is not None else 0
        last = f"epoch {done} is saved in {run_dir}" if done else "no epoch finished, nothing was saved"
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        click.echo(f"\n{how}; {last}; continue with: resnet-deploy train --resume {run_dir}", err=True)
        raise SystemExit(interrupted_code(exc)) from None
    final = result.final
    if final:
        out.say(
            f"{result.config.name}: test top-1 error {final['test_top1_error']:.2f}%, top-5 "
            f"{final['test_top5_error']:.2f}% after {result.epochs} epochs ({result.seconds:.0f} s); "
            f"checkpoint {result.checkpoint} (+ .json), log {result.run_dir / 'log.csv'}"
        )
        out.say(f"next: resnet-deploy export --checkpoint {result.checkpoint}")
    out.result({"ok": True, **result.to_dict()})
