"""The training loop: the paper's recipes, deterministic per seed, resumable bit for bit.

Determinism: the model is initialised from ``seed``; every epoch's shuffling and augmentation
draw from a generator seeded by (seed, epoch), so epoch ``e`` is a pure function of the state after
epoch ``e-1``: resuming from a saved state replays exactly what an uninterrupted run would do.
GPU: bf16 autocast and channels_last, data resident on the device for in-memory datasets.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resnet_deploy import __version__
from resnet_deploy.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from resnet_deploy.data import Dataset, open_dataset
from resnet_deploy.data.base import name_files
from resnet_deploy.errors import DatasetError, OutputPathError, TrainingError
from resnet_deploy.models.config import ResNetConfig, model_config
from resnet_deploy.models.resnet import ResNet
from resnet_deploy.training.log import write_log
from resnet_deploy.training.metrics import evaluate, topk_correct
from resnet_deploy.training.recipes import Plan, get_recipe, make_plan
from resnet_deploy.training.run_state import MODEL_FILE, STATE_FILE, TrainState, load_state, save_state

NORMALIZATIONS = ("pixel-mean", "channel")
# Undecodable files an epoch's log row lists (all are counted): up to 1% of ImageNet may be skipped,
# and 12,800 paths in every row of log.json, rewritten each epoch, would swamp it.
LOGGED_SKIPPED_PATHS = 100


@dataclass
class TrainOptions:
    """What a run is asked to do; None means "the recipe's / the dataset's default"."""

    depth: int | None = None
    variant: str | None = None
    plain: bool = False
    shortcut: str | None = None
    num_classes: int | None = None
    input_size: int | None = None
    data: str = "digits"
    recipe: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None  # None: 0 for a new run, the run's own seed on --resume
    device: str = "auto"
    workers: int = 0
    normalize: str | None = None
    checkpoint: str | None = None  # initialise from these weights (fine-tuning)
    new_head: bool = False  # with checkpoint: a fresh classifier for the dataset's classes
    max_bad_fraction: float = 0.01  # undecodable images tolerated, as a fraction of those read
    eval_batch_size: int = 256


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    config: ResNetConfig
    epochs: int
    history: list[dict[str, Any]]
    seconds: float
    resumed_from: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

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
            "test_top1_error": final.get("test_top1_error"),
            "test_top5_error": final.get("test_top5_error"),
            "train_top1_error": final.get("train_top1_error"),
            "history": self.history,
            **self.extra,
        }


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return device


def make_deterministic(device: torch.device) -> None:
    """Same seed, same weights. CPU kernels are deterministic already (and the switch below costs
    3.5 s of torch._inductor imports), so only CUDA needs telling."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


