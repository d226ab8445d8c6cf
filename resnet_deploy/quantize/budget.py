"""Mixed precision chosen by measured accuracy: keep layers out of INT8 until a top-1 budget is met.

Calibrate and score the all-INT8 model on held-out images (a seeded sample of the test split; the
calibration images come from the training split). Over the budget, every layer is scored left out of
INT8 on the held-out images INT8 changes most (a cheap proxy, 1 in 8 of them, at least 32) and ranked
(:func:`resnet_deploy.quantize.sensitivity.rank`); the shortest prefix of the ranking that meets the
budget, scored on every held-out image, is found by doubling and halving; then the layers the budget
holds without go back into INT8, in groups. The budget is compared with the point estimate of the
paired change or with the upper bound of its 95% interval (``gate``). A model INT8 does not hurt is
scored once and kept whole; a budget no mix reaches is reported with the best drop reached.

Keeping layers out is one way back within the budget (``recover="keep-out"``). The other is
quantization-aware fine-tuning with every layer in INT8 (``"qat"``, :mod:`resnet_deploy.quantize.recover`);
``"qat,keep-out"`` fine-tunes first and keeps layers out of the fine-tuned model only if it is still over.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resnet_deploy.artifacts.lineage import GraphLineage, QatRecord
from resnet_deploy.errors import QuantizationError
from resnet_deploy.evaluate.paired_stats import GATES, change_from_counts
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.quantize.judge import HeldOutJudge, VariantScore
from resnet_deploy.quantize.layers import QuantLayer, mac_share
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.quantize.qat_options import QatOptions
from resnet_deploy.quantize.qdq_tensorrt import KEEP_OUT_PRECISIONS
from resnet_deploy.quantize.sensitivity import scan, variant

DEFAULT_HELD_OUT = 256
RECOVERIES = ("keep-out", "qat", "qat,keep-out")  # what brings an over-budget INT8 model back within it
STEPS = ("post-training", "keep-out", "qat", "qat+keep-out")  # which step met the budget
Z95 = 1.959964  # the two-sided 95% normal quantile


@dataclass(frozen=True)
class BudgetOptions:
    max_top1_drop: float  # percentage points of top-1 error the INT8 model may add to the FP32 one
    gate: str = "estimate"  # compare the budget with the "estimate" or the 95% interval's "upper-bound"
    images: int = DEFAULT_HELD_OUT  # held-out images the drop is measured on
    precision: str = "fp16"  # what a layer kept out of INT8 computes in
    try_methods: bool = False  # search with every calibration method and keep the best
    recover: str = "keep-out"  # one of RECOVERIES
    qat: QatOptions = field(default_factory=QatOptions)  # how to fine-tune, when ``recover`` includes qat

    def __post_init__(self) -> None:
        if self.recover not in RECOVERIES:
            raise QuantizationError(
                f"unknown recovery {self.recover!r}; choose {', '.join(RECOVERIES)}", field="budget.recover"
            )
        if self.try_methods and self.fine_tunes:
            raise QuantizationError(
                "trying every calibration method searches post-training layers kept out; quantization-aware "
                "training starts from one method's scales: drop `budget.try_methods` or `budget.recover=qat`",
                field="budget.try_methods",
            )
        if not math.isfinite(self.max_top1_drop) or self.max_top1_drop < 0:
            raise QuantizationError(f"the top-1 budget must be a number of pp >= 0, got {self.max_top1_drop!r}")
        if self.gate not in GATES:
            raise QuantizationError(f"unknown gate {self.gate!r}; choose one of {', '.join(GATES)}")
        if self.precision not in KEEP_OUT_PRECISIONS:
            raise QuantizationError(f"layers kept out of INT8 run in fp16 or fp32, not {self.precision!r}")
        if self.images < 1:
            raise QuantizationError(f"the held-out images must be at least 1, got {self.images}")
        floor = change_from_counts(self.images, 0, 0).gated_pp(self.gate)
        if floor > self.max_top1_drop:  # refused before minutes of calibration, not after
            raise QuantizationError(
                f"{self.images} held-out images cannot bound a top-1 change below {floor:.2f} pp even when every "
                f"image agrees, so a budget of {self.max_top1_drop:g} pp on the upper bound cannot be met; "
                + (
                    f"score at least {_images_to_bound(self.max_top1_drop)} `budget.images`, or `budget.gate=estimate`"
                    if self.max_top1_drop > 0
                    else "an interval's upper bound is never 0: `budget.gate=estimate`"
                )
            )

    @property
    def fine_tunes(self) -> bool:
        return "qat" in self.recover.split(",")

    @property
    def keeps_out(self) -> bool:
        return "keep-out" in self.recover.split(",")

    def gate_text(self) -> str:
        return "point estimate" if self.gate == "estimate" else "upper bound of the 95% interval"


@dataclass
class BudgetOutcome:
    """What the search settled on for one calibration method."""

    method: str
    options: BudgetOptions
    layers: list[QuantLayer]  # every quantizable layer
    kept_out: list[QuantLayer]  # in the order they were kept out
    score: VariantScore  # of the graph settled on (the best reached when the budget was not met)
    all_int8: VariantScore
    images: int
    dataset: str
    met: bool
    steps: list[dict[str, Any]] = field(default_factory=list)  # the drop after each layer kept out
    methods_tried: list[dict[str, Any]] = field(default_factory=list)  # with --try-methods: each one's brief()
    step: str = "post-training"  # which step met the budget (or got nearest): one of STEPS
    ranks: dict[str, int] = field(default_factory=dict)  # node -> its place in the search's ranking
    post_training: VariantScore | None = None  # every layer INT8 before fine-tuning, when QAT ran
    qat: QatRecord | None = None  # the fine-tuning, when it ran

    @property
    def int8_mac_share(self) -> float:
        return mac_share(self.layers, {layer.node for layer in self.kept_out})

    @property
    def gated_pp(self) -> float:
        return self.score.change.gated_pp(self.options.gate)

    def reasons(self) -> dict[str, str]:
        """Why each kept-out layer is out: its rank, the all-INT8 drop over the budget, the drop with it kept out."""
        before = self.all_int8.change.gated_pp(self.options.gate)
        others = len(self.kept_out) - 1
        return {
            layer.node: (
                f"Δtop-1 ({self.options.gate}) {before:+.2f} pp over the {self.options.max_top1_drop:g} pp budget "
                f"with every layer INT8; ranked #{self.ranks.get(layer.node, 0)} of {len(self.layers)} by what "
                f"leaving it out restores; {self.gated_pp:+.2f} pp with it"
                + (f" and {others} more kept out" if others else " kept out")
            )
            for layer in self.kept_out
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "max_top1_drop_pp": self.options.max_top1_drop,
            "gate": self.options.gate,
            "met": self.met,
            "held_out_images": self.images,
            "held_out_dataset": self.dataset,
            "kept_out": [
                {"node": layer.node, "module": layer.module, "op": layer.op, "macs": layer.macs, "why": why}
                for layer, why in zip(self.kept_out, self.reasons().values(), strict=True)
            ],
            "kept_out_precision": self.options.precision,
            "int8_mac_share": self.int8_mac_share,
            "top1_change": self.score.change.to_dict(),
            "all_int8_top1_change": self.all_int8.change.to_dict(),
            "steps": self.steps,
            "methods_tried": self.methods_tried,
            "step": self.step,
            "post_training_top1_change": (self.post_training or self.all_int8).change.to_dict(),
            "qat": self.qat.to_dict() if self.qat else None,
        }

    def brief(self) -> dict[str, Any]:
        """How this method fared, for the comparison of methods: met, layers kept out, INT8 share, drop."""
        return {
            "method": self.method,
            "met": self.met,
            "kept_out": [layer.node for layer in self.kept_out],
            "int8_mac_share": self.int8_mac_share,
            "gated_pp": self.gated_pp,
            "top1_change": self.score.change.to_dict(),
        }

    def describe(self) -> str:
        kept = ", ".join(layer.label() for layer in self.kept_out) or "none"
        return (
            f"{self.method}, {self.step}: Δtop-1 {self.score.change.describe()} on {self.images} held-out images; "
            f"kept out of INT8 ({self.options.precision}): {kept}; {100 * self.int8_mac_share:.1f}% of MACs in INT8"
        )

    def unmet_message(self) -> str:
        if self.step == "qat":  # fine-tuned, and keeping layers out was not allowed
            assert self.qat is not None
            before = (self.post_training or self.all_int8).change.gated_pp(self.options.gate)
            return (
                f"the top-1 budget of {self.options.max_top1_drop:g} pp ({self.options.gate_text()}) was not met by "
                f"quantization-aware training: {self.qat.epochs} epochs brought Δtop-1 from "
                f"{before:+.2f} to {self.gated_pp:+.2f} pp; raise `qat.epochs` (it resumes "
                "where it stopped), or keep layers out too (`budget.recover=qat,keep-out`)"
            )
        return (
            f"the top-1 budget of {self.options.max_top1_drop:g} pp ({self.options.gate_text()}) cannot be met: "
            f"the best reached was {self.gated_pp:+.2f} pp ({self.score.change.describe()}, method {self.method}, "
            f"{len(self.kept_out)} of {len(self.layers)} layers kept out of INT8); raise `budget.max_top1_drop`"
            + (", or fine-tune longer first (`qat.epochs`)" if self.options.fine_tunes else "")
            + (
                ", or try every method (`budget.try_methods`)"
                if not (self.options.try_methods or self.options.fine_tunes)
                else ""
            )
        )


def search(
    fp32_model: Any,
    amax: dict[str, float],
    layers: list[QuantLayer],
    judge: HeldOutJudge,
    options: BudgetOptions,
    *,
    method: str,
    all_int8: VariantScore | None = None,
    out: Messages = SILENT,
) -> BudgetOutcome:
    """Keep the most sensitive layers out of INT8 until ``options.max_top1_drop`` is met (``all_int8``: the
    all-INT8 score, when already known).

    Each layer is ranked by what leaving it out restores on the held-out images the all-INT8 model changes
    most (:func:`telling_images`: a cheap proxy); the shortest prefix of that ranking that meets the
    budget on every held-out image is found by doubling, then halving; then the layers the budget holds
    without go back into INT8, in groups.
    """
    all_int8 = all_int8 or judge.score(variant(fp32_model, amax, ()))
    outcome = BudgetOutcome(
        method, options, layers, [], all_int8, all_int8, judge.images, judge.held_out.spec, met=False
    )
    out.say(f"{method}: all layers INT8: Δtop-1 {all_int8.change.describe()}")
    outcome.met = outcome.gated_pp <= options.max_top1_drop
    if outcome.met:
        return outcome
    telling = telling_images(judge, all_int8)
    on = f"the {len(telling)} held-out images INT8 changes most" if telling is not None else "the held-out images"
    over = f"over the budget of {options.max_top1_drop:g} pp"
    out.say(f"{method}: {over}; ranking each of {len(layers)} layers left out on {on}")
    proxy = judge.restrict(all_int8, telling) if telling is not None else all_int8
    _, ranked = scan(
        fp32_model, amax, layers, judge, precision=options.precision, alone=False, all_int8=proxy, subset=telling
    )
    outcome.ranks = {item.layer.node: rank for rank, item in enumerate(ranked, 1)}
    _shortest_prefix(outcome, [item.layer for item in ranked], fp32_model, amax, judge, out)
    if outcome.met and len(outcome.kept_out) > 1:
        _prune(outcome, fp32_model, amax, judge, out)
    outcome.step = "keep-out"
    return outcome


TELLING_MIN = 32  # the ranking scores every layer left out on at least this many held-out images...
TELLING_SHARE = 8  # ...or on this share of them (1 in 8), whichever is more


def telling_images(judge: HeldOutJudge, all_int8: VariantScore) -> np.ndarray | None:
    """The held-out images that tell layers apart: those whose top-1 verdict INT8 flips, then those whose
    softmax it moves most (KL); None when that would be every image anyway."""
    count = max(TELLING_MIN, math.ceil(judge.images / TELLING_SHARE))
    if all_int8.image_kl is None or all_int8.image_classes is None or count >= judge.images:
        return None
    flipped = (all_int8.image_classes == judge.held_out.labels) != judge.reference_hits
    order = np.lexsort((-all_int8.image_kl, ~flipped))  # flipped first, then by KL, largest first
    return np.sort(order[:count])


def _shortest_prefix(
    outcome: BudgetOutcome,
    ranked: list[QuantLayer],
    fp32_model: Any,
    amax: dict[str, float],
    judge: HeldOutJudge,
    out: Messages,
) -> None:
    """Keep out the shortest prefix of ``ranked`` that meets the budget, scored on every held-out image:
    1, 2, 4, ... layers until one meets it, then halving the gap to the last that did not. Unmet with
    every layer out: the best reached."""
    options, method = outcome.options, outcome.method
    scores: dict[int, VariantScore] = {}

    def meets(count: int) -> bool:
        kept = ranked[:count]
        score = judge.score(variant(fp32_model, amax, {layer.node for layer in kept}, options.precision))
        scores[count] = score
        gated = score.change.gated_pp(options.gate)
        outcome.steps.append(
            {"kept_out": [layer.node for layer in kept], "gated_pp": gated, "top1_change": score.change.to_dict()}
        )
        shown = kept[0].label() if count == 1 else f"the {count} most sensitive (to {kept[-1].label()})"
        out.say(f"{method}: {shown} kept out: Δtop-1 {score.change.describe()}")
        if gated < outcome.gated_pp:
            outcome.kept_out, outcome.score = list(kept), score
        return gated <= options.max_top1_drop

    below, count = 0, 1  # below: the longest prefix known to miss the budget
    while not meets(count):
        below = count
        if count == len(ranked):
            return
        count = min(2 * count, len(ranked))
    above = count
    while above - below > 1:
        middle = (above + below) // 2
        if meets(middle):
            above = middle
        else:
            below = middle
    outcome.kept_out, outcome.score, outcome.met = ranked[:above], scores[above], True


def _prune(outcome: BudgetOutcome, fp32_model: Any, amax: dict[str, float], judge: HeldOutJudge, out: Messages) -> None:
    """Put back into INT8 the kept-out layers the budget holds without (the last one kept out excepted), least
    sensitive first and in groups: the whole group when the budget holds, else each half of it in turn."""
    options = outcome.options
    groups = [list(reversed(outcome.kept_out[:-1]))]
    while groups:
        group = groups.pop(0)
        trial = [kept for kept in outcome.kept_out if kept not in group]
        score = judge.score(variant(fp32_model, amax, {kept.node for kept in trial}, options.precision))
        if score.change.gated_pp(options.gate) <= options.max_top1_drop:
            outcome.kept_out, outcome.score = trial, score
            labels = ", ".join(layer.label() for layer in group)
            out.say(f"{outcome.method}: {labels} back in INT8: Δtop-1 {score.change.describe()}")
        elif len(group) > 1:
            groups[:0] = [group[: len(group) // 2], group[len(group) // 2 :]]


def _images_to_bound(budget_pp: float) -> int:
    """The fewest images whose interval, with every image agreeing, has its upper bound within ``budget_pp``."""
    n = max(1, math.ceil(Z95**2 * (100 / budget_pp - 1)))
    while change_from_counts(n, 0, 0).high_pp > budget_pp:
        n += 1
    return n


def best(outcomes: list[BudgetOutcome]) -> BudgetOutcome:
    """The outcome to keep: one that meets the budget with the most MACs in INT8, then the smallest drop."""
    # among those that miss it, the smallest drop reached: that is what the error reports
    return min(outcomes, key=lambda o: (not o.met, -round(o.int8_mac_share, 9) if o.met else 0.0, o.gated_pp))


def summary_line(budget: dict[str, Any]) -> str:
    """One line from :meth:`BudgetOutcome.to_dict`: the measured drop, the layers kept out, the INT8 share."""
    kept = ", ".join(f"{k['module'] or k['node']} ({k['node']})" for k in budget["kept_out"]) or "none"
    change = budget["top1_change"]
    step = budget.get("step", "post-training")
    qat = budget.get("qat")
    trained = f", after {qat['epochs']} epochs of quantization-aware training" if qat else ""
    return (
        f"within the budget of {budget['max_top1_drop_pp']:g} pp ({budget['gate']}, method {budget['method']}, "
        f"met by {step}{trained}): "
        f"Δtop-1 {change['delta_pp']:+.2f} pp [{change['low_pp']:+.2f}, {change['high_pp']:+.2f}] "
        f"on {budget['held_out_images']} held-out images; kept out of INT8 ({budget['kept_out_precision']}): {kept}; "
        f"{100 * budget['int8_mac_share']:.1f}% of MACs in INT8"
    )


def same_calibration(calibration: CalibrationOptions, budget: BudgetOptions | None) -> Callable[[GraphLineage], bool]:
    """Whether an INT8 ONNX found at the output was calibrated as asked, and so is ours to redo: one calibrated
    another way (another method, image count, or with/without a budget) is the user's, not ours to overwrite."""

    def made(lineage: GraphLineage) -> bool:
        recorded = lineage.calibration
        if recorded is None or recorded.images != calibration.count:
            return False
        if not (budget and budget.try_methods) and recorded.method != calibration.method:
            return False  # trying them all records the method that served best
        kept_out = lineage.budget.kept_out_precision if lineage.budget else ""
        if lineage.qat is not None and not (budget and budget.fine_tunes):
            return False  # fine-tuned weights are not ours to replace with post-training ones
        return kept_out == (budget.precision if budget else "")

    return made
