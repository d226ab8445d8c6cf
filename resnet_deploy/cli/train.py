"""``resnet-deploy train``: the paper's recipes on digits, CIFAR or ImageFolder data (``TrainJob``)."""

from __future__ import annotations

from typing import Any, NoReturn

import click

from resnet_deploy.artifacts.naming import LOG_FILES
from resnet_deploy.artifacts.train_state import DEFAULT_DATA
from resnet_deploy.cli.options import (
    SEED_RANGE,
    apply_options,
    data_option,
    execute,
    model_options,
    model_spec,
    output_options,
    progress_option,
)
from resnet_deploy.cli.output import Reporter
from resnet_deploy.errors import JobFailed, RunInterrupted
from resnet_deploy.pipeline import TrainJob
from resnet_deploy.training.options import TrainOptions

DEFAULTS = TrainOptions()
DATA_HELP = "digits (embedded, default), cifar10:PATH, cifar100:PATH or imagefolder:PATH"
TRAIN_OPTIONS = (
    "data",
    "recipe",
    "epochs",
    "batch_size",
    "lr",
    "normalize",
    "seed",
    "device",
    "workers",
    "checkpoint",
    "new_head",
    "max_bad_fraction",
    "sync_bn",
    "gpu_decode",
    "compile",
)


def training_options(f: Any) -> Any:
    """What a run trains on and how: the data, the recipe and its overrides, the devices."""
    decorators = [
        data_option(f"Dataset: {DATA_HELP} (default: {DEFAULT_DATA})."),
        click.option(
            "--recipe",
            type=click.Choice(["paper-cifar", "paper-imagenet"]),
            default=None,
            help="Training recipe (default: paper-cifar for CIFAR depths, paper-imagenet for ImageNet depths).",
        ),
        click.option(
            "--epochs", type=int, default=None, help="Epochs (default: 20 on digits, 164 CIFAR, 120 ImageNet)."
        ),
        click.option(
            "--batch-size", type=int, default=None, help="Batch size (default: the recipe's; lr scales linearly)."
        ),
        click.option(
            "--lr", type=float, default=None, help="Base learning rate (default: the recipe's, batch-scaled)."
        ),
        click.option(
            "--normalize",
            type=click.Choice(["pixel-mean", "channel"]),
            default=None,
            help="pixel-mean: subtract the training set's mean image, inside the model (paper, CIFAR); "
            "channel: per-channel mean/std.",
        ),
        click.option(
            "--seed", type=SEED_RANGE, default=None, help="Seed for init, shuffling, augmentation (default 0)."
        ),
        click.option(
            "--device",
            default=DEFAULTS.device,
            show_default=True,
            help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=None,
            help="Image decoding processes for ImageFolder data (default: min(8, CPU cores)).",
        ),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Start from these weights."),
        click.option("--new-head", is_flag=True, help="With --checkpoint: a new classifier for the dataset's classes."),
        click.option(
            "--resume",
            type=click.Path(),
            default=None,
            help="Continue the run in this directory from its last epoch (bit for bit).",
        ),
        click.option(
            "--max-bad-fraction",
            type=float,
            default=DEFAULTS.max_bad_fraction,
            show_default=True,
            help="Fraction of undecodable images to skip before failing.",
        ),
        click.option(
            "--nproc",
            type=click.IntRange(min=1),
            default=None,
            help="Data-parallel processes on this node, started by torchrun's engine (one per GPU; Gloo on "
            "CPUs). Several nodes: torchrun --nnodes ... -m resnet_deploy train.",
        ),
        click.option(
            "--sync-bn", is_flag=True, help="Data parallel on GPUs: BatchNorm statistics over the global batch."
        ),
        click.option(
            "--gpu-decode", is_flag=True, help="ImageFolder data: decode and augment training JPEGs on the GPU."
        ),
        click.option(
            "--compile", "compile", is_flag=True, help="torch.compile the model (slower start, faster steps)."
        ),
        progress_option,
    ]
    return apply_options(f, decorators)


@click.command()
@model_options
@training_options
@output_options("Run directory (default: runs/<model>-<data>).", directory=True)
def train(no_progress: bool, dry_run: bool, as_json: bool, **options: Any) -> None:
    """Train a ResNet with the paper's recipe; write a checkpoint every epoch.

    \b
    Examples:
      resnet-deploy train --depth 20 -o runs/r20              # the embedded digits
      resnet-deploy train --depth 56 --plain --data cifar10:~/data/cifar-10-batches-py -o runs/p56
      resnet-deploy train --depth 50 --data imagefolder:/data/imagenet -o runs/r50
      resnet-deploy train --resume runs/r20                   # continue after Ctrl-C
      resnet-deploy train --depth 50 --data imagefolder:/data/imagenet --nproc 8 -o runs/r50   # 8 GPUs
      torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
          -m resnet_deploy train --depth 50 --data imagefolder:/data/imagenet -o runs/r50

    \b
    Data parallel: --batch-size is the global batch (the recipe's 256 for ImageNet), split evenly
    over the processes; the schedule stays the recipe's. Rank 0 writes the run directory.
    """
    forward = [flag for flag, on in (("--json", as_json), ("--no-progress", no_progress)) if on]
    train_options = TrainOptions(model=model_spec(options), **{name: options.pop(name) for name in TRAIN_OPTIONS})
    job = TrainJob(train_options, forward=tuple(forward), **options)
    out = Reporter(as_json, bars=not no_progress)
    try:
        result = execute(job, out, dry_run)
    except RunInterrupted as exc:
        _say_where_it_stands(exc)
    except JobFailed as exc:
        _name_the_way_on(exc)
    if result is None or result.rank != 0:  # planned only; or launched, or not rank 0: rank 0 reported
        return
    final = result.final
    if final is not None:
        out.say(
            f"{result.config.name}: test top-1 error {final.test_top1_error:.2f}%, top-5 "
            f"{final.test_top5_error:.2f}% after {result.epochs} epochs ({result.seconds:.0f} s); "
            f"checkpoint {result.checkpoint} (+ .json), log {result.run_dir / LOG_FILES[0]}"
        )
        out.say(f"next: resnet-deploy export --checkpoint {result.checkpoint}")
    out.result({"ok": True, **result.to_dict()})


def _say_where_it_stands(exc: RunInterrupted) -> NoReturn:
    done = (
        f"epoch {exc.epochs_done} is saved in {exc.run_dir}"
        if exc.epochs_done
        else "no epoch finished, nothing was saved"
    )
    how = "terminated" if exc.terminated else "interrupted"
    nproc = f" --nproc {exc.nproc}" if exc.nproc else ""
    click.echo(f"\n{how}; {done}; continue with: resnet-deploy train --resume {exc.run_dir}{nproc}", err=True)
    raise SystemExit(exc.exit_code) from None


def _name_the_way_on(exc: JobFailed) -> NoReturn:
    if exc.resumable:
        exc.args = (f"{exc}; continue with: resnet-deploy train --resume {exc.run_dir} --nproc {exc.nproc}",)
    raise exc
