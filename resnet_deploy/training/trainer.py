"""The training loop: the paper's recipes, deterministic per seed, resumable bit for bit.

Determinism: the model is initialised from ``seed``; every epoch's shuffling and augmentation
draw from a generator seeded by (seed, epoch), so epoch ``e`` is a pure function of the state after
epoch ``e-1``: resuming from a saved state replays exactly what an uninterrupted run would do.
GPU: bf16 autocast and channels_last, data resident on the device for in-memory datasets.

Data parallel (under torchrun, see ``training.distributed``): the plan's batch is the global batch;
each of the N processes trains on its 1/N of every global batch, DDP averages the gradients, so the
schedule is the recipe's whatever N is. Rank 0 alone writes the run directory.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resnet_deploy import __version__
from resnet_deploy.artifacts.model_spec import ModelSpec, ResNetConfig, model_config
from resnet_deploy.artifacts.naming import MODEL_FILE
from resnet_deploy.artifacts.train_state import DEFAULT_DATA, EpochRecord, RunSetup
from resnet_deploy.data import Batch, Dataset, open_dataset
from resnet_deploy.data.base import name_files
from resnet_deploy.errors import DatasetError, OutputPathError, PeerFailed, ResnetDeployError, TrainingError
from resnet_deploy.files.run_dir import check_run_dir
from resnet_deploy.messages import SILENT, Messages, Progress
from resnet_deploy.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from resnet_deploy.models.resnet import ResNet
from resnet_deploy.training.distributed import World
from resnet_deploy.training.log import describe_epoch, write_log
from resnet_deploy.training.metrics import EvalResult, evaluate, topk_correct
from resnet_deploy.training.options import TrainOptions
from resnet_deploy.training.recipes import Plan, Recipe, get_recipe, make_plan
from resnet_deploy.training.run_state import (
    TrainState,
    load_state,
    save_state,
)

# cuBLAS reads its workspace setting once, when its first handle is made: set here, on import, before
# this process does any CUDA work through the trainer (the setting makes cuBLAS results reproducible)
CUBLAS_WORKSPACE = ":4096:8"
_CUBLAS_SET_LATE = "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.cuda.is_initialized()
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)

NORMALIZATIONS = ("pixel-mean", "channel")
# Undecodable files an epoch's log row lists (all are counted): up to 1% of ImageNet may be skipped,
# and 12,800 paths in every row of log.json, rewritten each epoch, would swamp it.
LOGGED_SKIPPED_PATHS = 100

Normalizer = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    config: ResNetConfig
    epochs: int
    history: list[EpochRecord]
    seconds: float
    resumed_from: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    rank: int = 0  # under torchrun: this process's (rank 0 reports the run)

    @property
    def final(self) -> EpochRecord | None:
        return self.history[-1] if self.history else None

    def to_dict(self) -> dict[str, Any]:
        final = self.final
        return {
            "run_dir": str(self.run_dir),
            "checkpoint": str(self.checkpoint),
            "architecture": self.config.name,
            "epochs": self.epochs,
            "resumed_from_epoch": self.resumed_from,
            "device": self.device,
            "seconds": round(self.seconds, 2),
            "test_top1_error": final.test_top1_error if final else None,
            "test_top5_error": final.test_top5_error if final else None,
            "train_top1_error": final.train_top1_error if final else None,
            "history": [row.to_dict() for row in self.history],
            **self.extra,
        }


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"unknown `device={name!r}`; use auto, cpu, cuda or cuda:N", field="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("`device=cuda` asked for, but PyTorch sees no CUDA GPU; use `device=cpu`", field="device")
    if device.type == "cuda" and device.index is not None and device.index >= (count := torch.cuda.device_count()):
        gpus = f"cuda:0 to cuda:{count - 1}" if count > 1 else "cuda:0"
        raise TrainingError(
            f"`device={name}` asked for, but this machine has {count} GPU(s): use {gpus}", field="device"
        )
    return device


def make_deterministic(device: torch.device) -> str | None:
    """Same seed, same weights. CPU kernels are deterministic already (and the switch below costs
    3.5 s of torch._inductor imports), so only CUDA needs telling: cuDNN's deterministic algorithms
    without autotuning, PyTorch's deterministic kernels (and Inductor's deterministic mode), cuBLAS's
    fixed workspace. Not the NaN fill of new tensors that deterministic mode adds by default: it
    only shows reads of uninitialised memory, and costs an extra write of every activation.
    Returns a warning when cuBLAS may have started before its setting was made (embedded use)."""
    if device.type != "cuda":
        return None
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    if _CUBLAS_SET_LATE:
        return (
            "CUDA had started before resnet_deploy.training was imported, so cuBLAS may not use the "
            f"reproducible workspace: set CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} before any CUDA work "
            "for bit-identical runs"
        )
    return None


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


# --- a new run's model: built, or loaded for fine-tuning --------------------------------------------------


def _fresh_model(options: TrainOptions, dataset: Dataset) -> tuple[ResNet, RunSetup]:
    """Build (or load for fine-tuning) the model and fix its normalisation from the training data."""
    _check_class_count(options, dataset)
    torch.manual_seed(options.seed or 0)  # before any weight is drawn
    if options.checkpoint:
        return _fine_tuned_model(options, options.checkpoint, dataset)
    return _new_model(options, dataset)


def _check_class_count(options: TrainOptions, dataset: Dataset) -> None:
    asked = options.model.num_classes
    if asked is not None and asked != dataset.num_classes:
        raise TrainingError(
            f"dataset {dataset.name} has {dataset.num_classes} classes, not {asked}; drop `num_classes`",
            field="num_classes",
        )


def _fine_tuned_model(options: TrainOptions, checkpoint: str, dataset: Dataset) -> tuple[ResNet, RunSetup]:
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, replace(options.model, num_classes=None))
    if model.config.num_classes != dataset.num_classes:
        model = _with_new_head(model, options, dataset)
    default_mean, default_std = model.config.default_mean_std
    normalize = "pixel-mean" if model.config.pixel_mean else "channel"
    if options.normalize not in (None, normalize):
        raise TrainingError(
            f"checkpoint {checkpoint} was trained with {normalize} normalisation; drop `normalize`", field="normalize"
        )
    setup = RunSetup(
        data=dataset.spec,
        seed=options.seed or 0,
        normalize=normalize,
        mean=(ckpt.meta and ckpt.meta.mean) or tuple(default_mean),
        std=(ckpt.meta and ckpt.meta.std) or tuple(default_std),
        class_names=dataset.class_names,
        init_checkpoint=str(ckpt.path),
    )
    return model, setup


def _with_new_head(model: ResNet, options: TrainOptions, dataset: Dataset) -> ResNet:
    """``model`` with a fresh classifier for the dataset's classes (--new-head), the rest kept."""
    if not options.new_head:
        raise TrainingError(
            f"checkpoint {options.checkpoint} has {model.config.num_classes} classes but dataset "
            f"{dataset.name} has {dataset.num_classes}; pass `new_head` to train a new classifier",
            field="new_head",
        )
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    headed = ResNet(replace(model.config, num_classes=dataset.num_classes))
    headed.load_state_dict(state, strict=False)
    return headed


