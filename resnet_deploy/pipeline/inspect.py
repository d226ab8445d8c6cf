"""``InspectJob``: what an artifact is, where it came from, and what it holds layer by layer.

    from resnet_deploy import InspectJob, plan, run
    report = run(plan(InspectJob("r50.int8.engine")))
    print(report.summary)      # "52 of 54 Conv/Gemm layers INT8, 98.4% of MACs; 2 in FP16: ..."

- an ONNX file: its model metadata and lineage, and each Conv/Gemm with its PyTorch module, MACs,
  precision (INT8 Q/DQ, FP16, FP32) and scales (:mod:`resnet_deploy.quantize.layer_report`);
- an engine: its sidecar (builder, options, targets, the graph it was built from and that graph's
  lineage) and the layers its builder reported, each with its precision, the ONNX nodes it fused and
  their PyTorch modules (:mod:`resnet_deploy.engine.layer_info`), read without a GPU;
- a checkpoint: its architecture, classes, training record and its layers' parameters and MACs.

Nothing is written; the report is what ``resnet-deploy inspect`` prints (or its ``--json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import sha256_file
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar
from resnet_deploy.artifacts.lineage import GraphLineage
from resnet_deploy.artifacts.model_spec import EXTERNAL
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import ArtifactError
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, existing_file
from resnet_deploy.pipeline.plan import Input, Plan, Step, checked, last
from resnet_deploy.runtime.load import ENGINE_SUFFIXES, ONNX_SUFFIXES, TORCH_SUFFIXES

if TYPE_CHECKING:  # onnx, and torch for checkpoints: loaded when an artifact of their kind is inspected
    from resnet_deploy.artifacts import onnx_io
    from resnet_deploy.engine import layer_info
    from resnet_deploy.models import source, stats
    from resnet_deploy.quantize import layer_report
else:
    onnx_io, layer_info, layer_report, source, stats = map(
        lazy_module,
        (
            "resnet_deploy.artifacts.onnx_io",
            "resnet_deploy.engine.layer_info",
            "resnet_deploy.quantize.layer_report",
            "resnet_deploy.models.source",
            "resnet_deploy.models.stats",
        ),
    )

LAYER_WORD = "Conv/Gemm layers"


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` found: ``kind`` (onnx, engine, checkpoint), the one-line ``summary``, the model,
    where the artifact came from (``lineage``), how it was built (engines) and its ``layers``."""

    path: Path
    kind: str
    summary: str
    model: dict[str, Any]
    lineage: dict[str, Any]
    build: dict[str, Any] | None
    layers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "summary": self.summary,
            "model": self.model,
            "lineage": self.lineage,
            "build": self.build,
            "layers": self.layers,
        }


@dataclass(frozen=True)
class InspectJob(Job[Inspection]):
    """Inspect ``artifact``: a checkpoint (.pt/.pth), an ONNX file or an engine built by build-engine."""

    command = "inspect"

    artifact: str | Path

    def plan(self) -> Plan[Inspection]:
        path = existing_file(self.artifact, "artifact", "artifact")
        assert path is not None
        suffix = path.suffix.lower()
        if suffix not in (*ONNX_SUFFIXES, *ENGINE_SUFFIXES, *TORCH_SUFFIXES):
            raise ArtifactError(
                f"{path} is not an artifact inspect reads: give a checkpoint (.pt/.pth), an .onnx or an engine "
                f"({'/'.join(ENGINE_SUFFIXES)})",
                field="artifact",
            )
        return checked(self.command, [Inspect(path)], last)


@dataclass(frozen=True)
class Inspect(Step):
    path: Path

    @property
    def title(self) -> str:
        return f"inspect {self.path}"

    def inputs(self) -> tuple[Input, ...]:
        return (Input(self.path, "artifact"),)

    def run(self, out: Messages, earlier: Sequence[Any]) -> Inspection:
        suffix = self.path.suffix.lower()
        if suffix in ONNX_SUFFIXES:
            return inspect_onnx(self.path)
        if suffix in ENGINE_SUFFIXES:
            return inspect_engine(self.path)
        return inspect_checkpoint(self.path)


def describe_model(metadata: ArtifactMetadata) -> dict[str, Any]:
    cfg = metadata.config
    names = metadata.class_names
    return {
        "architecture": cfg.name if cfg.family != EXTERNAL else "external (imported as it is, not a ResNet of the zoo)",
        "family": cfg.family,
        "block": cfg.block,
        "num_classes": cfg.num_classes,
        "class_names": list(names[:5]) + (["..."] if len(names) > 5 else []) if names else None,
        "input": f"N x {cfg.in_chans} x {cfg.input_size} x {cfg.input_size} float32 (NCHW, RGB)",
        "preprocessing": {
            **_preprocess_fields(metadata),
            "mean": list(metadata.mean),
            "std": list(metadata.std),
        },
        "weights": f"checkpoint sha256 {metadata.checkpoint_sha256}" if metadata.checkpoint_sha256 else "random-init",
        "dataset": metadata.dataset,
    }


