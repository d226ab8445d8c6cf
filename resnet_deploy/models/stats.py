"""Parameter and multiply-add counts, and the paper's Table 1 view of a model.

Counts are taken on the ``meta`` device: no memory is allocated and no arithmetic is done, so even
ResNet-1202 is summarised in a fraction of a second. Multiply-adds count Conv2d and Linear layers,
as the paper does (BN, ReLU, pooling and additions are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_deploy.artifacts.model_spec import ResNetConfig
from resnet_deploy.models.resnet import ResNet


@dataclass
class ModelSummary:
    name: str
    config: ResNetConfig
    parameters: int
    multiply_adds: int
    weighted_layers: int  # conv + fc layers on the main path: the paper's "depth"
    stages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "parameters": self.parameters,
            "multiply_adds": self.multiply_adds,
            "weighted_layers": self.weighted_layers,
            "stages": self.stages,
        }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _is_projection(name: str) -> bool:
    return ".downsample." in f".{name}."


def summarize(config: ResNetConfig, input_size: int | None = None) -> ModelSummary:
    """Count parameters, multiply-adds and layers of ``config`` at ``input_size`` (default: config's)."""
    size = input_size or config.input_size
    with torch.device("meta"):
        model = ResNet(config).eval()
        x = torch.empty(1, config.in_chans, size, size)  # (1, C, H, W)

    macs = 0
    shapes: dict[str, tuple[int, ...]] = {}

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    def record(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            shapes[name] = tuple(output.shape)

        return hook

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles.append(model.maxpool.register_forward_hook(record("stem")))
    handles += [getattr(model, n).register_forward_hook(record(n)) for n in model.stage_names]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()

    weighted = sum(
        1 for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and not _is_projection(name)
    )
    expansion = 4 if config.block == "bottleneck" else 1
    kernels = ["1x1", "3x3", "1x1"] if config.block == "bottleneck" else ["3x3", "3x3"]
    stages: list[dict[str, Any]] = [
        {
            "name": "conv1",
            "output": list(shapes["stem"][1:]),
            "layers": "7x7, 64, stride 2; 3x3 max pool, stride 2"
            if config.family == "imagenet"
            else f"3x3, {config.widths[0]}",
        }
    ]
    for stage, blocks, width in zip(model.stage_names, config.layers, config.widths, strict=True):
        widths = [width, width, width * expansion] if config.block == "bottleneck" else [width, width]
        inner = ", ".join(f"{k} {w}" for k, w in zip(kernels, widths, strict=True))
        stages.append({"name": stage, "output": list(shapes[stage][1:]), "layers": f"[{inner}] x {blocks}"})
    stages.append(
        {"name": "head", "output": [config.num_classes], "layers": f"global avg pool, {config.num_classes}-d fc"}
    )
    return ModelSummary(
        name=config.name,
        config=config,
        parameters=count_parameters(model),
        multiply_adds=macs,
        weighted_layers=weighted,
        stages=stages,
    )