def _new_model(options: TrainOptions, dataset: Dataset) -> tuple[ResNet, RunSetup]:
    spec = options.model
    if spec.depth is None:
        raise TrainingError("give `depth` (e.g. `depth=20`) or `checkpoint`", field="depth")
    family = model_config(ModelSpec(spec.depth, plain=spec.plain, shortcut=spec.shortcut)).family
    normalize = _normalization(options, dataset, get_recipe(options.recipe, family))
    size = spec.input_size if spec.input_size is not None else dataset.native_size
    config = model_config(
        replace(spec, num_classes=dataset.num_classes, input_size=size), pixel_mean=normalize == "pixel-mean"
    )
    model = ResNet(config)
    mean, std = _normalization_stats(model, dataset)
    setup = RunSetup(dataset.spec, options.seed or 0, normalize, mean, std, dataset.class_names, None)
    return model, setup


def _normalization(options: TrainOptions, dataset: Dataset, recipe: Recipe) -> str:
    """The normalisation asked for, else the recipe's; per channel where images vary in size."""
    normalize = options.normalize or recipe.normalize
    if normalize not in NORMALIZATIONS:
        raise TrainingError(f"unknown normalisation {normalize!r}; choose {' or '.join(NORMALIZATIONS)}")
    if normalize == "pixel-mean" and dataset.native_size is None:
        if options.normalize:
            raise TrainingError(
                f"{dataset.name}: per-pixel mean needs fixed-size images; use `normalize=channel`", field="normalize"
            )
        normalize = "channel"  # ImageFolder images vary in size: per-channel mean/std
    return normalize


