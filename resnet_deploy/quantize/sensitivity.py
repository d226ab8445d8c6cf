"""Per-layer INT8 sensitivity: which layers cost accuracy when quantized.

For every layer TensorRT placement quantizes, two variants of the model are scored against the
FP32 model on held-out images (:mod:`resnet_deploy.quantize.judge`):

- **alone**: only this layer in INT8, everything else FP32: the damage the layer does by itself;
- **left out**: every other layer in INT8, this one not (FP16 by default, as it would deploy): how
  much of the all-INT8 damage keeping this layer out repairs.

Layers are ranked by what leaving them out restores (top-1 agreement, then KL), cheaper layers
first on a tie: the order in which the accuracy budget keeps layers out of INT8.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet_deploy.artifacts.onnx_io import load_onnx
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.quantize import calib_data, measured  # modules: a benchmark wraps their functions
from resnet_deploy.quantize.judge import HeldOutJudge, VariantScore
from resnet_deploy.quantize.layers import QuantLayer, mac_share, quantizable_layers
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.quantize.qdq_tensorrt import insert_tensorrt_qdq


def variant(fp32_model: Any, amax: dict[str, float], keep_out: Collection[str], precision: str = "fp16") -> Any:
    """A copy of ``fp32_model`` in INT8 but for the layers in ``keep_out`` (run in ``precision``)."""
    model = copy.deepcopy(fp32_model)
    insert_tensorrt_qdq(model, amax, keep_out=keep_out, keep_out_precision=precision)
    return model


@dataclass(frozen=True)
class LayerSensitivity:
    layer: QuantLayer
    macs_share: float  # of all quantizable layers' MACs
    left_out: VariantScore  # every other layer in INT8
    alone: VariantScore | None = None  # only this layer in INT8 (None: not scanned)

    def restored(self, all_int8: VariantScore, images: int) -> tuple[int, float]:
        """Images whose FP32 top-1 class leaving this layer out brings back, and the KL it removes."""
        agreement = round((self.left_out.top1_agreement - all_int8.top1_agreement) * images)
        return agreement, all_int8.kl - self.left_out.kl

    def to_dict(self, all_int8: VariantScore, images: int) -> dict[str, Any]:
        agreement, kl = self.restored(all_int8, images)
        return {
            "node": self.layer.node,
            "module": self.layer.module,
            "op": self.layer.op,
            "macs": self.layer.macs,
            "macs_share": self.macs_share,
            "restored_images": agreement,
            "restored_kl": kl,
            "left_out": self.left_out.to_dict(),
            "alone": self.alone.to_dict() if self.alone else None,
        }


def rank(layers: list[LayerSensitivity], all_int8: VariantScore, images: int) -> list[LayerSensitivity]:
    """Most sensitive first: what leaving the layer out restores (agreement, then KL); cheaper first on a tie."""

    def key(item: LayerSensitivity) -> tuple[int, float, int]:
        agreement, kl = item.restored(all_int8, images)
        return (-agreement, -round(kl, 9), item.layer.macs)

    return sorted(layers, key=key)


@dataclass
class SensitivityReport:
    model: str
    dataset: str
    images: int  # held-out images scored
    method: str  # calibration method of the INT8 ranges
    precision: str  # of a layer left out
    fp32_top1_error: float
    all_int8: VariantScore
    layers: list[LayerSensitivity] = field(default_factory=list)  # ranked, most sensitive first
    seconds: float = 0.0
    variants: int = 0  # models scored

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "held_out_images": self.images,
            "calibration_method": self.method,
            "left_out_precision": self.precision,
            "fp32_top1_error": self.fp32_top1_error,
            "all_int8": self.all_int8.to_dict(),
            "layers": [item.to_dict(self.all_int8, self.images) for item in self.layers],
            "seconds": self.seconds,
            "variants_scored": self.variants,
        }

    def table(self, markdown: bool = False, top: int | None = None) -> str:
        head = [
            "#",
            "ONNX node",
            "PyTorch module",
            "op",
            "MACs",
            "alone: agree",
            "alone: KL",
            "alone: max Δlogit",
            "left out: agree",
            "left out: KL",
            "restores",
        ]
        rows = []
        for i, item in enumerate(self.layers[:top] if top else self.layers, 1):
            agreement, _ = item.restored(self.all_int8, self.images)
            alone = item.alone
            rows.append(
                [
                    str(i),
                    item.layer.node,
                    item.layer.module or "?",
                    item.layer.op,
                    f"{100 * item.macs_share:.1f}%",
                    f"{100 * alone.top1_agreement:.1f}%" if alone else "-",
                    f"{alone.kl:.2e}" if alone else "-",
                    f"{alone.max_logit_error:.3g}" if alone else "-",
                    f"{100 * item.left_out.top1_agreement:.1f}%",
                    f"{item.left_out.kl:.2e}",
                    f"{agreement:+d} img",
                ]
            )
        if markdown:
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        return "\n".join(
            "  ".join(
                c.ljust(w) if i in (1, 2, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in [head, *rows]
        )

    def summary(self) -> str:
        change = self.all_int8.change
        return (
            f"{self.images} held-out images of {self.dataset}: FP32 top-1 error {self.fp32_top1_error:.2f}%; "
            f"all INT8 ({self.method}): top-1 agreement {100 * self.all_int8.top1_agreement:.2f}%, "
            f"KL {self.all_int8.kl:.2e}, Δtop-1 {change.describe()}"
        )


def scan(
    fp32_model: Any,
    amax: dict[str, float],
    layers: list[QuantLayer],
    judge: HeldOutJudge,
    *,
    precision: str = "fp16",
    alone: bool = True,
    all_int8: VariantScore | None = None,
    subset: np.ndarray | None = None,
    out: Messages = SILENT,
) -> tuple[VariantScore, list[LayerSensitivity]]:
    """Score every layer left out (and, with ``alone``, quantized alone); returns the all-INT8 score and
    the layers ranked most sensitive first. ``subset``: score on those held-out images only (``all_int8``
    then scored on them too)."""

    def score(model: Any) -> VariantScore:
        return judge.score(model) if subset is None else judge.score(model, subset)

    if all_int8 is None:
        all_int8 = score(variant(fp32_model, amax, ()))
    every = {layer.node for layer in layers}
    scored = []
    for i, layer in enumerate(layers, 1):
        left_out = score(variant(fp32_model, amax, {layer.node}, precision))
        only = score(variant(fp32_model, amax, every - {layer.node}, "fp32")) if alone else None
        share = 1 - mac_share(layers, {layer.node})
        scored.append(LayerSensitivity(layer, share, left_out, only))
        out.say(
            f"  [{i}/{len(layers)}] {layer.label()}: left out, top-1 agreement {100 * left_out.top1_agreement:.1f}%"
        )
    return all_int8, rank(scored, all_int8, judge.images if subset is None else len(subset))


def sensitivity_report(
    name: str,
    fp32_model: Any,
    amax: dict[str, float],
    layers: list[QuantLayer],
    judge: HeldOutJudge,
    *,
    method: str,
    precision: str = "fp16",
    out: Messages = SILENT,
) -> SensitivityReport:
    start = time.perf_counter()
    all_int8, ranked = scan(fp32_model, amax, layers, judge, precision=precision, out=out)
    return SensitivityReport(
        model=name,
        dataset=judge.held_out.spec,
        images=judge.images,
        method=method,
        precision=precision,
        fp32_top1_error=judge.fp32_top1_error,
        all_int8=all_int8,
        layers=ranked,
        seconds=time.perf_counter() - start,
        variants=judge.runs,
    )


def model_sensitivity(
    onnx_path: str | Path,
    options: CalibrationOptions | None = None,
    *,
    images: int = 256,
    precision: str = "fp16",
    out: Messages = SILENT,
) -> SensitivityReport:
    """Calibrate ``onnx_path`` (ranges from the cache when there) and scan every layer on ``images``
    held-out test images."""
    options = options or CalibrationOptions()
    writable_cache = measured.cache_dir_usable(options.cache_dir, out)
    model = load_onnx(onnx_path)
    metadata = measured.check_fp32_export(model, onnx_path, "rank")
    held_out = calib_data.load_held_out_set(metadata, options.data, images, field="images")  # a bad count fails first
    calib = measured.calibration_images(metadata, onnx_path, options, out)
    ranges = measured.measured_ranges(model, onnx_path, calib, options, "tensorrt", writable_cache, out)
    judge = HeldOutJudge(model, held_out, out)
    layers = quantizable_layers(model)
    out.say(f"scoring {len(layers)} layers, each alone in INT8 and left out of it, on {judge.images} held-out images")
    amax = measured.tensorrt_amax(ranges.ranges)
    return sensitivity_report(
        Path(onnx_path).name, model, amax, layers, judge, method=options.method, precision=precision, out=out
    )
