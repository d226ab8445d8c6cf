"""ResNets of He et al. 2015: ImageNet 18-152, CIFAR 20-1202, plain twins, shortcut options A/B/C.

The configs (``artifacts.model_spec``, re-exported here) need no torch; everything else imports
torch when first used, so the runner can read a model's metadata on a device without torch. Every
name ``list_models()`` returns is an entry point here (``resnet50()``, ``plain20()``).
"""

from __future__ import annotations

import importlib
from typing import Any

from resnet_deploy.artifacts.model_spec import ARCHITECTURES, ModelSpec, ResNetConfig, model_config

_LAZY = {
    "build_model": "resnet_deploy.models.registry",
    "get_model": "resnet_deploy.models.registry",
    "list_models": "resnet_deploy.models.registry",
    "BasicBlock": "resnet_deploy.models.blocks",
    "Bottleneck": "resnet_deploy.models.blocks",
    "ZeroPadShortcut": "resnet_deploy.models.blocks",
    "ResNet": "resnet_deploy.models.resnet",
    "ModelSummary": "resnet_deploy.models.stats",
    "count_parameters": "resnet_deploy.models.stats",
    "summarize": "resnet_deploy.models.stats",
}
# the entry points (resnet18 ... plain1202), one per registered name
_ENTRY_POINTS = [f"{kind}{depth}" for kind in ("resnet", "plain") for depth in ARCHITECTURES]

__all__ = ["ARCHITECTURES", "ModelSpec", "ResNetConfig", "model_config", *_LAZY, *_ENTRY_POINTS]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _ENTRY_POINTS:
        return importlib.import_module("resnet_deploy.models.registry").ENTRY_POINTS[name]
    raise AttributeError(f"module 'resnet_deploy.models' has no attribute {name!r}")