def _normalization_stats(model: ResNet, dataset: Dataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std a new model's inputs are normalised with; a pixel-mean model gets its mean image."""
    config = model.config
    if model.pixel_mean is not None:
        model.pixel_mean.copy_(dataset.train.pixel_mean(config.input_size))
        return (0.0,) * config.in_chans, (1.0,) * config.in_chans
    mean, std = dataset.default_mean_std or dataset.train.channel_stats(config.input_size)
    return tuple(mean), tuple(std)


# --- where a run starts: fresh, or from its saved state -------------------------------------------------


@dataclass
class _Start:
    """A run's starting point: the model, what the run fixed, and how far it got."""

    model: ResNet
    setup: RunSetup
    plan: Plan
    history: list[EpochRecord]
    first_epoch: int
    step: int
    optimizer_state: dict[str, Any] | None = None


def _fresh_start(options: TrainOptions, dataset: Dataset) -> _Start:
    model, setup = _fresh_model(options, dataset)
    config = model.config
    plan = make_plan(
        get_recipe(options.recipe, config.family),
        train_images=len(dataset.train),
        depth=config.depth,
        epochs=options.epochs,
        on_digits=dataset.spec == DEFAULT_DATA,
        batch_size=options.batch_size,
        lr=options.lr,
    )
    return _Start(model, setup, plan, history=[], first_epoch=1, step=0)


def _resumed_start(state: TrainState, dataset: Dataset) -> _Start:
    model = ResNet(state.config)
    model.load_state_dict(state.model)
    if tuple(dataset.class_names) != state.setup.class_names:
        raise TrainingError(
            f"the data at {state.setup.data} now has classes {list(dataset.class_names)[:4]}..., not those the run "
            "started with; restore the dataset or start a new run"
        )
    history = list(state.history)
    return _Start(model, state.setup, state.plan, history, state.epoch + 1, state.step, state.optimizer)


def _restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any], run_dir: Path) -> None:
    """The optimizer as the resumed run left it (``run_state.load_state`` checked that the state fits)."""
    try:
        optimizer.load_state_dict(saved)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise TrainingError(
            f"the optimizer state in {run_dir} does not fit the model ({type(exc).__name__}); "
            "start a new run with another `output`, or resume the run this state came from"
        ) from None


def _check_resume(options: TrainOptions, state: TrainState, source: str) -> None:
    """The options given with --resume must not contradict the run being resumed."""
    config = state.config
    if options.model.plain and not config.plain:
        raise TrainingError(
            f"{source} trains {config.name}, not a plain network; drop `plain`, or start a new run with another "
            "`output`",
            field="plain",
        )
    if options.checkpoint:
        raise TrainingError(f"{source} continues from its own state; drop `checkpoint`", field="checkpoint")
    for flag, (value, recorded) in _resume_settings(options, state).items():
        if value is not None and value != recorded:
            raise TrainingError(
                f"{source} trains {config.name} with {flag} {recorded}, not {value}; "
                f"drop {flag} to resume it, or start a new run with another `output`"
            )
    if options.data is not None and options.data.partition(":")[0] != state.setup.data.partition(":")[0]:
        raise TrainingError(
            f"{source} was trained on {state.setup.data}, not {options.data}; drop `data`", field="data"
        )


