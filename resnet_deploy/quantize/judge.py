"""How far a quantized variant of a model strays from its FP32 self, on held-out images.

The FP32 model runs once; every variant (one layer in INT8, all but one, a mixed-precision
candidate) runs in ONNX Runtime on the same images and is compared with it: top-1 agreement,
the KL divergence of the softmax, logit errors, and the paired change in top-1 error against the
labels (:mod:`resnet_deploy.evaluate.paired_stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import QuantizationError
from resnet_deploy.evaluate.paired_stats import PairedChange, paired_change
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.quantize.calib_data import HeldOutSet
from resnet_deploy.quantize.ranges import padded_feeds

if TYPE_CHECKING:
    import onnxruntime as ort
else:
    ort = lazy_import("onnxruntime", extra="onnxruntime")

BATCH = 64


@dataclass(frozen=True)
class VariantScore:
    """One variant against the FP32 model on the held-out images."""

    top1_agreement: float  # share of images whose top-1 class is the FP32 model's
    kl: float  # mean KL(FP32 softmax || variant softmax), nats
    max_logit_error: float
    mean_logit_error: float
    change: PairedChange  # top-1 error against the labels, paired with the FP32 model's

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1_agreement": self.top1_agreement,
            "kl": self.kl,
            "max_logit_error": self.max_logit_error,
            "mean_logit_error": self.mean_logit_error,
            "top1_change": self.change.to_dict(),
        }


class HeldOutJudge:
    """Scores variants of one FP32 model on one held-out set."""

    def __init__(self, fp32_model: Any, held_out: HeldOutSet, out: Messages = SILENT) -> None:
        self.held_out = held_out
        if note := held_out.skipped_note():
            out.warn(note)
        self.reference_logits = run_model(fp32_model, held_out.images)
        self.reference_hits = self.reference_logits.argmax(1) == held_out.labels
        self._reference_log_p = _log_softmax(self.reference_logits)
        self.runs = 0  # variants scored, for the benchmark

    @property
    def images(self) -> int:
        return self.held_out.count

    @property
    def fp32_top1_error(self) -> float:
        return 100 * (1 - float(self.reference_hits.mean()))

    def score(self, model: Any) -> VariantScore:
        logits = run_model(model, self.held_out.images)
        self.runs += 1
        log_p = _log_softmax(logits)
        kl = float((np.exp(self._reference_log_p) * (self._reference_log_p - log_p)).sum(1).mean())
        error = np.abs(logits - self.reference_logits)
        return VariantScore(
            top1_agreement=float((logits.argmax(1) == self.reference_logits.argmax(1)).mean()),
            kl=max(kl, 0.0),  # rounding can leave -1e-9
            max_logit_error=float(error.max()),
            mean_logit_error=float(error.mean()),
            change=paired_change(self.reference_hits, logits.argmax(1) == self.held_out.labels),
        )


def run_model(model: Any, images: np.ndarray) -> np.ndarray:
    """Logits of ``images`` through ``model`` (an onnx.ModelProto) in ONNX Runtime on the CPU."""

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the Q/DQ fusion notes are not the user's business
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types; a graph we wrote that it refuses is our failure to name
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QuantizationError(f"ONNX Runtime refused a quantized variant of the model ({first_line})") from exc
    name = session.get_inputs()[0].name
    batches = [session.run(None, {name: feed})[0][:count] for feed, count in padded_feeds(session, images, BATCH)]
    return np.concatenate(batches).astype(np.float64)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
