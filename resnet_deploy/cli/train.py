"""``resnet-deploy train``: the paper's recipes on digits, CIFAR or ImageFolder data."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.model_spec import ModelSpec
from resnet_deploy.artifacts.train_state import DEFAULT_DATA, EpochRecord
from resnet_deploy.cli.options import SEED_RANGE, json_option, model_options, model_spec, overwrite_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.errors import ResnetDeployError, Terminated, TrainingError, interrupted_code
from resnet_deploy.files.output_plan import OutputPlan
from resnet_deploy.training.log import describe_epoch

if TYPE_CHECKING:  # seen by mypy and import-linter
    from resnet_deploy.training import distributed, launch, run_state, trainer
else:  # they import torch: `resnet-deploy --help` stays instant
    distributed = lazy_module("resnet_deploy.training.distributed")
    launch = lazy_module("resnet_deploy.training.launch")
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
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Data-parallel processes on this node, started by torchrun's engine (one per GPU; Gloo on CPUs). "
    "Several nodes: torchrun --nnodes ... -m resnet_deploy train.",
)
@click.option("--sync-bn", is_flag=True, help="Data parallel on GPUs: BatchNorm statistics over the global batch.")
@click.option("--gpu-decode", is_flag=True, help="ImageFolder data: decode and augment training JPEGs on the GPU.")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (slower start, faster steps).")
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
    nproc: int | None,
    sync_bn: bool,
    gpu_decode: bool,
    compile_model: bool,
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
      resnet-deploy train --depth 50 --data imagefolder:/data/imagenet --nproc 8 -o runs/r50   # 8 GPUs
      torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
          -m resnet_deploy train --depth 50 --data imagefolder:/data/imagenet -o runs/r50

    \b
    Data parallel: --batch-size is the global batch (the recipe's 256 for ImageNet), split evenly
    over the processes; the schedule stays the recipe's. Rank 0 writes the run directory.
    """
    spec = model_spec(kwargs)
    _check_usage(spec, checkpoint, new_head, resume, max_bad_fraction)
    if nproc is not None and not distributed.launched():
        _launch(nproc, _run_dir(output, resume, spec, data))
        return
    world, device = distributed.join(device) if distributed.launched() else (distributed.World(), device)
    out = Reporter(as_json) if world.is_main else _Quiet(as_json)
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
        sync_bn=sync_bn,
        compile=compile_model,
        gpu_decode=gpu_decode,
    )
    run_dir = _run_dir(output, resume, spec, data)
    progress = not no_progress and sys.stderr.isatty()
    with _one_of_many(world):
        result = _train(options, run_dir, resume=resume, overwrite=overwrite, progress=progress, out=out, world=world)
    _report(out, result)


class _Quiet(Reporter):
    """Ranks other than 0: nothing on stdout (rank 0 reports the run); warnings are rank 0's too."""

    def say(self, message: str = "") -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def result(self, payload: dict[str, Any]) -> None:
        pass


def _launch(nproc: int, run_dir: Path) -> None:
    """``--nproc N``: this same command in N processes; a failure named by rank, with how to go on."""
    ctx = click.get_current_context()
    try:
        launch.launch(nproc, _given_options(ctx, skip={"nproc"}))
    except KeyboardInterrupt as exc:
        _exit_interrupted(exc, _epochs_logged(run_dir), run_dir, f" --nproc {nproc}")
    except launch.JobFailed as exc:
        resumable = exc.exit_code != 2 and (run_dir / run_state.STATE_FILE).is_file()
        hint = f"; continue with: resnet-deploy train --resume {run_dir} --nproc {nproc}" if resumable else ""
        raise launch.JobFailed(f"{exc}{hint}", exc.exit_code) from None


def _given_options(ctx: click.Context, skip: set[str]) -> list[str]:
    """The options given on this command line, as arguments again (the processes get the same ones)."""
    args: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in skip or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            continue
        value, flag = ctx.params[param.name], max(param.opts, key=len)
        if param.is_flag:
            args += [flag] if value else []
        else:
            args += [flag, str(value)]
    return args


@contextlib.contextmanager
def _one_of_many(world: distributed.World) -> Iterator[None]:
    """Under torchrun: errors named by rank and left where torchrun reports them; a process stopped
    because another failed ends quietly (that one says why); the process group is left at the end."""
    if not world.distributed:
        yield
        return
    finished = False
    try:
        yield
        finished = True
    except distributed.PeerFailed as exc:
        distributed.record_failure(f"{world.label()}: {exc}", exc.exit_code)
        raise SystemExit(exc.exit_code) from None
    except ResnetDeployError as exc:
        exc.args = (f"{world.label()}: {exc}",)
        distributed.record_failure(str(exc), exc.exit_code)
        if launch.LAUNCHED_BY_US in os.environ:  # `train --nproc` prints it once, for the whole job
            raise SystemExit(exc.exit_code) from None
        raise
    except Exception as exc:  # not KeyboardInterrupt: `_train` reports where the run stands
        if not distributed.lost_peer(exc):
            raise
        message = f"{world.label()}: lost contact with another process (it failed or was killed; its error says why)"
        distributed.record_failure(message)
        if launch.LAUNCHED_BY_US in os.environ:
            raise SystemExit(2) from None
        raise TrainingError(message) from None
    finally:
        distributed.leave(world, finished)


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
    world: distributed.World,
) -> trainer.TrainResult:
    """The run, under the run directory's lock (rank 0's): two `train -o DIR` cannot both pass its checks."""
    current: trainer.Trainer | None = None

    def on_epoch(row: EpochRecord) -> None:
        out.say(describe_epoch(row, current.plan.epochs if current is not None and current.plan else 0))

    lock = run_state.run_lock(run_dir, warn=out.warn) if world.is_main else contextlib.nullcontext()
    try:
        with lock:
            current = trainer.Trainer(
                options,
                run_dir,
                resume=resume,
                on_epoch=on_epoch,
                on_info=out.say,
                on_warn=out.warn,
                progress=progress,
                world=world,
            )
            if not run_state.resumes_in_place(resume, run_dir):
                world.decide(lambda: _check_run_files(run_dir, options.checkpoint, overwrite))
            return current.run()
    except KeyboardInterrupt as exc:
        if not world.is_main or launch.LAUNCHED_BY_US in os.environ:  # rank 0, or `--nproc`, says where it stands
            raise SystemExit(interrupted_code(exc)) from None
        _exit_interrupted(exc, current.epochs_done if current is not None else 0, run_dir)


def _check_run_files(run_dir: Path, checkpoint: str | None, overwrite: bool) -> None:
    """A run never replaces files it did not write (a model.pt of no run), nor its starting checkpoint."""
    plan = OutputPlan("train", overwrite=overwrite)
    plan.read(checkpoint, "starting checkpoint")
    for name in run_state.RUN_FILES:
        plan.write(run_dir / name, f"run file {name}", with_companion=False)
    plan.check()


def _epochs_logged(run_dir: Path) -> int:
    """Epochs the run's log holds (rank 0 wrote it; this process only launched the job)."""
    try:
        rows = json.loads((run_dir / "log.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(rows) if isinstance(rows, list) else 0


def _exit_interrupted(exc: KeyboardInterrupt, epochs_done: int, run_dir: Path, how_run: str = "") -> NoReturn:
    last = f"epoch {epochs_done} is saved in {run_dir}" if epochs_done else "no epoch finished, nothing was saved"
    how = "terminated" if isinstance(exc, Terminated) else "interrupted"
    click.echo(f"\n{how}; {last}; continue with: resnet-deploy train --resume {run_dir}{how_run}", err=True)
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