def _resume_settings(options: TrainOptions, state: TrainState) -> dict[str, tuple[Any, Any]]:
    """flag -> (the value given, None when not; the value the run records)."""
    config, plan, spec = state.config, state.plan, options.model
    return {
        "`depth`": (spec.depth, config.depth),
        "`variant`": (spec.variant, config.variant if config.block == "bottleneck" else spec.variant),
        "`shortcut`": (spec.shortcut, config.shortcut),
        "`num_classes`": (spec.num_classes, config.num_classes),
        "`input_size`": (spec.input_size, config.input_size),
        "`epochs`": (options.epochs, plan.epochs),
        "`batch_size`": (options.batch_size, plan.batch_size),
        "`lr`": (options.lr, plan.lr),
        "`recipe`": (options.recipe, plan.recipe.name),
        "`normalize`": (options.normalize, state.setup.normalize),
        "`seed`": (options.seed, state.setup.seed),
    }


def _data_spec(given: str | None, state: TrainState | None) -> str:
    """The data a run trains on: the spec given, else the default; on --resume, the run's own unless
    the same kind of data was given from somewhere else (moved: the classes are checked)."""
    if state is None:
        return DEFAULT_DATA if given is None else given
    saved = state.setup.data
    return saved if given is None or saved == DEFAULT_DATA else given


# --- one epoch's pieces -------------------------------------------------------------------------------


@dataclass
class _Loop:
    """What every epoch of a run works with."""

    model: ResNet  # what is evaluated and saved
    net: torch.nn.Module  # what trains: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    dataset: Dataset
    plan: Plan
    setup: RunSetup
    normalize: Normalizer
    autocast: bool  # bf16 on CUDA
    sync_bn: bool = False


@dataclass
class _Tally:
    """One epoch's training pass so far."""

    lr: float
    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    skipped: int = 0
    skipped_paths: list[str] = field(default_factory=list)

    def count(self, loss: float, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
        self.loss_sum += loss * n
        self.correct += topk_correct(logits.detach().float(), labels, 1)
        self.seen += n


def _check_finite(loss: float, epoch: int, step: int, plan: Plan) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"training diverged: loss {loss} at epoch {epoch}, step {step}; lower `lr` "
            f"(now {plan.lr:g}) or check the data",
            field="lr",
        )


def _epoch_record(
    epoch: int, tally: _Tally, test: EvalResult, undecodable: list[str], train_seconds: float, seconds: float
) -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        lr=tally.lr,
        train_loss=tally.loss_sum / max(tally.seen, 1),
        train_top1_error=100 * (1 - tally.correct / max(tally.seen, 1)),
        test_loss=test.loss,
        test_top1_error=test.top1_error,
        test_top5_error=test.top5_error,
        images_per_second=tally.seen / train_seconds if train_seconds > 0 else 0.0,
        epoch_seconds=seconds,
        skipped_images=tally.skipped + test.skipped,
        skipped_paths=tuple(undecodable[:LOGGED_SKIPPED_PATHS]),
    )


