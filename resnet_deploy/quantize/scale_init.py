"""Where quantization-aware training starts its activation scales: calibration's, narrowed where its readers gain.

A per-tensor amax from calibration covers the tensor's largest values. When one channel is far larger
than the rest (a BatchNorm scale folded up into a ReLU and back down in the next conv: FP32-identical,
INT8-hostile) that amax rounds every other channel to zero, and the loss is flat around it, so no
gradient step finds the way down. So before fine-tuning each tensor's amax is set, on a few
calibration images, to the value on a geometric grid below calibration's (down to 1e-5 of it) that
minimises the error its readers see: each channel's mean squared quantization error weighted by the
energy of the weights that read that channel (a residual Add reads every channel with weight 1). A
channel whose weights are near zero may then be clipped; the rest keep their resolution. Calibration's
amax is kept where nothing below it does better.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.quantize.qdq_tensorrt import QMAX

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch", extra="train")

GRID = 49  # amax candidates: calibration's, then down by 10^(-5/48) each step
LOWEST = 1e-5
CHUNK = 8  # images per forward pass: bounds the activations alive at once


def channel_weights(network: Any, tensor: str, channels: int) -> torch.Tensor:
    """How much each channel of ``tensor`` reaches its readers' outputs: the summed squared weights reading it."""
    energy = torch.zeros(channels)
    for _op, weight, groups in network.reader_weights(tensor):
        if weight is None:  # a residual Add: each channel passes through once
            energy += 1.0
            continue
        per_input = weight.pow(2).reshape(weight.shape[0], weight.shape[1], -1).sum(-1)  # (out, in/groups)
        if groups == 1 and per_input.shape[1] == channels:
            energy += per_input.sum(0)
            continue
        outs = weight.shape[0] // groups
        for c in range(channels):  # grouped: channel c is read by its group's outputs
            group = c // per_input.shape[1]
            energy[c] += per_input[group * outs : (group + 1) * outs, c % per_input.shape[1]].sum()
    return energy


def narrowed_amax(network: Any, batches: list[np.ndarray]) -> dict[str, float]:
    """Each quantized tensor's amax chosen as the module docstring says, from ``batches`` (normalised images)."""
    start = network.amax()
    steps = torch.tensor([LOWEST ** (k / (GRID - 1)) for k in range(GRID)], dtype=torch.float32)
    errors: dict[str, torch.Tensor] = {}  # tensor -> (GRID, channels) summed squared error

    def observe(tensor: str, value: torch.Tensor) -> None:
        x = value.detach().float()
        channel_axis = 1 if x.dim() > 1 else 0
        moved = x.movedim(channel_axis, 0).reshape(x.shape[channel_axis], -1)  # (C, values)
        sums = errors.setdefault(tensor, torch.zeros(GRID, moved.shape[0]))
        for k, step in enumerate(steps):
            scale = max(start[tensor] * float(step), 1e-8) / QMAX
            q = torch.clamp(torch.round(moved / scale), -QMAX, QMAX) * scale
            sums[k] += (moved - q).pow(2).sum(1)

    network.observer = observe
    try:
        with torch.no_grad():
            for batch in batches:
                for first in range(0, len(batch), CHUNK):
                    network(torch.from_numpy(np.ascontiguousarray(batch[first : first + CHUNK])))
    finally:
        network.observer = None
    chosen = dict(start)
    for tensor, sums in errors.items():
        weighted = (sums * channel_weights(network, tensor, sums.shape[1])).sum(1)
        best = int(torch.argmin(weighted))
        if weighted[best] < weighted[0]:
            chosen[tensor] = start[tensor] * float(steps[best])
    return chosen
