"""``qat``: FP32 ONNX -> quantization-aware fine-tuned INT8 Q/DQ ONNX for TensorRT, every layer in INT8.

Calibrate (ranges from the cache when there), score post-training INT8 on held-out test images,
fine-tune with fake quantization at TensorRT's placement (:mod:`resnet_deploy.quantize.qat`), and write
the Q/DQ graph with the trained weights and scales: the same form ``calibrate`` writes for TensorRT, so
``build-engine``, ``validate`` and the runners take it unchanged. The graph records the fine-tuning and
the top-1 change before and after it, both against the FP32 model on the same held-out images.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy._io import check_writable
from resnet_deploy.artifacts.onnx_io import load_onnx, onnx_props, write_lineage
from resnet_deploy.errors import QuantizationError
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.quantize import qat_state
from resnet_deploy.quantize.budget import DEFAULT_HELD_OUT
from resnet_deploy.quantize.calib_data import load_held_out_set
from resnet_deploy.quantize.calibrate import int8_lineage, preprocessing_inside, save_checked
from resnet_deploy.quantize.judge import HeldOutJudge
from resnet_deploy.quantize.measured import (
    cache_dir_usable,
    calibration_images,
    check_fp32_export,
    measured_ranges,
    tensorrt_amax,
)
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.quantize.qat import check_can_fine_tune
from resnet_deploy.quantize.qat_graph import qat_record
from resnet_deploy.quantize.qat_options import QatOptions
from resnet_deploy.quantize.qdq_tensorrt import insert_tensorrt_qdq
from resnet_deploy.quantize.recover import fine_tune_scored
from resnet_deploy.quantize.sensitivity import variant


@dataclass
class QatResult:
    path: Path
    epochs: int
    resumed_from: int  # epochs found done in a saved state
    dataset: str
    images_per_epoch: int
    fine_tune_seconds: float
    total_seconds: float
    calibration_id: str
    method: str
    calibration_images: int
    held_out_images: int
    top1_change_before: dict[str, Any]  # post-training INT8 against FP32
    top1_change_after: dict[str, Any]  # this graph against FP32
    losses: list[float] = field(default_factory=list)
    placement: dict[str, int] = field(default_factory=dict)
    int8_mac_share: float = 1.0
    rank: int = 0  # this process's, under torchrun: the first (0) wrote the output and reports

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["path"] = str(self.path)
        return out


def qat_onnx(
    onnx_path: str | Path,
    output: str | Path,
    calibration: CalibrationOptions | None = None,
    qat: QatOptions | None = None,
    *,
    held_out_images: int = DEFAULT_HELD_OUT,
    world: Any = None,
    out: Messages = SILENT,
) -> QatResult:
    """Fine-tune ``onnx_path`` with every layer in INT8 and write its TensorRT Q/DQ form to ``output``.

    ``calibration`` says where the scales start (and its ``data``, a labelled dataset, is also what is
    fine-tuned on and scored, unless ``qat.data`` names another); the state is saved beside ``output``
    after every epoch, and a run cut off resumes from it. ``world``: the torchrun group this process is one of
    (:func:`resnet_deploy.quantize.qat.fine_tune`); its first process alone writes.
    """
    start = time.perf_counter()
    options = calibration or CalibrationOptions()
    qat = qat or QatOptions()
    if qat.data is None and options.data:
        qat = dataclasses.replace(qat, data=options.data)
    output = check_writable(output)
    if preprocessing_inside(onnx_path):
        raise QuantizationError(
            f"{onnx_path} takes raw frames (its preprocessing is inside); fine-tune the export it was converted "
            "from, then convert the result"
        )
    model = load_onnx(onnx_path)
    metadata = check_fp32_export(model, onnx_path, "fine-tune")
    check_can_fine_tune(model, metadata, qat.data, str(onnx_path))  # before calibration, not after
    held_out = load_held_out_set(metadata, qat.data, held_out_images, field="held_out_images")
    writable_cache = (world is None or world.is_main) and cache_dir_usable(options.cache_dir, out)
    calib = calibration_images(metadata, onnx_path, options, out)
    calib.report(out)
    measured = measured_ranges(model, onnx_path, calib, options, "tensorrt", writable_cache, out)
    amax = tensorrt_amax(measured.ranges)
    judge = HeldOutJudge(model, held_out, out)
    before = judge.score(variant(model, amax, ()))
    out.say(
        f"post-training INT8 ({options.method}): Δtop-1 {before.change.describe()} on {judge.images} held-out images"
    )
    state = qat_state.path_for(output)
    fine_tuned = fine_tune_scored(
        model,
        metadata,
        amax,
        judge,
        qat,
        source_sha256=measured.cache.model_sha256,
        init_batches=calib.batches,
        state_path=state,
        world=world,
        out=out,
    )
    run, after = fine_tuned.run, fine_tuned.score
    out.say(f"after quantization-aware training: Δtop-1 {after.change.describe()}")
    quantized = fine_tuned.fp32_model  # rewritten in place: the INT8 graph scored, written
    placement = insert_tensorrt_qdq(quantized, fine_tuned.amax).to_dict()
    record = qat_record(run, before.change, after.change)
    lineage = int8_lineage("tensorrt", options.method, measured.cache, calib, qat=record)
    write_lineage(quantized, lineage, onnx_props(model))
    if world is None or world.is_main:
        save_checked(quantized, output)
        state.unlink(missing_ok=True)  # the result is written: nothing left to resume
    return QatResult(
        path=output,
        epochs=run.epochs,
        resumed_from=run.resumed_from,
        dataset=run.dataset,
        images_per_epoch=run.images_per_epoch,
        fine_tune_seconds=run.seconds,
        total_seconds=time.perf_counter() - start,
        calibration_id=measured.cache.cal_id,
        method=options.method,
        calibration_images=calib.count,
        held_out_images=judge.images,
        top1_change_before=before.change.to_dict(),
        top1_change_after=after.change.to_dict(),
        losses=run.losses,
        placement=placement,
        rank=world.rank if world is not None else 0,
    )
