"""Residual blocks and shortcuts of He et al. 2015 ("Deep Residual Learning for Image Recognition").

Module and attribute names follow torchvision (``conv1``, ``bn1``, ``downsample.0`` ...) so that
torchvision state dicts load 1:1.

Shortcut options (paper section 3.3 and Table 3):
  A: identity; where the shape changes, subsample spatially and append zero channels (no parameters).
  B: identity; a 1x1 projection + BN only where the shape changes.
  C: a 1x1 projection + BN on every block.
A plain block (``residual=False``) has no shortcut at all: the paper's "plain" baselines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` followed by zero channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot shrink channels ({in_channels} -> {out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H/s, W/s)
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x  # (N, C_out, H/s, W/s)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def make_shortcut(shortcut: str | None, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The ``downsample`` module of a block, or None for identity (or for a plain block)."""
    if shortcut is None:
        return None
    shape_changes = stride != 1 or in_channels != out_channels
    if shortcut == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride) if shape_changes else None
    if shortcut == "B" and not shape_changes:
        return None
    if shortcut in ("B", "C"):
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    raise ValueError(f"unknown shortcut option {shortcut!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, shortcut: str | None = "B") -> None:
        super().__init__()
        self.residual = shortcut is not None
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = make_shortcut(shortcut, in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (ResNet-50/101/152).

    ``stride_in_1x1=True`` is the paper's v1 (the first 1x1 subsamples); False is torchvision's v1.5
    (the 3x3 subsamples: +0.23 G multiply-adds on ResNet-50, slightly more accurate).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        shortcut: str | None = "B",
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.residual = shortcut is not None
        self.conv1 = conv1x1(in_channels, width, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)
