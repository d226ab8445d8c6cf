"""Where a derived graph came from: its precision, its quantization form, the FP32 ONNX it was made from,
how it was calibrated and, within a top-1 budget, which layers were kept out of INT8 and why, and the
quantization-aware fine-tuning it came through.

Stored beside :class:`~resnet_deploy.artifacts.onnx_metadata.ArtifactMetadata` in an ONNX file's
``metadata_props`` (flat keys, JSON for the lists), tagged ``lineage: resnet-deploy-lineage/N``; an FP32
export carries none. Read back with :meth:`GraphLineage.from_props`, every value checked (one line
naming the key). Writers (the FP16 conversion, calibration) and readers (the engine builder, the file
provenance, the runners) use the attributes, never the keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from resnet_deploy.artifacts.versions import format_tag, read_version
from resnet_deploy.errors import ArtifactError

KIND, VERSION = "resnet-deploy-lineage", 1
FORMAT = format_tag(KIND, VERSION)
PRECISIONS = ("fp32", "fp16", "int8")
QUANTIZATIONS = ("qdq-tensorrt", "qdq-onnxruntime-cpu")  # TensorRT's symmetric placement; ONNX Runtime's CPU form
# Every prop the lineage owns: never part of the model's own metadata (an engine's sidecar keeps them apart).
KEYS = (
    "lineage",
    "precision",
    "quantization",
    "source_onnx_sha256",
    "calibration_id",
    "calibration_method",
    "calibration_images",
    "calibration_dataset",
    "int8_kept_out",
    "int8_kept_out_precision",
    "int8_mac_share",
    "accuracy_budget",
    "int8_qat",
)


@dataclass(frozen=True)
class CalibrationRecord:
    """How an INT8 graph's ranges were measured: the cache's content id, the method, the images."""

    id: str
    method: str
    images: int
    dataset: str


@dataclass(frozen=True)
class KeptOut:
    """A layer an accuracy budget kept out of INT8: its ONNX node, its PyTorch module, and why."""

    node: str
    module: str = ""
    why: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"node": self.node, "module": self.module, "why": self.why}


@dataclass(frozen=True)
class BudgetRecord:
    """INT8 within a top-1 budget: the layers kept out (and what they compute in), the share of MACs still in
    INT8, and the search's summary (the budget, the gate, the measured change: ``BudgetOutcome``'s figures)."""

    kept_out: tuple[KeptOut, ...]
    kept_out_precision: str
    int8_mac_share: float
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QatRecord:
    """Quantization-aware fine-tuning an INT8 graph came through: how long, on what, and the top-1 change
    against the FP32 model before (post-training, every layer INT8) and after (this graph)."""

    epochs: int
    dataset: str
    images_per_epoch: int
    lr: float
    learned_scales: bool
    top1_change_before_pp: float
    top1_change_after_pp: float
    held_out_images: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GraphLineage:
    """A graph's lineage; the default is an FP32 export's (which records none)."""

    precision: str = "fp32"
    quantization: str | None = None
    source_onnx_sha256: str | None = None  # of the FP32 ONNX this graph was converted or calibrated from
    calibration: CalibrationRecord | None = None
    budget: BudgetRecord | None = None
    qat: QatRecord | None = None

    @property
    def graph_precision(self) -> str:
        """What a builder sees: "fp32", "fp16", "int8", or "int8-cpu" (ONNX Runtime's form, which TensorRT rejects)."""
        return "int8-cpu" if self.quantization == "qdq-onnxruntime-cpu" else self.precision

    @property
    def derived(self) -> bool:
        return self != GraphLineage()

    def to_props(self) -> dict[str, str]:
        """The props of this lineage (none for an FP32 export)."""
        if not self.derived:
            return {}
        props = {"lineage": FORMAT, "precision": self.precision}
        if self.quantization:
            props["quantization"] = self.quantization
        if self.calibration:
            c = self.calibration
            props |= {
                "calibration_id": c.id,
                "calibration_method": c.method,
                "calibration_images": str(c.images),
                "calibration_dataset": c.dataset,
            }
        if self.source_onnx_sha256:
            props["source_onnx_sha256"] = self.source_onnx_sha256
        if self.budget:
            b = self.budget
            props |= {
                "int8_kept_out": json.dumps([k.to_dict() for k in b.kept_out]),
                "int8_kept_out_precision": b.kept_out_precision,
                "int8_mac_share": f"{b.int8_mac_share:.6f}",
                "accuracy_budget": json.dumps(dict(b.summary)),
            }
        if self.qat:
            props["int8_qat"] = json.dumps(self.qat.to_dict())
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "the model") -> GraphLineage:
        """The lineage an ONNX file's props record, checked (files written before the tag read as version 1)."""
        if "lineage" in props:
            read_version(props["lineage"], KIND, VERSION, source, not_ours="convert or calibrate it again")
        precision = props.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise _damaged(source, "precision", precision, f"one of {', '.join(PRECISIONS)}")
        quantization = props.get("quantization")
        if quantization is not None and quantization not in QUANTIZATIONS:
            raise _damaged(source, "quantization", quantization, f"one of {', '.join(QUANTIZATIONS)}")
        return cls(
            precision=precision,
            quantization=quantization,
            source_onnx_sha256=props.get("source_onnx_sha256"),
            calibration=_calibration(props, source),
            budget=_budget(props, source),
            qat=_qat(props, source),
        )


