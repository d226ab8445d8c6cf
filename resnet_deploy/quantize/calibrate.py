"""``calibrate``: FP32 ONNX + calibration images -> INT8 Q/DQ ONNX for TensorRT or ONNX Runtime CPU."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import atomic_output, check_writable, temporary_prefix
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.lineage import (
    QUANTIZATIONS,
    BudgetRecord,
    CalibrationRecord,
    GraphLineage,
    KeptOut,
    QatRecord,
)
from resnet_deploy.artifacts.onnx_io import load_onnx, onnx_props, read_onnx_metadata, write_lineage
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.convert.preprocess_graph import fuse_preprocessing, strip_preprocessing
from resnet_deploy.errors import QuantizationError
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.quantize import qat_state
from resnet_deploy.quantize.budget import BudgetOptions, BudgetOutcome, best
from resnet_deploy.quantize.calib_data import CalibrationSet, load_held_out_set
from resnet_deploy.quantize.cpu_qdq import quantize_for_cpu
from resnet_deploy.quantize.judge import HeldOutJudge
from resnet_deploy.quantize.layers import quantizable_layers
from resnet_deploy.quantize.measured import (
    CacheEntry,
    MeasuredRanges,
    Ranges,
    cache_dir_usable,
    calibration_images,
    check_fp32_export,
    measured_ranges,
    tensorrt_amax,
)
from resnet_deploy.quantize.options import METHODS, TARGETS, CalibrationOptions
from resnet_deploy.quantize.qat import check_can_fine_tune
from resnet_deploy.quantize.qdq_tensorrt import insert_tensorrt_qdq
from resnet_deploy.quantize.recover import Recovered, within_budget

if TYPE_CHECKING:
    import onnx
else:
    onnx = lazy_import("onnx")


@dataclass
class CalibrateResult:
    path: Path
    target: str
    method: str
    calibration_id: str
    images: int
    dataset: str
    cache_hit: bool
    cache_files: list[Path]
    calibrate_seconds: float
    total_seconds: float
    placement: dict[str, int] = field(default_factory=dict)
    budget: dict[str, Any] | None = None  # the accuracy-budget search, when one ran
    images_asked: int = 0  # more than the data has calibrates on all of it
    skipped_images: int = 0  # files of an unlabelled folder that did not decode and were left out
    skipped_image_paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["path"] = str(self.path)
        out["cache_files"] = [str(p) for p in self.cache_files]
        return out


def calibrate_onnx(
    onnx_path: str | Path,
    output: str | Path,
    options: CalibrationOptions | None = None,
    *,
    target: str = "tensorrt",
    budget: BudgetOptions | None = None,
    qat_state_path: Path | None = None,
    out: Messages = SILENT,
    **fields: Any,
) -> CalibrateResult:
    """Calibrate ``onnx_path`` and write its INT8 form for ``target`` to ``output``.

    ``options`` (or its fields as keywords: ``method="minmax", count=64``) say how. With ``budget``
    (TensorRT placement only) the top-1 drop measured on held-out images is brought within it: by
    keeping the most sensitive layers out of INT8 (:mod:`resnet_deploy.quantize.budget`), by
    quantization-aware training, or both (``budget.recover``, :mod:`resnet_deploy.quantize.recover`);
    ``out`` hears the search as it goes. Quantization-aware training keeps its resumable state in
    ``qat_state_path`` (default: beside ``output``).
    """
    options = CalibrationOptions.of(options, **fields)
    start = time.perf_counter()
    if target not in TARGETS:
        raise QuantizationError(f"unknown target {target!r}; choose tensorrt or cpu")
    if budget is not None and target != "tensorrt":
        raise QuantizationError(
            "a top-1 budget chooses layers of the TensorRT Q/DQ placement; calibrate for `target=tensorrt`",
            field="target",
        )
    output = check_writable(output)
    qat_state_path = qat_state_path or qat_state.path_for(output)
    if preprocessing_inside(onnx_path):
        return _calibrate_network(onnx_path, output, options, target=target, budget=budget, out=out)
    writable_cache = cache_dir_usable(options.cache_dir, out)
    model = load_onnx(onnx_path)  # loaded once: metadata, checks, ranges and the Q/DQ graph all use it
    metadata = check_fp32_export(model, onnx_path)
    calib = calibration_images(metadata, onnx_path, options, out)
    calib.report(out)
    outcome: BudgetOutcome | None = None
    if budget is None:
        measured = measured_ranges(model, onnx_path, calib, options, target, writable_cache, out)
        fp32_graph, amax = model, tensorrt_amax(measured.ranges)
    else:
        chosen, measured = _within_budget(
            model, onnx_path, metadata, calib, options, budget, writable_cache, qat_state_path, out
        )
        outcome, fp32_graph, amax = chosen.outcome, chosen.fp32_model, chosen.amax
        options = CalibrationOptions.of(options, method=outcome.method)
    keep_out = [layer.node for layer in outcome.kept_out] if outcome else []
    precision = budget.precision if budget else "fp16"
    quantized, placement = _quantize(fp32_graph, onnx_path, measured.ranges, amax, target, keep_out, precision)
    write_lineage(quantized, int8_lineage(target, options.method, measured.cache, calib, outcome), onnx_props(model))
    save_checked(quantized, output)
    if outcome is not None and outcome.qat is not None:
        qat_state_path.unlink(missing_ok=True)  # the result is written: nothing left to resume
    return CalibrateResult(
        path=output,
        target=target,
        method=options.method,
        calibration_id=measured.cache.cal_id,
        images=calib.count,
        dataset=calib.spec,
        cache_hit=measured.cache_hit,
        cache_files=measured.cache_files,
        calibrate_seconds=measured.seconds,
        total_seconds=time.perf_counter() - start,
        placement=placement,
        budget=outcome.to_dict() if outcome else None,
        images_asked=options.count,
        skipped_images=len(calib.skipped),
        skipped_image_paths=list(calib.skipped),
    )


def preprocessing_inside(onnx_path: str | Path) -> bool:
    """Whether the graph takes raw frames (``convert --preprocess-in-graph``)."""
    return read_onnx_metadata(onnx_path).frame_input is not None


def _calibrate_network(
    onnx_path: str | Path,
    output: Path,
    options: CalibrationOptions,
    *,
    target: str,
    budget: BudgetOptions | None,
    out: Messages,
) -> CalibrateResult:
    """Calibrate the network of a graph with its preprocessing inside: the preprocessing is taken out,
    the network calibrated as any export, and the same preprocessing put back in front of the INT8
    graph (float32, no Q/DQ: it computes Pillow's integers exactly)."""
    model = load_onnx(onnx_path)
    frame = strip_preprocessing(model, str(onnx_path))
    out.say(f"calibrating the network alone; its {frame.describe()} preprocessing goes back in front, in float32")
    with tempfile.TemporaryDirectory(prefix=temporary_prefix("network"), dir=output.parent) as work:
        network, quantized = Path(work) / "network.onnx", Path(work) / "network.int8.onnx"
        onnx.save(model, str(network))
        state = qat_state.path_for(output)  # beside the real output: a run cut off resumes
        result = calibrate_onnx(
            network, quantized, options, target=target, budget=budget, qat_state_path=state, out=out
        )
        fuse_preprocessing(quantized, output, frame)
    result.path = output
    return result


def _within_budget(
    model: Any,
    onnx_path: str | Path,
    metadata: ArtifactMetadata,
    calib: CalibrationSet,
    options: CalibrationOptions,
    budget: BudgetOptions,
    writable_cache: bool,
    qat_state_path: Path,
    out: Messages,
) -> tuple[Recovered, MeasuredRanges]:
    """The budget search with ``options.method`` (or every method): the best outcome and its ranges."""
    if budget.fine_tunes:
        check_can_fine_tune(model, metadata, budget.qat.data or options.data, str(onnx_path))
    held_out = load_held_out_set(metadata, options.data, budget.images)
    judge = HeldOutJudge(model, held_out, out)
    if budget.fine_tunes and budget.qat.data is None and options.data:  # fine-tune on the labelled data scored
        budget = dataclasses.replace(budget, qat=dataclasses.replace(budget.qat, data=options.data))
    layers = quantizable_layers(model)
    results = []
    for method in METHODS if budget.try_methods else (options.method,):
        tried = CalibrationOptions.of(options, method=method)
        measured = measured_ranges(model, onnx_path, calib, tried, "tensorrt", writable_cache, out)
        recovered = within_budget(
            model,
            metadata,
            tensorrt_amax(measured.ranges),
            layers,
            judge,
            budget,
            method=method,
            source_sha256=measured.cache.model_sha256,
            init_batches=calib.batches,
            state_path=qat_state_path,
            out=out,
        )
        results.append((recovered, measured))
    chosen = best([recovered.outcome for recovered, _ in results])
    if not chosen.met:
        raise QuantizationError(chosen.unmet_message())
    if budget.try_methods:
        for recovered, _ in results:
            out.say(("chosen: " if recovered.outcome is chosen else "tried:  ") + recovered.outcome.describe())
        chosen.methods_tried = [recovered.outcome.brief() for recovered, _ in results]
    return next((recovered, measured) for recovered, measured in results if recovered.outcome is chosen)


def _quantize(
    model: Any,
    onnx_path: str | Path,
    ranges: Ranges,
    amax: dict[str, float],
    target: str,
    keep_out: list[str],
    precision: str,
) -> tuple[Any, dict[str, int]]:
    """The INT8 model (``model`` itself, rewritten, for TensorRT, with ``amax``) and the Q/DQ placement counts."""
    if target == "tensorrt":
        placement = insert_tensorrt_qdq(model, amax, keep_out=keep_out, keep_out_precision=precision)
        return model, placement.to_dict()
    return quantize_for_cpu(onnx_path, ranges), {}


def int8_lineage(
    target: str,
    method: str,
    cache: CacheEntry,
    calib: CalibrationSet,
    outcome: BudgetOutcome | None = None,
    qat: QatRecord | None = None,
) -> GraphLineage:
    """What the INT8 model records of where it came from; within a budget, the layers kept out and why; after
    quantization-aware training (``qat``, or the budget's), the fine-tuning."""
    budget = None
    if outcome is not None:
        why = outcome.reasons()
        summary = {key: value for key, value in outcome.to_dict().items() if key not in ("steps", "kept_out")}
        budget = BudgetRecord(
            kept_out=tuple(KeptOut(layer.node, layer.module, why[layer.node]) for layer in outcome.kept_out),
            kept_out_precision=outcome.options.precision,
            int8_mac_share=outcome.int8_mac_share,
            summary=summary,
        )
    return GraphLineage(
        precision="int8",
        quantization=QUANTIZATIONS[0] if target == "tensorrt" else QUANTIZATIONS[1],
        source_onnx_sha256=cache.model_sha256,
        calibration=CalibrationRecord(cache.cal_id, method, calib.count, calib.spec),
        budget=budget,
        qat=qat or (outcome.qat if outcome else None),
    )


def save_checked(model: Any, output: Path) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise QuantizationError(f"the quantized graph failed onnx.checker ({str(exc).splitlines()[0]})") from exc
    with atomic_output(output) as tmp:
        onnx.save(model, str(tmp))
