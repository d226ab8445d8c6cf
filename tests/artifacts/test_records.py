"""The typed, versioned records of every file format: round trips, newer versions refused, older read."""

from __future__ import annotations

import json
import re

import pytest

from resnet_deploy.artifacts import ArtifactMetadata, EngineSidecar, EngineTargets, ModelSpec, model_config
from resnet_deploy.artifacts.checkpoint_meta import CheckpointMeta
from resnet_deploy.artifacts.versions import read_version
from resnet_deploy.errors import ArtifactError, CheckpointError, UnknownModelError


def sidecar() -> EngineSidecar:
    meta = ArtifactMetadata(config=model_config(20), mean=(0.5,), std=(0.25,))
    return EngineSidecar(
        engine_bytes=64,
        engine_sha256="ab" * 32,
        backend="tensorrt-rtx",
        backend_version="1.2.0.54",
        model=meta.to_props(),
        precision="int8",
        builder_flags=("INT8",),
        targets=EngineTargets(compute_capabilities=("8.6", "8.9")),
        rebuild_command="resnet-deploy build-engine --onnx r20.int8.onnx --int8",
    )


def test_a_sidecar_round_trips_through_json_with_its_types() -> None:
    record = sidecar()
    text = record.to_text()
    data = json.loads(text)
    assert data["format"] == "resnet-deploy-engine/1"
    assert data["targets"] == {"compute_capabilities": ["8.6", "8.9"]}  # absent targets are not written as null
    assert data["builder_flags"] == ["INT8"]
    again = EngineSidecar.from_json(data, "r20.engine.json")
    assert again == record
    assert again.targets.compute_capabilities == ("8.6", "8.9") and again.targets.gpu is None
    assert ArtifactMetadata.from_props(again.model).config.name == "resnet20"


def test_a_sidecar_from_a_newer_release_is_refused_and_an_older_field_set_is_read() -> None:
    data = sidecar().to_json()
    with pytest.raises(ArtifactError, match=r"format resnet-deploy-engine/2, newer than .* reads .*upgrade"):
        EngineSidecar.from_json({**data, "format": "resnet-deploy-engine/2"}, "x.json")
    with pytest.raises(ArtifactError, match="not a resnet-deploy engine sidecar"):
        EngineSidecar.from_json({**data, "format": None}, "x.json")
    for optional in ("builder_flags", "strongly_typed", "targets", "built_at", "profile"):
        data.pop(optional)  # what the first sidecars lacked still reads, with defaults
    old = EngineSidecar.from_json(data, "x.json")
    assert old.builder_flags == () and old.targets == EngineTargets() and old.precision == "int8"


def test_the_rebuild_hint_prefers_the_recorded_command() -> None:
    assert sidecar().rebuild_hint() == "rebuild it here: resnet-deploy build-engine --onnx r20.int8.onnx --int8"
    bare = EngineSidecar(engine_bytes=1, engine_sha256="", backend="tensorrt", backend_version="10.3", model={})
    assert bare.rebuild_hint() == "rebuild it here: resnet-deploy build-engine --onnx MODEL.onnx"


def test_onnx_metadata_refuses_a_newer_schema_and_reads_its_own() -> None:
    props = ArtifactMetadata(config=model_config(56), mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0)).to_props()
    assert props["schema"] == "resnet-deploy/1"
    assert ArtifactMetadata.from_props(props).config.depth == 56
    with pytest.raises(ArtifactError, match="newer than this resnet-deploy"):
        ArtifactMetadata.from_props({**props, "schema": "resnet-deploy/9"}, "m.onnx")
    with pytest.raises(ArtifactError, match="carries no resnet-deploy metadata"):
        ArtifactMetadata.from_props({k: v for k, v in props.items() if k != "schema"}, "m.onnx")


def test_checkpoint_metadata_keeps_unknown_keys_and_refuses_newer_formats() -> None:
    meta = CheckpointMeta.of(model_config(20), "cd" * 32, dataset="digits", mean=[0.5], std=[0.2], team="vision")
    data = meta.to_json()
    assert data["format"] == "resnet-deploy-checkpoint/1" and data["team"] == "vision" and data["mean"] == [0.5]
    again = CheckpointMeta.from_json(json.loads(json.dumps(data)), "m.pt.json")
    assert again == meta and again.mean == (0.5,) and again.extra == {"team": "vision"}
    with pytest.raises(CheckpointError, match="newer than this resnet-deploy"):
        CheckpointMeta.from_json({**data, "format": "resnet-deploy-checkpoint/3"}, "m.pt.json")
    with pytest.raises(CheckpointError, match="is not resnet-deploy checkpoint metadata"):
        CheckpointMeta.from_json({"format": "something-else/1", "config": {}}, "m.pt.json")


def test_read_version_names_what_it_reads() -> None:
    assert read_version("kind/1", "kind", 2, "f", not_ours="x") == 1  # older: read
    with pytest.raises(ArtifactError, match=r"f is not a kind file \(format 'kind/v2'\); re-export"):
        read_version("kind/v2", "kind", 2, "f", not_ours="re-export")


def test_one_model_spec_reaches_every_builder() -> None:
    from resnet_deploy.models import build_model

    spec = ModelSpec(depth=50, variant="v1", num_classes=7, input_size=64)
    assert spec.given() == {"depth": 50, "variant": "v1", "num_classes": 7, "input_size": 64}
    config = model_config(spec)
    assert (config.name, config.num_classes, config.input_size) == ("resnet50-v1", 7, 64)
    assert build_model(spec).config == config == build_model(50, variant="v1", num_classes=7, input_size=64).config
    assert ModelSpec.of(20, plain=True) == ModelSpec(depth=20, plain=True)
    with pytest.raises(UnknownModelError, match="unknown model option colour"):
        ModelSpec.of(20, colour="red")
    with pytest.raises(UnknownModelError, match="number of classes must be at least 1"):
        model_config(ModelSpec(20, num_classes=0))


