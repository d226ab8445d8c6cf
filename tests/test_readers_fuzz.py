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
from resnet_deploy.artifacts.lineage import (  # noqa: E402
    BudgetRecord,
    CalibrationRecord,
    GraphLineage,
    KeptOut,
    QatRecord,
)
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


def corrupt(path: Path, data: Any, *, entries: bool = False, near_ends: int = 0) -> None:
    """``path`` cut anywhere, one bit flipped, replaced by any JSON, or (``entries``) its JSON record mutated.
    ``near_ends``: cuts and flips fall as often within that many bytes of either end as anywhere (where a
    binary file keeps its structure: an ONNX's graph and metadata, a pickle's opcodes, not its weights)."""
    original = path.read_bytes()
    how = data.draw(st.sampled_from(["cut", "flip", "json", *(["entries"] if entries else [])]))
    if how == "cut":
        path.write_bytes(original[: _offset(data, len(original), near_ends)])
    elif how == "flip":
        body = bytearray(original)
        body[_offset(data, len(body), near_ends)] ^= 1 << data.draw(st.integers(0, 7))
        path.write_bytes(bytes(body))
    elif how == "json":
        path.write_text(json.dumps(data.draw(JSON_VALUES)))
    else:
        record = json.loads(original)
        path.write_text(json.dumps(data.draw(mutated(record)) if isinstance(record, dict) else record))


def _offset(data: Any, size: int, near_ends: int) -> int:
    anywhere = st.integers(0, size - 1)
    if 0 < near_ends < size // 2:
        return data.draw(anywhere | st.integers(0, near_ends - 1) | st.integers(size - near_ends, size - 1))
    return data.draw(anywhere)


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
    qat=QatRecord(2, "digits", 1437, 0.001, True, 27.78, -7.5, 360),
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


# ---- binary files: ONNX models, CIFAR batches --------------------------------------------------------------


def _onnx_copy(tiny_onnx: Path, tmp_path_factory: Any, data: Any) -> Path:
    """A resnet-deploy ONNX (a ResNet-20 at 8x8 with our metadata: 1.1 MB), cut or flipped (one path, rewritten)."""
    import shutil

    path = tmp_path_factory.getbasetemp() / "onnx-fuzz" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    shutil.copy(tiny_onnx, path)
    corrupt(path, data, near_ends=8192)  # the graph's nodes lead the file, its inputs, outputs and props end it
    return path


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_onnx_files_cut_or_flipped_load_or_are_refused_in_one_line(tiny_onnx, tmp_path_factory, data) -> None:
    from resnet_deploy.artifacts.onnx_io import (
        check_graph_matches_metadata,
        load_onnx,
        read_lineage,
        read_onnx_metadata,
    )

    path = _onnx_copy(tiny_onnx, tmp_path_factory, data)
    for read in (load_onnx, read_onnx_metadata, read_lineage):
        try:
            read(path)
        except ResnetDeployError as exc:
            one_line(exc)
    try:
        metadata = check_graph_matches_metadata(path)
    except ResnetDeployError as exc:
        one_line(exc)
        return
    assert metadata.config.num_classes >= 1 and metadata.config.input_size >= 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_onnx_files_cut_or_flipped_open_in_a_runner_or_are_refused_in_one_line(
    tiny_onnx, tmp_path_factory, data
) -> None:
    pytest.importorskip("onnxruntime")
    from resnet_deploy.runtime.runner import Runner

    path = _onnx_copy(tiny_onnx, tmp_path_factory, data)
    try:
        runner = Runner.load(path, backend="onnxruntime", threads=1)
    except ResnetDeployError as exc:
        one_line(exc)
        return
    assert len(runner.class_names) == runner.metadata.config.num_classes


class _Planted:
    """A pickled call that, were it ever made, would create ``path``: what a tampered dataset file runs."""

    def __init__(self, function: Any, path: Path) -> None:
        self.function, self.path = function, path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.function, (str(self.path), "w"))


@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory) -> Path:
    """A tiny CIFAR-10 release (``cifar-10-batches-py``: five train batches, the test batch, the meta file)."""
    from tests.factories import write_tiny_cifar

    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"), train=10, test=5)


