"""Quantization-aware fine-tuning of an FP32 ONNX ResNet at TensorRT's Q/DQ placement.

The graph runs in PyTorch with fake quantization exactly where the exported Q/DQ pairs go
(:mod:`resnet_deploy.quantize.onnx_torch`), its activation scales starting from calibration, and is
fine-tuned with the straight-through estimator on labelled training images: He et al.'s recipe
(SGD, momentum 0.9, weight decay 1e-4, the training augmentation) at a low learning rate, cosine to
zero over a few epochs. Activation scales are learned too by default (LSQ's gradient, in log space,
with Adam): that is what lets one channel scaled 10,000x stop flattening the rest of its tensor.

The state is saved after every epoch (``state_path``) and a run resumes from it. Under torchrun
(``world``: this process's place in the group, as ``resnet_deploy.training.distributed.join`` gives it)
each process takes its part of every batch, DDP averages the gradients of weights and scales alike,
and the first process alone saves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import, lazy_module
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import QuantizationError
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.quantize import qat_state, scale_init
from resnet_deploy.quantize.onnx_torch import build_network, check_supported
from resnet_deploy.quantize.qat_options import QatOptions

if TYPE_CHECKING:
    import torch

    from resnet_deploy.data import spec as data_spec
else:
    torch = lazy_import("torch", extra="train")
    data_spec = lazy_module("resnet_deploy.data.spec")


@dataclass
class QatRun:
    """What fine-tuning did: the trained network, and what the result records of it."""

    network: Any  # the OnnxNetwork, on the CPU
    options: QatOptions
    dataset: str
    images_per_epoch: int
    epochs: int  # run in total (resumed ones included)
    resumed_from: int  # epochs found done in the state
    seconds: float  # this process's fine-tuning wall time
    losses: list[float]  # mean training loss of each epoch

    def amax(self) -> dict[str, float]:
        return dict(self.network.amax())

    def weights(self) -> dict[str, np.ndarray]:
        return dict(self.network.weights())


def fine_tune(
    model: Any,
    metadata: ArtifactMetadata,
    amax: dict[str, float],
    options: QatOptions,
    *,
    source_sha256: str,
    keep_out: Collection[str] = (),
    init_batches: list[np.ndarray] | None = None,
    state_path: Path | None = None,
    resume: bool = False,
    world: Any = None,
    out: Messages = SILENT,
) -> QatRun:
    """Fine-tune ``model`` (FP32 onnx.ModelProto) with fake quantization starting at ``amax``; ``world``: the
    torchrun group this process is one of (None: a plain run)."""
    device = _device(options.device)
    grouped = world is not None and world.distributed
    main = world is None or world.is_main
    torch.manual_seed(options.seed)
    dataset = labelled_training_set(metadata, options.data)
    network: Any = build_network(model, amax, learn_scales=options.learn_scales, keep_out=keep_out).to(device)
    weights = [p for name, p in network.named_parameters() if name.startswith("params.")]
    scales = [p for name, p in network.named_parameters() if name.startswith("quantizers.")]
    sgd = torch.optim.SGD(weights, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
    adam = torch.optim.Adam(scales, lr=options.scale_lr) if scales else None
    source = f"{source_sha256}:{qat_state.amax_digest(amax)}"  # the model, and the scales it starts from
    start = qat_state.resume(state_path, network, sgd, adam, options, source, keep_out) if resume else 0
    if not start and options.narrow_scales and init_batches:
        narrowed = scale_init.narrowed_amax(network.cpu(), init_batches)
        moved = sum(narrowed[t] < amax[t] for t in narrowed)
        out.say(
            f"QAT starts {moved} of {len(narrowed)} activation scales below calibration's "
            "(their readers' error is less)"
        )
        network.set_amax(narrowed)
        network = network.to(device)
    trained = network
    if grouped:  # the same start everywhere (DDP broadcasts rank 0's), gradients averaged over the group
        trained = torch.nn.parallel.DistributedDataParallel(
            network, device_ids=[torch.device(device).index] if device.startswith("cuda") else None
        )
    available = len(dataset.train)
    per_epoch = min(options.images or available, available)
    steps = options.epochs * math.ceil(per_epoch / options.batch_size)
    mean = torch.tensor(metadata.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(metadata.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    began = time.perf_counter()
    losses: list[float] = []
    step = start * math.ceil(per_epoch / options.batch_size)
    if start:
        out.say(f"resuming quantization-aware training after epoch {start} of {options.epochs}")
    for epoch in range(start, options.epochs):
        trained.train()
        total, count = 0.0, 0
        batches = dataset.train.batches(
            options.batch_size,
            size=metadata.config.input_size,
            train=True,
            seed=options.seed * 1000 + epoch,
            device=torch.device(device),
            limit=per_epoch,
            shard=world.shard if grouped else None,
        )
        for batch in batches:
            lr = 0.5 * options.lr * (1 + math.cos(math.pi * step / steps))
            for group in sgd.param_groups:
                group["lr"] = lr
            logits = trained((batch.images.to(device) - mean) / std)
            loss = torch.nn.functional.cross_entropy(logits, batch.labels.to(device))
            if not _finite_everywhere(loss, grouped):
                raise QuantizationError(
                    f"quantization-aware training diverged at epoch {epoch + 1} (loss {float(loss)}); lower `qat.lr`",
                    field="qat.lr",
                )
            sgd.zero_grad(set_to_none=True)
            if adam is not None:
                adam.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            if adam is not None:
                adam.step()
            total, count, step = total + float(loss.detach()) * len(batch.labels), count + len(batch.labels), step + 1
        losses.append(total / max(count, 1))
        out.say(f"QAT epoch {epoch + 1}/{options.epochs}: training loss {losses[-1]:.4f}")
        if state_path is not None and main:
            qat_state.save(state_path, network, sgd, adam, options, source, keep_out, epoch + 1)
    network.eval()
    return QatRun(
        network.cpu(),
        options,
        dataset.spec,
        per_epoch,
        options.epochs,
        start,
        time.perf_counter() - began,
        losses,
    )


def _finite_everywhere(loss: Any, grouped: bool) -> bool:
    """Whether the loss is finite in every process (each must stop together, or the others wait forever)."""
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if grouped:
        torch.distributed.all_reduce(bad)
    return not bool(bad.item())


def _device(device: str) -> str:
    """The device asked for, checked: "auto" is the GPU where PyTorch sees one."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise QuantizationError(
            f"`qat.device={device}` asked for, but PyTorch sees no CUDA GPU; use cpu", field="qat.device"
        )
    return device


def check_can_fine_tune(model: Any, metadata: ArtifactMetadata, spec: str | None, source: str) -> None:
    """Refuse, before any calibration or scoring, what fine-tuning would refuse: ops it cannot run, no labels."""
    check_supported(model, source)
    labelled_training_set(metadata, spec)


def labelled_training_set(metadata: ArtifactMetadata, spec: str | None) -> Any:
    """The labelled dataset to fine-tune on: ``spec``, or the one the model records."""
    spec = spec or metadata.dataset
    if not spec:
        raise QuantizationError(
            f"{metadata.config.name} records no training dataset: quantization-aware training needs labelled "
            "images of its classes; pass them as `qat.data`",
            field="qat.data",
        )
    data_spec.check_spec(spec, labels_for="fine-tune on")
    dataset = data_spec.open_dataset(spec)
    if dataset.num_classes != metadata.config.num_classes:
        raise QuantizationError(
            f"{spec} has {dataset.num_classes} classes but the model has {metadata.config.num_classes}; "
            "fine-tune on labelled images of its own classes (`qat.data`)",
            field="qat.data",
        )
    if len(dataset.train) == 0:
        raise QuantizationError(f"{spec} has no training images to fine-tune on", field="qat.data")
    return dataset
