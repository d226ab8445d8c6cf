"""Every reader of what the tool wrote earlier, fed corrupted copies of real records (Hypothesis).

A record the tool writes is taken, then corrupted the ways a careless user, a hostile file and a crashing
machine corrupt files: keys dropped or added, values of the wrong type or out of range, hostile strings,
huge numbers, truncated bytes, flipped bits. Each example either loads (and then is usable: its checked
properties read without error) or is refused with the project's one-line error: never another
exception, never a message of several lines. The number of examples per reader is each test's
``max_examples``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from resnet_deploy.artifacts.checkpoint_meta import CheckpointMeta  # noqa: E402
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar, EngineTargets  # noqa: E402
from resnet_deploy.artifacts.lineage import BudgetRecord, CalibrationRecord, GraphLineage, KeptOut  # noqa: E402
from resnet_deploy.artifacts.model_spec import model_config  # noqa: E402
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata  # noqa: E402
from resnet_deploy.artifacts.preprocess import Preprocess  # noqa: E402
from resnet_deploy.artifacts.train_state import RunSetup  # noqa: E402
from resnet_deploy.errors import ResnetDeployError  # noqa: E402

HOSTILE = ["", "..", "../../etc/passwd", "/abs", "a\x00b", "é" * 3, "x" * 5000, "NaN", "Infinity", "-1", "1e400"]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(HOSTILE),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: Any, record: dict[str, Any], string_values: bool = False) -> dict[str, Any]:
    """``record`` with a few keys dropped, replaced by any JSON value (or any string), or added."""
    out = dict(record)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(("drop", "replace", "add")))
        keys = sorted(out)
        if how == "drop" and keys:
            out.pop(draw(st.sampled_from(keys)))
        elif how == "replace" and keys:
            value = draw(st.text(max_size=20) | st.sampled_from(HOSTILE)) if string_values else draw(JSON_VALUES)
            out[draw(st.sampled_from(keys))] = value
        else:
            out[draw(st.text(min_size=1, max_size=8))] = (
                draw(st.text(max_size=8)) if string_values else draw(JSON_VALUES)
            )
    return out


def corrupt(path: Path, data: Any, *, entries: bool = False) -> None:
    """``path`` cut anywhere, one bit flipped, replaced by any JSON, or (``entries``) its JSON record mutated."""
    original = path.read_bytes()
    how = data.draw(st.sampled_from(["cut", "flip", "json", *(["entries"] if entries else [])]))
    if how == "cut":
        path.write_bytes(original[: data.draw(st.integers(0, len(original) - 1))])
    elif how == "flip":
        body = bytearray(original)
        body[data.draw(st.integers(0, len(body) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        path.write_bytes(bytes(body))
    elif how == "json":
        path.write_text(json.dumps(data.draw(JSON_VALUES)))
    else:
        record = json.loads(original)
        path.write_text(json.dumps(data.draw(mutated(record)) if isinstance(record, dict) else record))


def one_line(exc: ResnetDeployError) -> None:
    assert "\n" not in str(exc) and str(exc).strip(), repr(exc)


def _metadata() -> ArtifactMetadata:
    return ArtifactMetadata(
        config=model_config(20), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), class_names=tuple("abcdefghij")
    )


LINEAGE = GraphLineage(
    precision="int8",
    quantization="qdq-tensorrt",
    source_onnx_sha256="ab" * 32,
    calibration=CalibrationRecord("0123456789abcdef01234567", "entropy", 512, "digits"),
    budget=BudgetRecord((KeptOut("node_Conv_1", "layer2.1.conv2", "over budget"),), "fp16", 0.942, {"met": True}),
)


@FUZZ
@given(mutated(_metadata().to_props(), string_values=True))
def test_onnx_metadata_props_load_or_are_refused_in_one_line(props: dict[str, str]) -> None:
    try:
        metadata = ArtifactMetadata.from_props(props, "m.onnx")
    except ResnetDeployError as exc:
        one_line(exc)
        return
    assert metadata.config.num_classes >= 1 and all(s > 0 for s in metadata.std)
    metadata.eval_preprocess.to_json()
    assert metadata.class_names is None or len(metadata.class_names) == metadata.config.num_classes


@FUZZ
@given(mutated(LINEAGE.to_props(), string_values=True))
def test_graph_lineage_props_load_or_are_refused_in_one_line(props: dict[str, str]) -> None:
    try:
        lineage = GraphLineage.from_props(props, "m.int8.onnx")
    except ResnetDeployError as exc:
        one_line(exc)
        return
    lineage.to_props()
    assert lineage.graph_precision in ("fp32", "fp16", "int8", "int8-cpu")


def _sidecar() -> dict[str, Any]:
    record = EngineSidecar(
        engine_bytes=64,
        engine_sha256="ab" * 32,
        backend="tensorrt-rtx",
        backend_version="1.7.1.116",
        model=_metadata().to_props(),
        precision="int8",
        targets=EngineTargets(compute_capabilities=("8.9",)),
        lineage=LINEAGE.to_props(),
        layers=[
            {
                "name": "conv_a",
                "type": "correlation",
                "inputs": ["int8"],
                "outputs": ["fp32"],
                "weights": ["int8"],
                "onnx_nodes": ["conv_a"],
                "modules": ["conv1"],
                "macs": 1000,
            },
        ],
    )
    return record.to_json()


@FUZZ
@given(mutated(_sidecar()))
def test_engine_sidecars_load_or_are_refused_in_one_line(data: dict[str, Any]) -> None:
    try:
        record = EngineSidecar.from_json(data, "m.engine.json")
        record.metadata  # noqa: B018  (what the runner reads next)
        record.graph_lineage  # noqa: B018
        record.rebuild_hint()
        from resnet_deploy.engine.layer_info import EngineLayer

        [EngineLayer.from_json(layer).precision for layer in record.layers or []]
    except ResnetDeployError as exc:
        one_line(exc)


@FUZZ
@given(st.data())
def test_engine_sidecar_files_cut_or_flipped_load_or_are_refused(tmp_path_factory, data) -> None:
    """Bytes as a crash or a bad disk leaves them: truncated anywhere, or one bit flipped."""
    text = json.dumps(_sidecar()).encode()
    cut = data.draw(st.integers(0, len(text)))
    body = bytearray(text[:cut] if data.draw(st.booleans()) else text)
    if body and data.draw(st.booleans()):
        where = data.draw(st.integers(0, len(body) - 1))
        body[where] ^= 1 << data.draw(st.integers(0, 7))
    folder = tmp_path_factory.mktemp("sidecar")
    (folder / "m.engine.json").write_bytes(bytes(body))
    try:
        EngineSidecar.read(folder / "m.engine").metadata  # noqa: B018
    except ResnetDeployError as exc:
        one_line(exc)


def _checkpoint_meta() -> dict[str, Any]:
    return CheckpointMeta.of(
        model_config(20), "cd" * 32, dataset="digits", class_names=list("abcdefghij"), epochs=3, seed=0
    ).to_json()


@FUZZ
@given(mutated(_checkpoint_meta()))
def test_checkpoint_records_load_or_are_refused_in_one_line(data: dict[str, Any]) -> None:
    try:
        meta = CheckpointMeta.from_json(data, "model.pt.json")
    except ResnetDeployError as exc:
        one_line(exc)
        return
    meta.to_text()
    assert meta.config.num_classes >= 1


@FUZZ
@given(mutated(RunSetup("digits", 0, "channel", (0.5,) * 3, (0.25,) * 3, tuple("abcdefghij")).to_dict()))
def test_training_setups_load_or_are_refused_in_one_line(data: dict[str, Any]) -> None:
    try:
        RunSetup.from_dict(data).to_dict()
    except ResnetDeployError as exc:
        one_line(exc)


_ROW = {
    "epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_top1_error": 50.0, "test_loss": 1.1, "test_top1_error": 48.0,
    "test_top5_error": 10.0, "images_per_second": 900.0, "epoch_seconds": 2.0, "skipped_images": 0,
    "skipped_paths": [], "processes": 1,
}  # fmt: skip


@FUZZ
@given(mutated(_ROW))
def test_training_history_rows_load_or_are_refused_in_one_line(row: dict[str, Any]) -> None:
    from resnet_deploy.artifacts.train_state import history_records

    try:
        [record.to_dict() for record in history_records([row])]
    except ResnetDeployError as exc:
        one_line(exc)


@FUZZ
@given(st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=40)))
def test_preprocessing_records_load_or_are_refused_in_one_line(text: str) -> None:
    try:
        Preprocess.from_json(text).to_json()
    except ResnetDeployError as exc:
        one_line(exc)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_calibration_cache_entries_are_hits_only_whole(tmp_path: Path, data: Any) -> None:
    """A real entry, then one of its two files cut, flipped or replaced by any JSON: a hit only when whole."""
    import tempfile

    from resnet_deploy.quantize.cache import read_cached, write_cache

    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "cache"
    ranges = {"input": (-1.0, 1.0), "relu": (0.0, 6.0)}
    write_cache(folder, "0123456789abcdef01234567", ranges, {"method": "entropy"}, symmetric=True, method="entropy")
    assert read_cached(folder, "0123456789abcdef01234567") is not None
    name = data.draw(st.sampled_from(["0123456789abcdef01234567.json", "0123456789abcdef01234567.calib.cache"]))
    path = folder / name
    original = path.read_bytes()
    corrupt(path, data)
    try:
        found = read_cached(folder, "0123456789abcdef01234567")
    except ResnetDeployError as exc:
        one_line(exc)
        return
    if path.read_bytes() != original:
        assert found is None or found == ranges  # a damaged entry is a miss, never other ranges


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_a_folder_index_cut_flipped_or_rewritten_never_leads_outside_the_folder(tmp_path: Path, data: Any) -> None:
    """The cached index of an image folder, damaged any way: the scan equals a fresh one, inside the folder."""
    import tempfile

    from PIL import Image

    from resnet_deploy.data.file_index import cache_file, scan_folder

    example = Path(tempfile.mkdtemp(dir=tmp_path))  # a folder of its own for every example
    root = example / "data"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (4, 4)).save(root / label / f"{i}.png")
    (example / "outside.png").write_bytes((root / "cat" / "0.png").read_bytes())
    for path in [*root.rglob("*"), root]:  # settled: the index keeps only folders older than the scan
        os.utime(path, (1_600_000_000, 1_600_000_000))
    fresh = scan_folder(root, cache=False)
    scan_folder(root)  # writes the index
    index = cache_file(root)
    corrupt(index, data, entries=True)
    try:
        again = scan_folder(root)
    except ResnetDeployError as exc:
        one_line(exc)
        return
    assert again == fresh
    assert all(Path(path).resolve().is_relative_to(root.resolve()) for path, _ in again[1])
