"""Fake quantization in PyTorch with exactly the arithmetic of the Q/DQ pairs TensorRT placement writes.

- weights: per output channel, symmetric, scale = max|w| / 127 of the channel (computed from the
  weights each step, as ``qdq_tensorrt._weight_dq`` computes it from the trained weights at export);
- activations: per tensor, symmetric, scale = amax / 127, ``amax`` initialised from calibration and,
  when learned, trained in log space (a 10,000x range shrinks in tens of steps, and amax stays > 0);
- rounding half to even, weights clipped to [-127, 127] (their scale makes that their range) and
  activations to [-128, 127], as int8 ``QuantizeLinear`` saturates them; gradients by the
  straight-through estimator: through the rounding unchanged, zero for clipped values; the scale's
  gradient is LSQ's (Esser et al. 2020), which the STE gives when the scale multiplies back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from resnet_deploy.quantize.qdq_tensorrt import QMAX

if TYPE_CHECKING:
    import torch

AMAX_FLOOR = 1e-8  # what the exporter floors an amax at (``_activation_qdq``)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (x.round() - x).detach()


def fake_quant_weight(weight: torch.Tensor, axis: int) -> torch.Tensor:
    """``weight`` rounded to int8 per channel along ``axis`` (an all-zero channel keeps scale 1)."""
    import torch

    dims = [d for d in range(weight.dim()) if d != axis]
    amax = weight.detach().abs().amax(dim=dims, keepdim=True)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    return torch.clamp(_round_ste(weight / scale), -QMAX, QMAX) * scale


class ActivationQuantizer:
    """The fake-quant of one activation tensor; a ``torch.nn.Module`` made on first use (torch is lazy)."""

    @staticmethod
    def make(amax: float, learn: bool) -> torch.nn.Module:
        import torch

        class _Quantizer(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                log_amax = torch.tensor(math.log(max(float(amax), AMAX_FLOOR)), dtype=torch.float32)
                if learn:
                    self.log_amax = torch.nn.Parameter(log_amax)
                else:
                    self.register_buffer("log_amax", log_amax)

            @property
            def amax(self) -> float:
                return max(math.exp(float(self.log_amax.detach())), AMAX_FLOOR)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                scale = self.log_amax.exp().clamp(min=AMAX_FLOOR) / QMAX
                return torch.clamp(_round_ste(x / scale), -QMAX - 1, QMAX) * scale

        return _Quantizer()