@st.composite
def hostile_pickle(draw: Any, planted: Path) -> bytes:
    """A pickle that runs code when loaded unsafely (open, exec, os.system), alone or inside a real-looking batch."""
    import builtins
    import pickle

    function = draw(st.sampled_from([builtins.open, builtins.exec, builtins.eval, os.system, Path.touch]))
    payload = _Planted(function, planted)
    where = draw(st.sampled_from(["alone", "data", "labels", "names"]))
    record: Any = payload if where == "alone" else {b"batch_label": b"x", where.encode(): payload}
    return pickle.dumps(record, protocol=draw(st.integers(2, pickle.HIGHEST_PROTOCOL)))


def _cifar_outcome(root: Path) -> Any:
    """The dataset at ``root``, or the refusal (checked to be one line)."""
    from resnet_deploy.data.cifar import load_cifar

    try:
        return load_cifar("cifar10", root)
    except ResnetDeployError as exc:
        one_line(exc)
        return exc


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_cifar_files_cut_flipped_or_hostile_load_or_are_refused_in_one_line(cifar_files, tmp_path, data) -> None:
    """One file of the release cut, flipped, replaced by JSON or by a pickle that runs code: loaded (then
    usable), or refused in one line; the code never runs."""
    import shutil
    import tempfile

    from resnet_deploy.data.base import Dataset

    example = Path(tempfile.mkdtemp(dir=tmp_path))
    root = Path(shutil.copytree(cifar_files, example / cifar_files.name))
    planted = example / "planted"
    path = root / data.draw(st.sampled_from(sorted(p.name for p in root.iterdir())))
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(hostile_pickle(planted)))
    else:
        corrupt(path, data, near_ends=256)  # a pickle's opcodes and keys lead it and end it, around the pixels
    dataset = _cifar_outcome(root)
    assert not planted.exists()
    if isinstance(dataset, Dataset):
        assert len(dataset.class_names) == 10 and len(dataset.train) + len(dataset.test) == 15
        labels = [*dataset.train.labels.tolist(), *dataset.test.labels.tolist()]
        assert all(0 <= label < 10 for label in labels) and dataset.train.images.shape[1:] == (3, 32, 32)


class _Encoded:
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        import _codecs

        return (_codecs.encode, ("x", "no-such-codec"))  # what a flipped bit in 'latin1' makes of numpy's pickle


@pytest.mark.parametrize(
    "blob",
    [
        b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"x.",  # BINBYTES8 claiming 4 EiB: MemoryError
        b"\x80\x02P0\n.",  # a persistent id: the unpickler's message is two lines
        "encoding",
    ],
    ids=["huge-length", "persistent-id", "unknown-encoding"],
)
def test_cifar_files_the_unpickler_chokes_on_are_refused_in_one_line(cifar_files, tmp_path, blob) -> None:
    import pickle
    import shutil

    from resnet_deploy.data.cifar import load_cifar

    root = Path(shutil.copytree(cifar_files, tmp_path / cifar_files.name))
    meta = {b"label_names": _Encoded()} if blob == "encoding" else None
    (root / "batches.meta").write_bytes(pickle.dumps(meta, 2) if meta else blob)
    with pytest.raises(ResnetDeployError) as refused:
        load_cifar("cifar10", root)
    one_line(refused.value)


