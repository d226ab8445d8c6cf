"""The model a command works on: a checkpoint's (weights + metadata) or a randomly initialised one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from resnet_deploy import __version__
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.model_spec import ModelSpec, ResNetConfig, model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.models.checkpoint import Checkpoint, checkpoint_config, load_checkpoint, model_from_checkpoint
from resnet_deploy.models.registry import build_model
from resnet_deploy.models.resnet import ResNet

if TYPE_CHECKING:
    from torchvision import models as torchvision_models
else:
    torchvision_models = lazy_import("torchvision.models", extra="train")

# --depth without --checkpoint: random weights from this seed, so the same options give the same
# model, the same ONNX bytes and so the same calibration cache id on every run.
RANDOM_WEIGHTS_SEED = 0


@dataclass
class ModelSource:
    model: ResNet
    metadata: ArtifactMetadata
    checkpoint: Checkpoint | None

    @property
    def random_init(self) -> bool:
        return self.checkpoint is None


def _imagenet_categories() -> tuple[str, ...] | None:
    try:  # torchvision ships the 1000 ImageNet class names with its weight enums: no download.
        return tuple(torchvision_models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:
        return None


def open_model(checkpoint: str | Path | None = None, spec: ModelSpec | None = None, **options: Any) -> ModelSource:
    """Load ``checkpoint`` (our format or a foreign state dict) or build a random model from ``spec``
    (or the spec's fields as keyword options: ``open_model(depth=20)``)."""
    spec = ModelSpec.of(spec, **options)
    if checkpoint is None:
        with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's generator
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = build_model(spec).eval()
        mean, std = model.config.default_mean_std
        meta = ArtifactMetadata(config=model.config, mean=mean, std=std, producer_version=__version__)
        return ModelSource(model=model, metadata=meta, checkpoint=None)

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, spec)
    config = model.config
    default_mean, default_std = config.default_mean_std
    recorded = ckpt.meta
    class_names: Sequence[str] | None = ckpt.class_names
    if recorded is None and config.family == "imagenet" and config.num_classes == 1000:
        class_names = _imagenet_categories()  # a torchvision ImageNet-1k checkpoint
    meta = ArtifactMetadata(
        config=config,
        mean=(recorded and recorded.mean) or default_mean,
        std=(recorded and recorded.std) or default_std,
        class_names=tuple(class_names) if class_names else None,
        checkpoint_sha256=ckpt.sha256,
        dataset=recorded.dataset if recorded else None,
        producer_version=__version__,
    )
    return ModelSource(model=model, metadata=meta, checkpoint=ckpt)


def model_name(checkpoint: str | Path | None = None, spec: ModelSpec | None = None) -> str:
    """The name of the model :func:`open_model` would open (``resnet20``), without building it."""
    spec = spec or ModelSpec()
    config: ResNetConfig = (
        model_config(spec) if checkpoint is None else checkpoint_config(load_checkpoint(checkpoint), spec)
    )
    return config.name
