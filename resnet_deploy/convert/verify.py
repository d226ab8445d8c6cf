"""Check an ONNX model against the PyTorch model it came from, in ONNX Runtime on the CPU."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.onnx_metadata import INPUT_NAME

if TYPE_CHECKING:
    import onnxruntime as ort
else:
    ort = lazy_import("onnxruntime", extra="onnxruntime")

# FP32 ONNX Runtime vs PyTorch differ by summation order only: ~1e-6 relative on ResNet-50
# (measured 2.7e-5 abs on logits of magnitude 49). 1e-4 relative leaves room and still catches
# any real graph error, which shows as O(1) differences.
DEFAULT_RTOL = 1e-4
_ATOL = 1e-5
# Deep trained nets break the relative bound with correct graphs: torchvision's ResNet-152 logits
# (scale 1.8) are the small differences of large features, and PyTorch FP32 itself is 6.9e-4 off a
# float64 run of the same model, ONNX Runtime 4.7e-4, the two 9.0e-4 apart. Where the relative bound
# is exceeded, the allowance becomes NOISE_FACTOR times PyTorch FP32's own error against float64 on
# the same inputs: two FP32 runs each as accurate as PyTorch differ by up to 2x that; the other 2x
# is room for ONNX Runtime's summation order and folded BatchNorm (measured up to 1.8x). A wrong
# graph stays far outside it: one stem weight off by 0.1 gave 4.5x the allowance, two swapped classes 88x.
NOISE_FACTOR = 4.0


@dataclass
class BatchCheck:
    batch: int
    max_abs_error: float  # ONNX Runtime vs PyTorch FP32
    mean_abs_error: float
    logit_scale: float  # max |logit| of the reference
    top1_agreement: float
    allowed: float
    # PyTorch FP32's own max |error| against a float64 copy of the model; measured only when the
    # relative bound is exceeded (None otherwise)
    fp32_error: float | None = None
    bound: str = "rtol"  # which allowance ``allowed`` is: "rtol" (rtol x logit scale) or "fp32-noise"

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.allowed

    def describe_allowed(self) -> str:
        """``allowed`` and where it comes from, for messages."""
        if self.bound == "fp32-noise" and self.fp32_error:
            factor = self.allowed / self.fp32_error
            return f"{self.allowed:.3g} ({factor:g}x PyTorch FP32's own error {self.fp32_error:.3g} vs float64)"
        return f"{self.allowed:.3g}"


@dataclass
class VerifyReport:
    checks: list[BatchCheck] = field(default_factory=list)
    rtol: float = DEFAULT_RTOL
    seconds: float = 0.0
    noise_factor: float = NOISE_FACTOR

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def max_abs_error(self) -> float:
        return max(c.max_abs_error for c in self.checks)

    @property
    def top1_agreement(self) -> float:
        return min(c.top1_agreement for c in self.checks)

    @property
    def noise_floor_used(self) -> bool:
        return any(c.bound == "fp32-noise" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rtol": self.rtol,
            "noise_factor": self.noise_factor,
            "noise_floor_used": self.noise_floor_used,
            "max_abs_error": self.max_abs_error,
            "top1_agreement": self.top1_agreement,
            "seconds": round(self.seconds, 3),
            "batches": [asdict(c) for c in self.checks],
        }


def allowed_error(
    logit_scale: float, rtol: float, fp32_error: float | None = None, noise_factor: float = NOISE_FACTOR
) -> tuple[float, str]:
    """The allowed max |error| and its kind: ``rtol`` of the logit scale, or ``noise_factor`` times
    PyTorch FP32's own error (``fp32_error``, None when not measured) where that is larger.

    An ``rtol`` of 0 or less asks for an exact match: no noise floor either.
    """
    relative = rtol * max(1.0, logit_scale) + _ATOL
    if rtol <= 0 or fp32_error is None or noise_factor * fp32_error <= relative:
        return relative, "rtol"
    return noise_factor * fp32_error, "fp32-noise"


class _Float64Reference:
    """A float64 copy of the model on the CPU, made on first use: only deep models need it (the
    copy of a ResNet-152 is 0.5 GB and its forward pass a few seconds)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.copy: torch.nn.Module | None = None

    def fp32_error(self, x: torch.Tensor, fp32_logits: np.ndarray) -> float:
        if self.copy is None:
            self.copy = copy.deepcopy(self.model).to("cpu", torch.float64).eval()
        with torch.no_grad():
            exact = self.copy(x.to(torch.float64)).numpy()
        return float(np.abs(fp32_logits.astype(np.float64) - exact).max())


def verify_onnx(
    model: torch.nn.Module,
    onnx_model: bytes | str,
    input_shape: tuple[int, int, int],
    batch_sizes: Sequence[int] = (1, 5),
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
    noise_factor: float = NOISE_FACTOR,
) -> VerifyReport:
    """Run ``model`` and ``onnx_model`` (bytes or path) on the same seeded random batches and compare.

    ``input_shape`` is (C, H, W). The inputs are standard normal, like normalised images. A batch
    passes when ONNX Runtime is within ``rtol`` x the logit scale of PyTorch, or, where FP32 noise is
    larger than that (deep models), within ``noise_factor`` x PyTorch FP32's own error against float64.
    """

    start = time.perf_counter()
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    report = VerifyReport(rtol=rtol, noise_factor=noise_factor)
    model = model.eval()
    float64 = _Float64Reference(model)
    for batch in batch_sizes:
        x = torch.randn(batch, *input_shape, generator=generator)  # (N, C, H, W)
        with torch.no_grad():
            reference = model(x).numpy()
        (actual,) = session.run(None, {INPUT_NAME: x.numpy()})
        diff = np.abs(actual.astype(np.float64) - reference)
        scale = float(np.abs(reference).max())
        max_error = float(diff.max())
        allowed, bound = allowed_error(scale, rtol)
        fp32_error = None
        if max_error > allowed and rtol > 0:  # correct but deep, or wrong: FP32's own noise tells which
            fp32_error = float64.fp32_error(x, reference)
            allowed, bound = allowed_error(scale, rtol, fp32_error, noise_factor)
        report.checks.append(
            BatchCheck(
                batch=batch,
                max_abs_error=max_error,
                mean_abs_error=float(diff.mean()),
                logit_scale=scale,
                top1_agreement=float((actual.argmax(1) == reference.argmax(1)).mean()),
                allowed=allowed,
                fp32_error=fp32_error,
                bound=bound,
            )
        )
    report.seconds = time.perf_counter() - start
    return report
