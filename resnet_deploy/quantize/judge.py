"""How far a quantized variant of a model strays from its FP32 self, on held-out images.

The FP32 model runs once; every variant (one layer in INT8, all but one, a mixed-precision
candidate) runs in ONNX Runtime on the same images and is compared with it: top-1 agreement,
the KL divergence of the softmax, logit errors, and the paired change in top-1 error against the
labels (:mod:`resnet_deploy.evaluate.paired_stats`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

BATCH = 16  # images per run: ResNet-50 at 224 scores as fast as at 64, in half the memory


@dataclass(frozen=True)
class VariantScore:
    """One variant against the FP32 model on the held-out images."""

    top1_agreement: float  # share of images whose top-1 class is the FP32 model's
    kl: float  # mean KL(FP32 softmax || variant softmax), nats
    max_logit_error: float
    mean_logit_error: float
    change: PairedChange  # top-1 error against the labels, paired with the FP32 model's
    # per scored image: KL from the FP32 softmax, and the top-1 class (what the budget search's proxy reads)
    image_kl: np.ndarray | None = field(default=None, repr=False, compare=False)
    image_classes: np.ndarray | None = field(default=None, repr=False, compare=False)

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

    def score(self, model: Any, subset: np.ndarray | None = None) -> VariantScore:
        """``model`` against FP32 on the held-out images (or on the images at the indices ``subset``)."""
        chosen = slice(None) if subset is None else np.asarray(subset)  # a slice: the images are not copied
        logits = run_model(model, self.held_out.images[chosen])
        self.runs += 1
        reference_log_p, reference_logits = self._reference_log_p[chosen], self.reference_logits[chosen]
        image_kl = np.maximum((np.exp(reference_log_p) * (reference_log_p - _log_softmax(logits))).sum(1), 0.0)
        error = np.abs(logits - reference_logits)
        return self._of(chosen, logits.argmax(1), image_kl, float(error.max()), float(error.mean()))

    def restrict(self, score: VariantScore, subset: np.ndarray) -> VariantScore:
        """A full score as if only the images at ``subset`` had been scored (its logit errors stay the full ones)."""
        assert score.image_kl is not None and score.image_classes is not None
        chosen = np.asarray(subset)
        return self._of(
            chosen,
            score.image_classes[chosen],
            score.image_kl[chosen],
            score.max_logit_error,
            score.mean_logit_error,
        )

    def _of(
        self, chosen: np.ndarray | slice, classes: np.ndarray, image_kl: np.ndarray, max_error: float, mean_error: float
    ) -> VariantScore:
        return VariantScore(
            top1_agreement=float((classes == self.reference_logits[chosen].argmax(1)).mean()),
            kl=float(image_kl.mean()),
            max_logit_error=max_error,
            mean_logit_error=mean_error,
            change=paired_change(self.reference_hits[chosen], classes == self.held_out.labels[chosen]),
            image_kl=image_kl,
            image_classes=classes,
        )


def run_model(model: Any, images: np.ndarray) -> np.ndarray:
    """Logits of ``images`` through ``model`` (an onnx.ModelProto) in ONNX Runtime on the CPU."""

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the Q/DQ fusion notes are not the user's business
    options.enable_cpu_mem_arena = False  # the arena would keep a batch's freed buffers reserved
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