def stderr_is_terminal() -> bool:
    """Progress bars only for a person watching: in a log file or a pipe their carriage returns and
    escape codes pile up (a 20-epoch demo wrote 48 KB of them)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


@dataclass
class _Setup:
    """What a run fixes at its start and keeps across --resume."""

    data: str
    seed: int
    normalize: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    init_checkpoint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean": list(self.mean), "std": list(self.std), "class_names": list(self.class_names)}


def _fresh_model(options: TrainOptions, dataset: Dataset) -> tuple[ResNet, _Setup]:
    """Build (or load for fine-tuning) the model and fix its normalisation from the training data."""
    classes = dataset.num_classes
    if options.num_classes is not None and options.num_classes != classes:
        raise TrainingError(
            f"dataset {dataset.name} has {classes} classes, not {options.num_classes}; drop --num-classes"
        )
    size = options.input_size if options.input_size is not None else dataset.native_size
    seed = options.seed or 0
    torch.manual_seed(seed)
    if options.checkpoint:
        ckpt = load_checkpoint(options.checkpoint)
        model = model_from_checkpoint(
            ckpt,
            depth=options.depth,
            variant=options.variant,
            plain=options.plain,
            shortcut=options.shortcut,
            input_size=options.input_size,
        )
        if model.config.num_classes != classes:
            if not options.new_head:
                raise TrainingError(
                    f"checkpoint {options.checkpoint} has {model.config.num_classes} classes but dataset "
                    f"{dataset.name} has {classes}; pass --new-head to train a new classifier"
                )
            config = replace(model.config, num_classes=classes)
            state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
            model = ResNet(config)
            model.load_state_dict(state, strict=False)
        default_mean, default_std = model.config.default_mean_std
        mean = tuple(ckpt.metadata.get("mean", default_mean))
        std = tuple(ckpt.metadata.get("std", default_std))
        normalize = "pixel-mean" if model.config.pixel_mean else "channel"
        if options.normalize not in (None, normalize):
            raise TrainingError(
                f"checkpoint {options.checkpoint} was trained with {normalize} normalisation; drop --normalize"
            )
        return model, _Setup(dataset.spec, seed, normalize, mean, std, dataset.class_names, str(ckpt.path))

    if options.depth is None:
        raise TrainingError("give --depth (e.g. --depth 20) or --checkpoint")
    family_probe = model_config(
        options.depth, plain=options.plain, shortcut=None if options.plain else options.shortcut
    )
    recipe = get_recipe(options.recipe, family_probe.family)
    normalize = options.normalize or recipe.normalize
    if normalize not in NORMALIZATIONS:
        raise TrainingError(f"unknown normalisation {normalize!r}; choose {' or '.join(NORMALIZATIONS)}")
    if normalize == "pixel-mean" and dataset.native_size is None:
        if options.normalize:
            raise TrainingError(f"{dataset.name}: per-pixel mean needs fixed-size images; use --normalize channel")
        normalize = "channel"  # ImageFolder images vary in size: per-channel mean/std
    config = model_config(
        options.depth,
        variant=options.variant,
        plain=options.plain,
        shortcut=options.shortcut,
        num_classes=classes,
        input_size=size,
        pixel_mean=normalize == "pixel-mean",
    )
    model = ResNet(config)
    if normalize == "pixel-mean":
        assert model.pixel_mean is not None
        model.pixel_mean.copy_(dataset.train.pixel_mean(config.input_size))
        mean, std = (0.0,) * config.in_chans, (1.0,) * config.in_chans
    else:
        mean, std = dataset.default_mean_std or dataset.train.channel_stats(config.input_size)
    return model, _Setup(dataset.spec, seed, normalize, tuple(mean), tuple(std), dataset.class_names, None)


def _check_resume(options: TrainOptions, state: TrainState, source: str) -> None:
    """The options given with --resume must not contradict the run being resumed."""
    config = ResNetConfig.from_dict(state.config)
    plan = state.plan
    given: dict[str, tuple[Any, Any]] = {
        "--depth": (options.depth, config.depth),
        "--variant": (options.variant, config.variant if config.block == "bottleneck" else options.variant),
        "--shortcut": (options.shortcut, config.shortcut),
        "--num-classes": (options.num_classes, config.num_classes),
        "--input-size": (options.input_size, config.input_size),
        "--epochs": (options.epochs, plan["epochs"]),
        "--batch-size": (options.batch_size, plan["batch_size"]),
        "--lr": (options.lr, plan["lr"]),
        "--recipe": (options.recipe, plan["recipe"]["name"]),
        "--normalize": (options.normalize, state.setup["normalize"]),
        "--seed": (options.seed, state.setup["seed"]),
    }
    if options.plain and not config.plain:
        raise TrainingError(
            f"{source} trains {config.name}, not a plain network; drop --plain, or start a new run with another -o"
        )
    if options.checkpoint:
        raise TrainingError(f"{source} continues from its own state; drop --checkpoint")
    for flag, (value, recorded) in given.items():
        if value is not None and value != recorded:
            raise TrainingError(
                f"{source} trains {config.name} with {flag} {recorded}, not {value}; "
                f"drop {flag} to resume it, or start a new run with another -o"
            )
    saved_kind = state.setup["data"].partition(":")[0]
    if options.data != "digits" and options.data.partition(":")[0] != saved_kind:
        raise TrainingError(f"{source} was trained on {state.setup['data']}, not {options.data}; drop --data")


class Trainer:
    """One run: ``Trainer(options, run_dir).run()``; ``resume=True`` continues the run in ``run_dir``."""

    def __init__(
        self,
        options: TrainOptions,
        run_dir: str | Path,
        *,
        resume: str | Path | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_info: Callable[[str], None] | None = None,
        on_warn: Callable[[str], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.options = options
        self.run_dir = Path(run_dir)
        self.on_epoch = on_epoch or (lambda row: None)
        self.on_info = on_info or (lambda line: None)
        self.on_warn = on_warn or (lambda line: self.on_info(f"warning: {line}"))
        self.progress = progress  # drawn only where stderr is a terminal
        self._warned_paths: set[str] = set()  # undecodable files named once per run, not every epoch
        self.device = pick_device(options.device)
        self.state: TrainState | None = None
        self.plan: Plan | None = None  # set once run() has opened the data
        self.seed = 0  # the run's seed, fixed by run()
        self.epochs_done = 0  # epochs saved to run_dir so far (for the Ctrl-C message)
        if resume is not None:
            self.state = load_state(resume)
            _check_resume(options, self.state, f"the run in {resume}")
            if options.data == "digits" or self.state.setup["data"] == "digits":
                options.data = self.state.setup["data"]  # else: the same kind of data, moved (classes are checked)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise OutputPathError(f"run directory {self.run_dir} is a file; choose another -o")
        if (self.run_dir / STATE_FILE).exists() and (
            resume is None
            or Path(resume).resolve() not in (self.run_dir.resolve(), (self.run_dir / STATE_FILE).resolve())
        ):
            raise TrainingError(
                f"{self.run_dir} already holds a training run; continue it with --resume {self.run_dir} "
                "or choose another -o"
            )

    def _normalizer(self, setup: _Setup) -> Callable[[torch.Tensor], torch.Tensor]:
        if setup.normalize == "pixel-mean":
            return lambda x: x
        mean = torch.tensor(setup.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(setup.std, device=self.device).view(1, -1, 1, 1)
        return lambda x: (x - mean) / std

    def run(self) -> TrainResult:
        start = time.perf_counter()
        make_deterministic(self.device)
        dataset = open_dataset(self.options.data, workers=self.options.workers)
        if self.state is None:
            model, setup = _fresh_model(self.options, dataset)
            config = model.config
            recipe = get_recipe(self.options.recipe, config.family)
            plan = make_plan(
                recipe,
                train_images=len(dataset.train),
                depth=config.depth,
                epochs=self.options.epochs,
                on_digits=dataset.spec == "digits",
                batch_size=self.options.batch_size,
                lr=self.options.lr,
            )
            history: list[dict[str, Any]] = []
            first_epoch, step = 1, 0
        else:
            config = ResNetConfig.from_dict(self.state.config)
            model = ResNet(config)
            model.load_state_dict(self.state.model)
            s = self.state.setup
            setup = _Setup(
                s["data"],
                s["seed"],
                s["normalize"],
                tuple(s["mean"]),
                tuple(s["std"]),
                tuple(s["class_names"]),
                s["init_checkpoint"],
            )
            if tuple(dataset.class_names) != setup.class_names:
                raise TrainingError(
                    f"the data at {setup.data} now has classes {list(dataset.class_names)[:4]}..., not those the run "
                    "started with; restore the dataset or start a new run"
                )
            plan = Plan.from_dict(self.state.plan)
            history = list(self.state.history)
            first_epoch, step = self.state.epoch + 1, self.state.step
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(
                f"cannot create run directory {self.run_dir} ({exc.strerror}); choose another -o"
            ) from None
        self.plan = plan
        self.seed = setup.seed
        self.epochs_done = first_epoch - 1

        model = model.to(self.device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=plan.lr, momentum=plan.recipe.momentum, weight_decay=plan.recipe.weight_decay
        )
        if self.state is not None:
            optimizer.load_state_dict(self.state.optimizer)
        normalize = self._normalizer(setup)
        autocast = self.device.type == "cuda"
        size = config.input_size
        self.on_info(
            f"training {config.name} on {dataset.name} ({len(dataset.train)} train / {len(dataset.test)} test images, "
            f"{dataset.num_classes} classes, {size}x{size}) on {self.device.type}: recipe {plan.recipe.name}, "
            f"{plan.epochs} epochs x {plan.steps_per_epoch} steps of batch {plan.batch_size}, lr {plan.lr:g}"
            + (
                f" (lr x{plan.recipe.warmup_factor:g} for the first {plan.warmup_steps} steps)"
                if plan.warmup_steps
                else ""
            )
            + f", lr /10 at steps {', '.join(map(str, plan.milestone_steps))}; {setup.normalize} normalisation"
        )
        if first_epoch > plan.epochs:
            self.on_info(f"the run in {self.run_dir} already finished its {plan.epochs} epochs; nothing to do")

        for epoch in range(first_epoch, plan.epochs + 1):
            step, row = self._epoch(model, optimizer, dataset, plan, normalize, epoch, step, autocast)
            history.append(row)
            self._save(model, optimizer, config, plan, setup, history, epoch, step, dataset)
            self.epochs_done = epoch
            self.on_epoch(row)
        seconds = time.perf_counter() - start
        return TrainResult(
            run_dir=self.run_dir,
            checkpoint=self.run_dir / MODEL_FILE,
            config=config,
            epochs=plan.epochs,
            history=history,
            seconds=seconds,
            resumed_from=first_epoch - 1,
            device=self.device.type,
        )

    def _epoch(
        self,
        model: ResNet,
        optimizer: torch.optim.Optimizer,
        dataset: Dataset,
        plan: Plan,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        epoch: int,
        step: int,
        autocast: bool,
    ) -> tuple[int, dict[str, Any]]:
        from tqdm import tqdm

        model.train()
        started = time.perf_counter()
        seen = correct = skipped = 0
        skipped_paths: list[str] = []
        loss_sum = 0.0
        lr = plan.lr_at(step)
        bar = tqdm(
            total=plan.steps_per_epoch,
            desc=f"epoch {epoch}/{plan.epochs}",
            unit="step",
            leave=False,
            disable=not (self.progress and stderr_is_terminal()),
            dynamic_ncols=True,
        )
        batches = dataset.train.batches(
            plan.batch_size,
            size=model.config.input_size,
            train=True,
            seed=_epoch_seed(self.seed, epoch),
            device=self.device,
        )
        for batch in batches:
            skipped += batch.skipped
            skipped_paths.extend(batch.skipped_paths)
            if len(batch.labels) < 2:  # BatchNorm cannot train on one image
                continue
            lr = plan.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = normalize(batch.images).contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"training diverged: loss {value} at epoch {epoch}, step {step}; lower --lr "
                    f"(now {plan.lr:g}) or check the data"
                )
            n = len(batch.labels)
            loss_sum += value * n
            correct += topk_correct(logits.detach().float(), batch.labels, 1)
            seen += n
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:g}")
        bar.close()
        self._check_skipped(skipped, seen + skipped, "training", skipped_paths)
        train_seconds = time.perf_counter() - started
        result = evaluate(
            model,
            dataset.test,
            size=model.config.input_size,
            normalize=normalize,
            device=self.device,
            batch_size=self.options.eval_batch_size,
            autocast=autocast,
        )
        self._check_skipped(result.skipped, result.images + result.skipped, "test", result.skipped_paths)
        undecodable = sorted({*skipped_paths, *result.skipped_paths})
        new = [path for path in undecodable if path not in self._warned_paths]
        if new:
            self._warned_paths.update(new)
            self.on_warn(
                f"skipping {len(new)} undecodable image{'s' if len(new) > 1 else ''}: {name_files(new)}; "
                "remove or fix them"
            )
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1_error": 100 * (1 - correct / max(seen, 1)),
            "test_loss": result.loss,
            "test_top1_error": result.top1_error,
            "test_top5_error": result.top5_error,
            "images_per_second": seen / train_seconds if train_seconds > 0 else 0.0,
            "epoch_seconds": time.perf_counter() - started,
            "skipped_images": skipped + result.skipped,
            "skipped_paths": undecodable[:LOGGED_SKIPPED_PATHS],
        }
        return step, row

    def _check_skipped(self, skipped: int, read: int, split: str, paths: list[str] | tuple[str, ...]) -> None:
        if read and skipped == read:  # nothing to learn from or to score: errors would be NaN
            raise DatasetError(
                f"none of the {read} {split} images decoded ({name_files(sorted(paths))}); "
                "check the files (are they images?)"
            )
        if skipped and skipped > self.options.max_bad_fraction * read:
            raise DatasetError(
                f"{skipped} of {read} {split} images failed to decode (more than "
                f"{self.options.max_bad_fraction:.1%}): {name_files(sorted(paths))}; remove or fix them, "
                "or raise --max-bad-fraction"
            )

    def _save(
        self,
        model: ResNet,
        optimizer: torch.optim.Optimizer,
        config: ResNetConfig,
        plan: Plan,
        setup: _Setup,
        history: list[dict[str, Any]],
        epoch: int,
        step: int,
        dataset: Dataset,
    ) -> None:
        final = history[-1]
        cpu_model = ResNet(config)
        cpu_model.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
        save_checkpoint(
            cpu_model,
            self.run_dir / MODEL_FILE,
            {
                "dataset": setup.data if setup.data == "digits" else dataset.spec,
                "class_names": list(setup.class_names),
                "mean": list(setup.mean),
                "std": list(setup.std),
                "normalize": setup.normalize,
                "recipe": plan.recipe.name,
                "seed": setup.seed,
                "epochs": epoch,
                "epochs_planned": plan.epochs,
                "test_top1_error": round(final["test_top1_error"], 4),
                "test_top5_error": round(final["test_top5_error"], 4),
                "train_top1_error": round(final["train_top1_error"], 4),
                "init_checkpoint": setup.init_checkpoint,
                "producer_version": __version__,
            },
        )
        write_log(self.run_dir, history)
        save_state(
            self.run_dir,
            TrainState(
                model=cpu_model.state_dict(),
                optimizer=optimizer.state_dict(),
                epoch=epoch,
                step=step,
                config=config.to_dict(),
                plan=plan.to_dict(),
                setup=setup.to_dict(),
                history=history,
            ),
        )