# --- a derived graph's lineage -------------------------------------------------------------------------


def test_lineage_round_trips_and_an_export_records_none() -> None:
    from resnet_deploy.artifacts.lineage import BudgetRecord, CalibrationRecord, GraphLineage, KeptOut, QatRecord

    assert GraphLineage().to_props() == {} and GraphLineage.from_props({}) == GraphLineage()
    lineage = GraphLineage(
        precision="int8",
        quantization="qdq-tensorrt",
        source_onnx_sha256="ab" * 32,
        calibration=CalibrationRecord("id1", "entropy", 512, "digits"),
        budget=BudgetRecord((KeptOut("node_Conv_3", "layer1.0.conv1", "why"),), "fp16", 0.941819, {"met": True}),
        qat=QatRecord(3, "digits", 1437, 0.001, True, 27.78, -0.25, 360),
    )
    props = lineage.to_props()
    assert props["lineage"] == "resnet-deploy-lineage/1" and props["calibration_images"] == "512"
    assert GraphLineage.from_props(props) == lineage and lineage.graph_precision == "int8"
    cpu = GraphLineage(precision="int8", quantization="qdq-onnxruntime-cpu")
    assert cpu.graph_precision == "int8-cpu"
    old = {k: v for k, v in props.items() if k != "lineage"}  # written before the tag: read as version 1
    assert GraphLineage.from_props(old) == lineage


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("precision", "int4", "'precision' is 'int4', not one of fp32, fp16, int8"),
        ("quantization", "qdq-x", "'quantization' is 'qdq-x'"),
        ("calibration_images", "many", "'calibration_images' is 'many', not a whole number"),
        ("int8_kept_out", "[1, 2]", "'int8_kept_out'"),
        ("int8_mac_share", "2.5", "'int8_mac_share' is '2.5', not a share between 0 and 1"),
        ("accuracy_budget", "[]", "'accuracy_budget' is '[]', not a JSON object"),
        ("int8_qat", '{"epochs": 0}', "'int8_qat'"),
        (
            "int8_qat",
            '{"epochs": 1, "images_per_epoch": 0, "held_out_images": 9, "dataset": "digits", "learned_scales": true, '
            '"lr": 0.001, "top1_change_before_pp": 1.0, "top1_change_after_pp": 0.0}',
            "'int8_qat'",
        ),
        ("int8_qat", "[]", "'int8_qat' is '[]', not a JSON object"),
        ("lineage", "resnet-deploy-lineage/9", "newer than this resnet-deploy"),
    ],
)
def test_a_damaged_lineage_is_refused_naming_its_key(key, value, needle) -> None:
    from resnet_deploy.artifacts.lineage import GraphLineage

    props = {
        "precision": "int8",
        "quantization": "qdq-tensorrt",
        "calibration_id": "id1",
        "calibration_images": "512",
        "int8_kept_out": '[{"node": "n", "module": "m", "why": "w"}]',
        "int8_mac_share": "0.9",
        "accuracy_budget": "{}",
        key: value,
    }
    with pytest.raises(ArtifactError, match=re.escape(needle)):
        GraphLineage.from_props(props, "m.int8.onnx")


@pytest.mark.parametrize(
    ("targets", "field"),
    [
        ({"compute_capability": "eight.nine", "gpu": "NVIDIA H100"}, "'targets.compute_capability'"),
        ({"compute_capability": "9", "gpu": "NVIDIA H100"}, "'targets.compute_capability'"),
        ({"compute_capabilities": ["8.9", "sm89"]}, "'targets.compute_capabilities'"),
        ({"compute_capabilities": [8.9]}, "'targets.compute_capabilities'"),
        ({"compute_capabilities": "8.9"}, "'targets.compute_capabilities'"),
        ({"dla_core": "0"}, "'targets.dla_core'"),
        ([], "'targets'"),
    ],
)
def test_an_engine_record_whose_targets_are_no_compute_capabilities_is_refused(targets, field) -> None:
    """The runner compares these with the GPU: garbage there would pass (ampere+) or mislead the refusal."""
    data = {**sidecar().to_json(), "targets": targets}
    with pytest.raises(ArtifactError, match=rf"x\.json: field {field}.*; the sidecar was edited or damaged") as refused:
        EngineSidecar.from_json(data, "x.json")
    assert "\n" not in str(refused.value)
    keeps = {**sidecar().to_json(), "targets": {"compute_capabilities": ["current GPU"]}}
    assert EngineSidecar.from_json(keeps, "x.json").targets.compute_capabilities == ("current GPU",)


def test_metadata_a_reader_would_refuse_is_never_written() -> None:
    """A writer runs the readers' checks: 3 class names for 10 classes, a std of 0, never reach a file."""
    import onnx

    from resnet_deploy.artifacts.onnx_io import write_onnx_metadata

    config = model_config(20)
    for bad, key in (
        (ArtifactMetadata(config=config, mean=(0.5,), std=(0.25,), class_names=("a", "b", "c")), "'class_names'"),
        (ArtifactMetadata(config=config, mean=(0.5,), std=(0.0,)), "'std'"),
    ):
        model = onnx.ModelProto()
        with pytest.raises(ArtifactError, match=f"the model's metadata to be written metadata {key}"):
            write_onnx_metadata(model, bad)
        assert list(model.metadata_props) == []