def _describe_start(loop: _Loop, device: torch.device, world: World) -> str:
    config, dataset, plan = loop.model.config, loop.dataset, loop.plan
    size = config.input_size
    warmup = (
        f" (lr x{plan.recipe.warmup_factor:g} for the first {plan.warmup_steps} steps)" if plan.warmup_steps else ""
    )
    return (
        f"training {config.name} on {dataset.name} ({len(dataset.train)} train / {len(dataset.test)} test images, "
        f"{dataset.num_classes} classes, {size}x{size}) on {_where(device, world, loop)}: recipe {plan.recipe.name}, "
        f"{plan.epochs} epochs x {plan.steps_per_epoch} steps of batch {plan.batch_size}, lr {plan.lr:g}{warmup}"
        f", lr /10 at steps {', '.join(map(str, plan.milestone_steps))}; {loop.setup.normalize} normalisation"
    )


def _where(device: torch.device, world: World, loop: _Loop) -> str:
    if not world.distributed:
        return device.type
    sync = ", SyncBatchNorm" if loop.sync_bn else ""
    processes = f"{world.size} {device.type} process{'es' if world.size > 1 else ''}"
    return f"{processes} ({world.backend}, batch {loop.plan.batch_size // world.size} each{sync})"


def _checkpoint_metadata(loop: _Loop, final: EpochRecord, epoch: int) -> dict[str, Any]:
    setup, plan = loop.setup, loop.plan
    return {
        "dataset": setup.data if setup.data == DEFAULT_DATA else loop.dataset.spec,
        "class_names": list(setup.class_names),
        "mean": list(setup.mean),
        "std": list(setup.std),
        "normalize": setup.normalize,
        "recipe": plan.recipe.name,
        "seed": setup.seed,
        "epochs": epoch,
        "epochs_planned": plan.epochs,
        "test_top1_error": round(final.test_top1_error, 4),
        "test_top5_error": round(final.test_top5_error, 4),
        "train_top1_error": round(final.train_top1_error, 4),
        "init_checkpoint": setup.init_checkpoint,
        "producer_version": __version__,
    }


def _cpu_copy(model: ResNet) -> ResNet:
    copy = ResNet(model.config)
    copy.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return copy


def _opened_state(options: TrainOptions, run_dir: Path, resume: str | Path | None) -> TrainState | None:
    """The state to resume (checked against the options), and the run directory checked: rank 0's job."""
    state = None
    if resume is not None:
        state = load_state(resume)
        _check_resume(options, state, f"the run in {resume}")
    check_run_dir(run_dir, resume)
    return state


def _check_split(plan: Plan, world: World) -> None:
    if plan.batch_size % world.size:
        raise TrainingError(
            f"the batch of {plan.batch_size} does not split evenly over {world.size} processes; "
            f"give `batch_size` a multiple of {world.size} (the global batch), or start {_divisors(plan.batch_size)}",
            field="batch_size",
        )


def _divisors(batch: int) -> str:
    fits = [n for n in range(2, 17) if batch % n == 0]
    return f"{', '.join(map(str, fits))} processes" if fits else "one process"


def _check_sync_bn(device: torch.device) -> None:
    if device.type != "cuda":
        raise TrainingError(
            "`sync_bn` needs GPUs (PyTorch's SyncBatchNorm has no CPU kernel); drop `sync_bn`", field="sync_bn"
        )


def _summed(world: World, tally: _Tally) -> tuple[int, int, int, float]:
    """The epoch's counts over every process (a plain run's own)."""
    seen, correct, skipped, loss_sum = world.sum([tally.seen, tally.correct, tally.skipped, tally.loss_sum])
    return int(seen), int(correct), int(skipped), loss_sum