def _damaged(source: str, key: str, value: object, want: str) -> ArtifactError:
    shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
    return ArtifactError(f"{source} metadata {key!r} is {shown}, not {want}; convert or calibrate it again")


def _calibration(props: Mapping[str, str], source: str) -> CalibrationRecord | None:
    if "calibration_id" not in props:
        return None
    images = props.get("calibration_images", "0")
    if not images.isdigit():
        raise _damaged(source, "calibration_images", images, "a whole number")
    return CalibrationRecord(
        id=props["calibration_id"],
        method=props.get("calibration_method", ""),
        images=int(images),
        dataset=props.get("calibration_dataset", ""),
    )


def _budget(props: Mapping[str, str], source: str) -> BudgetRecord | None:
    if "int8_kept_out" not in props:
        return None
    kept = _json(props, "int8_kept_out", source, list)
    if not all(isinstance(k, dict) and isinstance(k.get("node"), str) for k in kept):
        raise _damaged(source, "int8_kept_out", props["int8_kept_out"], "a JSON list of {node, module, why}")
    try:
        share = float(props.get("int8_mac_share", "nan"))
    except ValueError:
        share = math.nan
    if not 0 <= share <= 1:
        raise _damaged(source, "int8_mac_share", props.get("int8_mac_share"), "a share between 0 and 1")
    return BudgetRecord(
        kept_out=tuple(KeptOut(k["node"], str(k.get("module", "")), str(k.get("why", ""))) for k in kept),
        kept_out_precision=props.get("int8_kept_out_precision", ""),
        int8_mac_share=share,
        summary=_json(props, "accuracy_budget", source, dict) if "accuracy_budget" in props else {},
    )


def _qat(props: Mapping[str, str], source: str) -> QatRecord | None:
    if "int8_qat" not in props:
        return None
    record = _json(props, "int8_qat", source, dict)
    want = {"epochs": int, "images_per_epoch": int, "held_out_images": int, "dataset": str, "learned_scales": bool}
    numbers = ("lr", "top1_change_before_pp", "top1_change_after_pp")
    fits = all(type(record.get(key)) is kind for key, kind in want.items()) and all(
        isinstance(record.get(key), (int, float))
        and not isinstance(record.get(key), bool)
        and math.isfinite(record[key])
        for key in numbers
    )
    counts = ("epochs", "images_per_epoch", "held_out_images")
    if not fits or min(record[key] for key in counts) < 1 or record["lr"] <= 0 or not record["dataset"]:
        raise _damaged(
            source, "int8_qat", props["int8_qat"], "a JSON object of the fine-tuning's epochs, data and top-1 change"
        )
    return QatRecord(**{key: record[key] for key in (*want, *numbers)})


def _json(props: Mapping[str, str], key: str, source: str, kind: type) -> Any:
    try:
        value = json.loads(props[key])
    except ValueError:
        value = None
    if not isinstance(value, kind):
        raise _damaged(source, key, props[key], f"a JSON {'list' if kind is list else 'object'}")
    return value
