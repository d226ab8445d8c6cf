"""A fine-tuned network back into ONNX: the trained weights in the FP32 graph (its Q/DQ form with the trained
scales is written by the same ``insert_tensorrt_qdq`` as post-training calibration), and what the INT8
graph records of the fine-tuning."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.lineage import QatRecord
from resnet_deploy.evaluate.paired_stats import PairedChange
from resnet_deploy.quantize.qat import QatRun

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")


def trained_fp32(model: Any, run: QatRun) -> Any:
    """A copy of ``model`` with the fine-tuned weights and biases (still FP32: the form to quantize)."""
    trained = copy.deepcopy(model)
    weights = run.weights()
    for init in trained.graph.initializer:
        if init.name in weights:
            original = onnx.numpy_helper.to_array(init)
            value = weights[init.name].astype(original.dtype).reshape(original.shape)
            init.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(value), init.name))
    return trained


def qat_record(run: QatRun, before: PairedChange, after: PairedChange) -> QatRecord:
    """What the INT8 graph records of the fine-tuning: ``before`` post-training (every layer INT8), ``after`` QAT."""
    return QatRecord(
        epochs=run.epochs,
        dataset=run.dataset,
        images_per_epoch=run.images_per_epoch,
        lr=run.options.lr,
        learned_scales=run.options.learn_scales,
        top1_change_before_pp=before.delta_pp,
        top1_change_after_pp=after.delta_pp,
        held_out_images=after.images,
    )
