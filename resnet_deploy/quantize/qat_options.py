"""How to fine-tune with quantization-aware training: one typed record from the CLI (or Python) to
:func:`resnet_deploy.quantize.qat.fine_tune`, light enough for the command line to import."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from resnet_deploy.errors import QuantizationError

DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class QatOptions:
    epochs: int = 2
    lr: float = 0.001  # the recipe's 0.1 at 1%: fine-tuning, not training
    batch_size: int = 128
    learn_scales: bool = True  # train the activation amax too (False: keep where they start)
    narrow_scales: bool = True  # start each amax where its readers' error is least (scale_init.py), else calibration's
    scale_lr: float = 0.05  # Adam's step on log(amax)
    data: str | None = None  # labelled dataset spec; None: the one the model records
    images: int | None = None  # training images per epoch (None: the whole split)
    seed: int = 0
    device: str = "auto"
    momentum: float = 0.9
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise QuantizationError(f"`qat.epochs` must be at least 1, got {self.epochs!r}", field="qat.epochs")
        for name in ("lr", "scale_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise QuantizationError(f"`qat.{name}` must be a number above 0, got {value!r}", field=f"qat.{name}")
        if self.batch_size < 1:
            raise QuantizationError(
                f"`qat.batch_size` must be at least 1, got {self.batch_size}", field="qat.batch_size"
            )
        for name in ("learn_scales", "narrow_scales"):
            if not isinstance(getattr(self, name), bool):
                value = getattr(self, name)
                raise QuantizationError(f"`qat.{name}` is true or false, not {value!r}", field=f"qat.{name}")
        if self.images is not None and self.images < 1:
            raise QuantizationError(f"`qat.images` must be at least 1, got {self.images}", field="qat.images")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise QuantizationError(
                f"`qat.device` is cpu, cuda, cuda:N or auto, not {self.device!r}", field="qat.device"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
