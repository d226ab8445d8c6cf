"""ResNets of He et al. 2015: ImageNet 18-152, CIFAR 20-1202, plain twins, shortcut options A/B/C."""

from resnet_deploy.models.blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from resnet_deploy.models.config import ARCHITECTURES, ResNetConfig, model_config
from resnet_deploy.models.registry import (
    build_model,
    get_model,
    list_models,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet101,
    resnet110,
    resnet152,
    resnet1202,
)
from resnet_deploy.models.resnet import ResNet
from resnet_deploy.models.stats import ModelSummary, count_parameters, summarize

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "Bottleneck",
    "ModelSummary",
    "ResNet",
    "ResNetConfig",
    "ZeroPadShortcut",
    "build_model",
    "count_parameters",
    "get_model",
    "list_models",
    "model_config",
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
    "summarize",
]
