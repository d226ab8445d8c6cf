"""Escalation to a top-1 budget: post-training INT8, then quantization-aware training, then layers kept out.

Every step is scored on the same held-out images against the same FP32 model
(:class:`~resnet_deploy.quantize.judge.HeldOutJudge`), and gated the same way as the keep-out search:

1. post-training: the calibrated scales, every layer INT8; within the budget, done;
2. ``qat``: fine-tune the model with every layer in INT8 from those scales
   (:func:`resnet_deploy.quantize.qat.fine_tune`), score its Q/DQ graph; within the budget, done;
3. ``keep-out`` after ``qat``: keep the most sensitive layers of the fine-tuned model out of INT8
   (:func:`resnet_deploy.quantize.budget.search`, starting from the fine-tuned score).

The fine-tuning's state is saved beside the output after every epoch: a run cut off, or over the budget
and run again with more epochs, resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.quantize.budget import BudgetOptions, BudgetOutcome, search
from resnet_deploy.quantize.judge import HeldOutJudge, VariantScore
from resnet_deploy.quantize.layers import QuantLayer
from resnet_deploy.quantize.qat import QatRun, fine_tune
from resnet_deploy.quantize.qat_graph import qat_record, trained_fp32
from resnet_deploy.quantize.qat_options import QatOptions
from resnet_deploy.quantize.sensitivity import variant


@dataclass
class Recovered:
    """The outcome, and the FP32 graph and activation amax the INT8 graph is written from."""

    outcome: BudgetOutcome
    fp32_model: Any  # the source, or the fine-tuned copy of it
    amax: dict[str, float]


@dataclass
class FineTuned:
    """A fine-tuning's run, the source with its trained weights, its trained amax, and its all-INT8 score."""

    run: QatRun
    fp32_model: Any
    amax: dict[str, float]
    score: VariantScore


def fine_tune_scored(
    model: Any,
    metadata: ArtifactMetadata,
    amax: dict[str, float],
    judge: HeldOutJudge,
    options: QatOptions,
    *,
    source_sha256: str,
    init_batches: list[np.ndarray],
    state_path: Path | None,
    world: Any = None,
    out: Messages = SILENT,
) -> FineTuned:
    """Fine-tune ``model`` from ``amax`` (resuming from ``state_path`` when its state is there) and score the
    result, every layer INT8, against the FP32 source on ``judge``'s held-out images."""
    run = fine_tune(
        model,
        metadata,
        amax,
        options,
        source_sha256=source_sha256,
        init_batches=init_batches,
        state_path=state_path,
        resume=True,
        world=world,
        out=out,
    )
    trained, learned = trained_fp32(model, run), run.amax()
    return FineTuned(run, trained, learned, judge.score(variant(trained, learned, ())))


def within_budget(
    model: Any,
    metadata: ArtifactMetadata,
    amax: dict[str, float],
    layers: list[QuantLayer],
    judge: HeldOutJudge,
    options: BudgetOptions,
    *,
    method: str,
    source_sha256: str,
    init_batches: list[np.ndarray],
    state_path: Path | None,
    out: Messages = SILENT,
) -> Recovered:
    """Post-training INT8, then the recoveries ``options.recover`` allows, in order, until the budget is met."""
    if not options.fine_tunes:
        return Recovered(search(model, amax, layers, judge, options, method=method, out=out), model, amax)
    post = judge.score(variant(model, amax, ()))
    out.say(f"{method}: post-training, all layers INT8: Δtop-1 {post.change.describe()}")
    outcome = BudgetOutcome(method, options, layers, [], post, post, judge.images, judge.held_out.spec, met=False)
    outcome.met = outcome.gated_pp <= options.max_top1_drop
    if outcome.met:
        return Recovered(outcome, model, amax)
    out.say(
        f"{method}: over the budget of {options.max_top1_drop:g} pp; quantization-aware training with every layer "
        f"in INT8 ({options.qat.epochs} epochs)"
    )
    tuned = fine_tune_scored(
        model,
        metadata,
        amax,
        judge,
        options.qat,
        source_sha256=source_sha256,
        init_batches=init_batches,
        state_path=state_path,
        out=out,
    )
    after = tuned.score
    out.say(f"{method}: after QAT, all layers INT8: Δtop-1 {after.change.describe()}")
    outcome = BudgetOutcome(
        method, options, layers, [], after, after, judge.images, judge.held_out.spec, met=False, step="qat"
    )
    outcome.met = outcome.gated_pp <= options.max_top1_drop
    if not outcome.met and options.keeps_out:
        outcome = search(tuned.fp32_model, tuned.amax, layers, judge, options, method=method, all_int8=after, out=out)
        outcome.step = "qat+keep-out"
    outcome.post_training = post
    outcome.qat = qat_record(tuned.run, post.change, after.change)
    return Recovered(outcome, tuned.fp32_model, tuned.amax)