# ---- what serving reads: bench results given to `triton`, the images clients send -------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_bench_results_for_triton_damaged_any_way_give_sizes_in_range_or_are_refused(
    tiny_onnx, tmp_path_factory, data
) -> None:
    """`triton --bench`: a bench JSON cut, flipped, replaced or with its rows mutated is used (the preferred batch
    sizes then lie within the model's max batch) or refused in one line, before anything is written."""
    from resnet_deploy.pipeline import TritonJob, plan

    folder = tmp_path_factory.mktemp("bench")
    rows = [
        {"artifact": str(tiny_onnx), "backend": "onnxruntime", "batch": batch, "images_per_second": rate}
        for batch, rate in ((1, 100.0), (8, 700.0), (32, 760.0))
    ]
    path = folder / "bench.json"
    path.write_text(json.dumps({"ok": True, "machine": {"cpu": "x"}, "rows": rows}))
    corrupt(path, data, entries=True)
    try:
        planned = plan(TritonJob((tiny_onnx,), output=folder / "repo", bench=path, ensemble=False))
    except ResnetDeployError as exc:
        one_line(exc)
        return
    assert not (folder / "repo").exists()
    (write,) = [step for step in planned.steps if hasattr(step, "models")]
    for model in write.models:
        sizes, largest = model.config.preferred_batch_sizes or (), model.config.max_batch_size
        assert all(isinstance(s, int) and 1 <= s <= largest for s in sizes), (sizes, largest)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_request_images_damaged_any_way_decode_to_rgb_or_are_refused_in_one_line(data) -> None:
    """The bytes a client sends to `serve`'s images model (or a `triton` repository's preprocessing): PNG, JPEG or
    GIF cut, flipped, or any bytes at all give an RGB image or one line naming the image, never another error."""
    import io

    from PIL import Image

    from resnet_deploy.serve.encoded_image import decode_image

    kind = data.draw(st.sampled_from(["PNG", "JPEG", "GIF", "raw"]))
    if kind == "raw":
        blob = data.draw(st.binary(max_size=256))
    else:
        buffer = io.BytesIO()
        Image.new("RGB", (17, 9), (10, 200, 30)).save(buffer, kind)
        body = bytearray(buffer.getvalue())
        if data.draw(st.booleans()):
            body[data.draw(st.integers(0, len(body) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        blob = bytes(body[: data.draw(st.integers(0, len(body)))])
    try:
        image = decode_image(blob, 3)
    except ResnetDeployError as exc:
        one_line(exc)
        assert str(exc).startswith("image 3 of the request")
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


@pytest.fixture(scope="module")
def saved_qat_state(tiny_onnx: Path, tmp_path_factory: Any) -> tuple[Path, Any]:
    """A QAT state saved after epoch 1 of 2 for the tiny model, and a maker of the fresh network and
    optimizers a resumed run loads it into."""
    import onnx
    import torch

    from resnet_deploy.quantize import qat_state
    from resnet_deploy.quantize.onnx_torch import build_network
    from resnet_deploy.quantize.qat_options import QatOptions
    from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors

    model = onnx.load(str(tiny_onnx))
    amax = dict.fromkeys(qdq_tensors(model), 4.0)
    options = QatOptions(epochs=2, device="cpu")

    def fresh() -> tuple[Any, Any, Any]:
        network = build_network(model, amax, learn_scales=True)
        weights = [p for name, p in network.named_parameters() if name.startswith("params.")]
        scales = [p for name, p in network.named_parameters() if name.startswith("quantizers.")]
        return network, torch.optim.SGD(weights, lr=0.1, momentum=0.9), torch.optim.Adam(scales, lr=0.05)

    network, sgd, adam = fresh()
    loss = network(torch.zeros(2, 3, 8, 8)).sum()  # a step, so the optimizers hold state to save
    loss.backward()
    sgd.step()
    adam.step()
    path = tmp_path_factory.mktemp("qat-state") / "m.qat.int8.onnx.qat-state.pt"
    qat_state.save(path, network, sgd, adam, options, "source", (), 1)
    return path, (fresh, options)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_a_qat_state_cut_flipped_mutated_or_hostile_resumes_or_is_refused_in_one_line(saved_qat_state, tmp_path, data):
    """The state a QAT run resumes from, cut, flipped, replaced by JSON or a pickle that runs code, or its
    record's keys dropped or replaced: resumed (epochs done within those asked for), or refused in one line;
    the code never runs."""
    import shutil
    import tempfile

    import torch

    from resnet_deploy.quantize import qat_state

    saved, (fresh, options) = saved_qat_state
    example = Path(tempfile.mkdtemp(dir=tmp_path))
    path, planted = example / saved.name, example / "planted"
    shutil.copy(saved, path)
    how = data.draw(st.sampled_from(["bytes", "pickle", "record"]))
    if how == "bytes":
        corrupt(path, data, near_ends=512)
    elif how == "pickle":
        path.write_bytes(data.draw(hostile_pickle(planted)))
    else:
        record = torch.load(path, weights_only=True)
        torch.save(
            data.draw(mutated({key: record[key] for key in ("format", "fingerprint", "epoch")}))
            | {key: record[key] for key in ("network", "sgd", "adam") if data.draw(st.booleans())},
            path,
        )
    network, sgd, adam = fresh()
    try:
        done = qat_state.resume(path, network, sgd, adam, options, "source", ())
    except ResnetDeployError as exc:
        one_line(exc)
    else:
        assert 0 <= done <= options.epochs
    assert not planted.exists()
