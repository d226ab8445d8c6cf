"""ResNets of He et al. 2015: ImageNet 18-152, CIFAR 20-1202, plain twins, shortcut options A/B/C.

The configs (``models.config``) need no torch; everything else imports torch when first used, so
the runner can read a model's metadata on a device without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from resnet_deploy.models.config import ARCHITECTURES, ResNetConfig, model_config

_REGISTRY = (
    "build_model",
    "get_model",
    "list_models",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "resnet1202",
)
_LAZY = {
    **{name: "resnet_deploy.models.registry" for name in _REGISTRY},
    "BasicBlock": "resnet_deploy.models.blocks",
    "Bottleneck": "resnet_deploy.models.blocks",
    "ZeroPadShortcut": "resnet_deploy.models.blocks",
    "ResNet": "resnet_deploy.models.resnet",
    "ModelSummary": "resnet_deploy.models.stats",
    "count_parameters": "resnet_deploy.models.stats",
    "summarize": "resnet_deploy.models.stats",
}

__all__ = ["ARCHITECTURES", "ResNetConfig", "model_config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resnet_deploy.models' has no attribute {name!r}")
