"""The ResNet module: stem, stages of blocks, global average pool, fully connected classifier."""

from __future__ import annotations

import torch
from torch import nn

from resnet_deploy.artifacts.model_spec import ResNetConfig
from resnet_deploy.models.blocks import BasicBlock, Bottleneck


class ResNet(nn.Module):
    """ImageNet (Table 1) or CIFAR (section 4.2) ResNet, residual or plain, built from a config.

    Attribute names match torchvision's ``ResNet`` (``conv1``, ``bn1``, ``layer1``.., ``fc``).
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        self.pixel_mean: torch.Tensor | None
        if config.pixel_mean:  # set from the training data; see ResNetConfig.pixel_mean
            size = config.input_size
            self.register_buffer("pixel_mean", torch.zeros(config.in_chans, size, size))
        else:
            self.register_buffer("pixel_mean", None)
        stem_width = config.widths[0]
        if config.family == "imagenet":
            self.conv1 = nn.Conv2d(config.in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(config.in_chans, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)

        shortcut = None if config.plain else config.shortcut
        in_channels = stem_width
        self.stage_names: list[str] = []
        for index, (blocks, width) in enumerate(zip(config.layers, config.widths, strict=True)):
            stage = []
            for b in range(blocks):
                stride = 2 if (index > 0 and b == 0) else 1
                if config.block == "bottleneck":
                    block: nn.Module = Bottleneck(
                        in_channels, width, stride, shortcut, stride_in_1x1=config.variant == "v1"
                    )
                    in_channels = width * Bottleneck.expansion
                else:
                    block = BasicBlock(in_channels, width, stride, shortcut)
                    in_channels = width
                stage.append(block)
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*stage))
            self.stage_names.append(name)

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, config.num_classes)
        self.num_features = in_channels
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. 2015 ("Delving deep into rectifiers") init, as the paper and torchvision use.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.pixel_mean is not None:
            x = x - self.pixel_mean  # (N, C, S, S) - (C, S, S)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, C0, H/4, W/4) or (N, 16, H, W)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x  # (N, C_last, H/stride, W/stride)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (N, C_last)
        return x if pre_logits else self.fc(x)  # (N, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
