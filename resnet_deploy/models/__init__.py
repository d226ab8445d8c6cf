"""ResNets of He et al. 2015: ImageNet 18-152, CIFAR 20-1202, plain twins, shortcut options A/B/C.

The configs (``artifacts.model_spec``, re-exported here) need no torch; everything else imports
torch when first used, so the runner can read a model's metadata on a device without torch. Every
name ``list_models()`` returns is an entry point here (``resnet50()``, ``plain20()``).
"""

from __future__ import annotations

from resnet_deploy._lazy import lazy_attributes
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
# the entry points (resnet18 ... plain1202), one per registered name; the registry holds the same list
_ENTRY_POINTS = [f"{kind}{depth}" for kind in ("resnet", "plain") for depth in ARCHITECTURES]
_LAZY.update(dict.fromkeys(_ENTRY_POINTS, "resnet_deploy.models.registry"))  # its module __getattr__ serves them

__all__ = ["ARCHITECTURES", "ModelSpec", "ResNetConfig", "model_config", *_LAZY]
__getattr__ = lazy_attributes(__name__, _LAZY)