def _preprocess_fields(metadata: ArtifactMetadata) -> dict[str, Any]:
    policy = metadata.eval_preprocess
    size = metadata.config.input_size
    if policy.resize == "stretch":
        how = f"resize to {size}x{size}"
    else:
        how = f"shorter side to {round(size / policy.crop_pct)}, centre crop {size}x{size}"
    return {"resize": how, "interpolation": policy.interpolation, "crop_pct": policy.crop_pct}


def describe_lineage(lineage: GraphLineage) -> dict[str, Any]:
    out: dict[str, Any] = {"precision": lineage.precision}
    if lineage.quantization:
        out["quantization"] = lineage.quantization
    if lineage.source_onnx_sha256:
        out["source_onnx_sha256"] = lineage.source_onnx_sha256
    if lineage.calibration:
        c = lineage.calibration
        out["calibration"] = {"method": c.method, "images": c.images, "dataset": c.dataset, "id": c.id}
    if lineage.budget:
        b = lineage.budget
        out["budget"] = {
            **dict(b.summary),
            "kept_out": [k.to_dict() for k in b.kept_out],
            "kept_out_precision": b.kept_out_precision,
            "int8_mac_share": b.int8_mac_share,
        }
    if lineage.qat:
        out["qat"] = lineage.qat.to_dict()
    return out


def _kept_out_reasons(lineage: GraphLineage) -> dict[str, str]:
    """module (or node) -> "budget": why a layer is not INT8, as the summary line says it."""
    if lineage.budget is None:
        return {}
    return {(k.module or k.node): "budget" for k in lineage.budget.kept_out}


def inspect_onnx(path: Path) -> Inspection:
    model = onnx_io.load_onnx(path, external_data=False)
    props = onnx_io.onnx_props(model)
    metadata = ArtifactMetadata.from_props(props, str(path))
    lineage = GraphLineage.from_props(props, str(path))
    layers = layer_report.onnx_layers(model)
    shares = layer_report.share([(layer.label(), layer.precision, layer.macs) for layer in layers])
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return Inspection(
        path=path,
        kind="onnx",
        summary=shares.describe(_kept_out_reasons(lineage), LAYER_WORD),
        model={**describe_model(metadata), "opset": opset, "sha256": sha256_file(path)},
        lineage=describe_lineage(lineage),
        build=None,
        layers=[layer.to_json() for layer in layers],
    )


def inspect_engine(path: Path) -> Inspection:
    record = EngineSidecar.read(path)
    lineage = record.graph_lineage
    build = {
        "backend": f"{record.backend} {record.backend_version}",
        "precision": record.precision,
        "strongly_typed": record.strongly_typed,
        "builder_flags": list(record.builder_flags),
        "targets": {k: v for k, v in vars(record.targets).items() if v is not None},
        "profile": record.profile,
        "source_onnx": record.source_onnx,
        "source_onnx_sha256": record.source_onnx_sha256,
        "engine_sha256": record.engine_sha256,
        "build_options": record.build_options,
        "built_at": record.built_at,
        "rebuild_command": record.rebuild_command,
    }
    if record.layers is None:
        summary = (
            f"{record.precision} engine; its builder ({record.backend} {record.backend_version}) reported no layers "
            "(TensorRT-RTX builds record them; full TensorRT's are read by its engine inspector on the GPU)"
        )
        layers: list[dict[str, Any]] = []
    else:
        parsed = [layer_info.EngineLayer.from_json(layer) for layer in record.layers]
        shares = layer_report.share(layer_info.compute_shares(parsed))
        summary = shares.describe(_kept_out_reasons(lineage), LAYER_WORD)
        layers = [{**layer.to_json(), "precision": layer.precision} for layer in parsed]
    return Inspection(
        path=path,
        kind="engine",
        summary=summary,
        model=describe_model(record.metadata),
        lineage=describe_lineage(lineage),
        build=build,
        layers=layers,
    )


def inspect_checkpoint(path: Path) -> Inspection:
    opened = source.open_model(path)
    summary_stats = stats.summarize(opened.metadata.config)
    recorded = opened.checkpoint.meta if opened.checkpoint else None
    training = (
        {
            k: v
            for k, v in {
                "recipe": recorded.recipe,
                "epochs": recorded.epochs,
                "test_top1_error": recorded.test_top1_error,
                "test_top5_error": recorded.test_top5_error,
                "seed": recorded.seed,
                "fine_tuned_from": recorded.init_checkpoint,
            }.items()
            if v is not None
        }
        if recorded
        else {"record": "none (a foreign state dict: architecture read from its keys)"}
    )
    layers = [
        {"module": name, "output": list(shape)}
        for stage in summary_stats.stages
        for name, shape in [(stage["name"], stage["output"])]
    ]
    return Inspection(
        path=path,
        kind="checkpoint",
        summary=(
            f"{summary_stats.name}: {summary_stats.weighted_layers} weighted layers, "
            f"{summary_stats.parameters:,} parameters, {summary_stats.multiply_adds:,} multiply-adds, FP32"
        ),
        model={**describe_model(opened.metadata), "sha256": opened.checkpoint.sha256 if opened.checkpoint else None},
        lineage={"precision": "fp32", "training": training},
        build=None,
        layers=layers,
    )