def train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    lr: float,
    autocast: bool,
) -> tuple[float, torch.Tensor]:
    """One SGD step on normalised ``images`` (N, C, H, W): channels_last, bf16 autocast when asked
    (on CUDA), the loss in float32. Returns the loss (a host sync, for the divergence check) and the
    logits. The trainer's every step, and what ``scripts/bench_train_step.py`` times."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    x = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = net(x)
        loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), logits


# --- the run --------------------------------------------------------------------------------------------


class Trainer:
    """One run: ``Trainer(options, run_dir).run()``; ``resume=run_dir`` continues the run there.

    What the run says (its start, each epoch's line, warnings, the step bar) goes to ``out``, from rank 0
    only; ``on_epoch`` is called with each epoch's record once it is saved (to plot it, or to stop the run).
    """

    def __init__(
        self,
        options: TrainOptions,
        run_dir: str | Path,
        *,
        resume: str | Path | None = None,
        out: Messages = SILENT,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        world: World | None = None,
    ) -> None:
        self.world = world or World()  # under torchrun: training.distributed.join()
        main = self.world.is_main  # only rank 0 speaks and writes
        self.run_dir = Path(run_dir)
        self.on_epoch = (on_epoch if main else None) or (lambda row: None)
        self.out = out if main else SILENT
        self._warned_paths: set[str] = set()  # undecodable files named once per run, not every epoch
        self.device = pick_device(options.device)
        self.plan: Plan | None = None  # set once run() has opened the data
        self.seed = 0  # the run's seed, fixed by run()
        self.epochs_done = 0  # epochs saved to run_dir so far (for the Ctrl-C message)
        self.model: ResNet | None = None  # this process's model, once run() has built it
        # rank 0 reads the run directory and sends what it found: the other nodes need no copy of it
        self.state: TrainState | None = self.world.decide(lambda: _opened_state(options, self.run_dir, resume))
        self.data = _data_spec(options.data, self.state)
        self.options = replace(options, data=self.data)  # the caller's options are left as they were

    def run(self) -> TrainResult:
        start = time.perf_counter()
        late = make_deterministic(self.device)
        if late:
            self.out.warn(late)
        dataset = open_dataset(self.data, workers=self.options.decoding_workers, decode_on=self._decode_device())
        begin = _fresh_start(self.options, dataset) if self.state is None else _resumed_start(self.state, dataset)
        self._refuse_together(lambda: _check_split(begin.plan, self.world))
        if self.world.is_main:
            self._make_run_dir()
        self.plan, self.seed, self.epochs_done = begin.plan, begin.setup.seed, begin.first_epoch - 1
        loop = self._loop(begin, dataset)
        self.model = loop.model
        self.out.say(_describe_start(loop, self.device, self.world))
        if begin.history and begin.history[-1].processes != self.world.size:
            self.out.say(
                f"resuming on {self.world.size} process{'es' if self.world.size > 1 else ''} a run that ran on "
                f"{begin.history[-1].processes}: the same global batch of {begin.plan.batch_size}, split differently"
            )
        if self.options.sync_bn and not self.world.distributed:
            self.out.say("`sync_bn` has nothing to synchronise in a single process; it applies under torchrun/`nproc`")
        if begin.first_epoch > begin.plan.epochs:
            self.out.say(f"the run in {self.run_dir} already finished its {begin.plan.epochs} epochs; nothing to do")
        history = self._train_epochs(loop, begin)
        return TrainResult(
            run_dir=self.run_dir,
            checkpoint=self.run_dir / MODEL_FILE,
            config=loop.model.config,
            epochs=begin.plan.epochs,
            history=history,
            seconds=time.perf_counter() - start,
            resumed_from=begin.first_epoch - 1,
            device=self.device.type,
            extra={"processes": self.world.size} if self.world.distributed else {},
        )

    def _decode_device(self) -> torch.device | None:
        if not self.options.gpu_decode:
            return None
        if self.device.type != "cuda":
            raise TrainingError(
                "`gpu_decode` decodes on the training GPU, and this run trains on the CPU; drop it", field="gpu_decode"
            )
        return self.device

    def _make_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(
                f"cannot create run directory {self.run_dir} ({exc.strerror}); choose another `output`"
            ) from None

    def _loop(self, begin: _Start, dataset: Dataset) -> _Loop:
        """The model on the device, its optimizer (restored on --resume) and the input normalisation."""
        plan = begin.plan
        model = begin.model.to(self.device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=plan.lr, momentum=plan.recipe.momentum, weight_decay=plan.recipe.weight_decay
        )
        if begin.optimizer_state is not None:
            saved = begin.optimizer_state
            self._refuse_together(lambda: _restore_optimizer(optimizer, saved, self.run_dir))
        autocast = self.device.type == "cuda"
        net = self._parallel(model)
        if self.options.compile:
            net = torch.compile(net)  # type: ignore[assignment]
        sync_bn = self.options.sync_bn and self.world.distributed
        return _Loop(
            model, net, optimizer, dataset, plan, begin.setup, self._normalizer(begin.setup), autocast, sync_bn
        )

    def _parallel(self, model: ResNet) -> torch.nn.Module:
        """What trains: ``model`` itself, or under torchrun its DDP wrapper (SyncBatchNorm on request)."""
        if not self.world.distributed:
            return model
        if self.options.sync_bn:
            self._refuse_together(lambda: _check_sync_bn(self.device))
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: model's children are replaced
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _normalizer(self, setup: RunSetup) -> Normalizer:
        if setup.normalize == "pixel-mean":
            return lambda x: x
        mean = torch.tensor(setup.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(setup.std, device=self.device).view(1, -1, 1, 1)
        return lambda x: (x - mean) / std

    def _train_epochs(self, loop: _Loop, begin: _Start) -> list[EpochRecord]:
        """The epochs left, each saved before the next starts; the run's whole history."""
        history, step = list(begin.history), begin.step
        for epoch in range(begin.first_epoch, loop.plan.epochs + 1):
            step, row = self._epoch(loop, epoch, step)
            history.append(row)
            self._save(loop, history, epoch, step)
            self.epochs_done = epoch
            self.out.say(describe_epoch(row, loop.plan.epochs))
            self.on_epoch(row)
        return history

    def _epoch(self, loop: _Loop, epoch: int, step: int) -> tuple[int, EpochRecord]:
        """Train one epoch, then score the test split: the step reached and the epoch's record."""
        started = time.perf_counter()
        step, tally = self._train_pass(loop, epoch, step)
        train_seconds = time.perf_counter() - started
        self.world.average_buffers(loop.model)  # one set of BatchNorm statistics to evaluate and save
        test = self._test_pass(loop)
        undecodable = sorted({path for paths in self.world.gather(tally.skipped_paths) for path in paths})
        undecodable = sorted({*undecodable, *test.skipped_paths})
        self._warn_undecodable(undecodable)
        row = _epoch_record(epoch, tally, test, undecodable, train_seconds, time.perf_counter() - started)
        return step, replace(row, processes=self.world.size)

    def _train_pass(self, loop: _Loop, epoch: int, step: int) -> tuple[int, _Tally]:
        loop.model.train()
        tally = _Tally(lr=loop.plan.lr_at(step))
        bar = self._progress_bar(loop.plan, epoch)
        for batch in self._train_batches(loop, epoch):
            tally.skipped += batch.skipped
            tally.skipped_paths.extend(batch.skipped_paths)
            if self.world.min(len(batch.labels)) < 2:  # BatchNorm cannot train on one image; all skip together
                continue
            tally.lr = loop.plan.lr_at(step)
            loss, logits = self._step(loop, batch, tally.lr)
            step += 1
            _check_finite(loss, epoch, step, loop.plan)
            tally.count(loss, logits, batch.labels)
            bar.update(1)
            bar.note(f"loss={loss:.3f}, lr={tally.lr:g}")
        bar.close()
        tally.seen, tally.correct, tally.skipped, tally.loss_sum = _summed(self.world, tally)
        self._check_skipped(tally.skipped, tally.seen + tally.skipped, "training", tally.skipped_paths)
        return step, tally

    def _progress_bar(self, plan: Plan, epoch: int) -> Progress:
        return self.out.progress(plan.steps_per_epoch, f"epoch {epoch}/{plan.epochs}")

    def _train_batches(self, loop: _Loop, epoch: int) -> Iterator[Batch]:
        """The epoch's shuffled, augmented batches: a pure function of (seed, epoch)."""
        return loop.dataset.train.batches(
            loop.plan.batch_size,
            size=loop.model.config.input_size,
            train=True,
            seed=_epoch_seed(self.seed, epoch),
            device=self.device,
            shard=self.world.shard,
        )

    def _step(self, loop: _Loop, batch: Batch, lr: float) -> tuple[float, torch.Tensor]:
        """One optimizer step at ``lr``: the batch's loss and logits."""
        x = loop.normalize(batch.images)
        return train_step(loop.net, loop.optimizer, x, batch.labels, lr=lr, autocast=loop.autocast)

    def _test_pass(self, loop: _Loop) -> EvalResult:
        result = evaluate(
            loop.model,
            loop.dataset.test,
            size=loop.model.config.input_size,
            normalize=loop.normalize,
            device=self.device,
            batch_size=self.options.eval_batch_size,
            autocast=loop.autocast,
            shard=self.world.shard,  # each process scores its part; the counts are summed
            total=self.world.sum,
        )
        self._check_skipped(result.skipped, result.images + result.skipped, "test", result.skipped_paths)
        return result

    def _warn_undecodable(self, paths: list[str]) -> None:
        """Name undecodable files once a run, not once an epoch."""
        new = [path for path in paths if path not in self._warned_paths]
        if new:
            self._warned_paths.update(new)
            self.out.warn(
                f"skipping {len(new)} undecodable image{'s' if len(new) > 1 else ''}: {name_files(new)}; "
                "remove or fix them"
            )

    def _check_skipped(self, skipped: int, read: int, split: str, paths: list[str] | tuple[str, ...]) -> None:
        """Fail when too many images did not decode (every process sees the same totals: rank 0 says so)."""
        self._refuse_together(lambda: self._check_decoded(skipped, read, split, paths))

    def _refuse_together(self, check: Callable[[], None]) -> None:
        """A check every process makes alike: rank 0 says what failed, the others stop quietly."""
        try:
            check()
        except ResnetDeployError as exc:
            if self.world.is_main:
                raise
            raise PeerFailed(str(exc)) from None

    def _check_decoded(self, skipped: int, read: int, split: str, paths: list[str] | tuple[str, ...]) -> None:
        if read and skipped == read:  # nothing to learn from or to score: errors would be NaN
            raise DatasetError(
                f"none of the {read} {split} images decoded ({name_files(sorted(paths))}); "
                "check the files (are they images?)"
            )
        if skipped and skipped > self.options.max_bad_fraction * read:
            raise DatasetError(
                f"{skipped} of {read} {split} images failed to decode (more than "
                f"{self.options.max_bad_fraction:.1%}): {name_files(sorted(paths))}; remove or fix them, "
                "or raise `max_bad_fraction`",
                field="max_bad_fraction",
            )

    def _save(self, loop: _Loop, history: list[EpochRecord], epoch: int, step: int) -> None:
        """The checkpoint, the log, then the state: an interruption leaves the last good epoch whole.
        Under torchrun rank 0 writes, once every process is seen to hold the same model."""
        self.world.check_replicas(loop.model, epoch)
        if not self.world.is_main:
            return
        cpu_model = _cpu_copy(loop.model)
        save_checkpoint(cpu_model, self.run_dir / MODEL_FILE, _checkpoint_metadata(loop, history[-1], epoch))
        write_log(self.run_dir, history)
        state = TrainState(
            model=cpu_model.state_dict(),
            optimizer=loop.optimizer.state_dict(),
            epoch=epoch,
            step=step,
            config=cpu_model.config,
            plan=loop.plan,
            setup=loop.setup,
            history=list(history),
        )
        save_state(self.run_dir, state)
