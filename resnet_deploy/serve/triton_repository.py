"""A Triton model repository from artifacts: one model per engine or ONNX, its ``config.pbtxt`` filled from
what the artifact records, and, for models that take normalised tensors, an ensemble that takes encoded
images through resnet-deploy's own preprocessing.

    REPO/
      r20/                     the classifier: config.pbtxt, labels.txt, 1/model.onnx (or model.plan)
      r20_preprocess/          Python backend: encoded images -> the normalised tensor (1/model.py)
      r20_ensemble/            IMAGE (TYPE_STRING) -> r20_preprocess -> r20 -> logits

Nothing is read but the artifacts' metadata (the ONNX graph's inputs and outputs, an engine's sidecar),
so no runtime is needed. The repository is written whole or not at all: every model is written into a
temporary directory beside ``REPO``, then renamed into place; other models already in ``REPO`` are not
touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy._io import sha256_file, sync_directory, temporary_prefix
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, load_onnx, onnx_props
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import ArtifactError, OutputPathError
from resnet_deploy.runtime.load import ENGINE_SUFFIXES, ONNX_SUFFIXES
from resnet_deploy.serve import triton_releases
from resnet_deploy.serve.triton_config import ModelConfig, Step, Tensor, data_type
from resnet_deploy.serve.triton_preprocess import IMAGE_INPUT, METADATA_FILE, model_py

ONNX_TRITON_BACKENDS = ("onnxruntime", "openvino")
INSTANCE_KINDS = ("auto", "gpu", "cpu")
DEFAULT_MAX_BATCH = 32  # an ONNX with a dynamic batch; an engine's is its profile's max
DEFAULT_QUEUE_DELAY_US = 100
BENCH_SHARE = 0.9  # a measured batch size is preferred when its images/s reach this share of the best
LABELS_FILE = "labels.txt"
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ServedArtifact:
    """What an artifact records, as Triton needs it."""

    path: Path
    kind: str  # "engine" or "onnx"
    metadata: ArtifactMetadata
    input: Tensor
    output: Tensor
    batch: int | None  # the largest batch it takes (an engine's profile); None: any (dynamic), 0: none (fixed)
    precision: str = "fp32"
    tensorrt: str | None = None  # engines: "tensorrt 10.3.0.26", "tensorrt-rtx 1.7.1.116"
    sidecar: EngineSidecar | None = field(default=None, repr=False)

    @property
    def frames(self) -> bool:
        """The preprocessing is inside the graph: it takes raw NHWC frames (uint8, or float32 pixel values)."""
        return self.metadata.frame_input is not None


def read_artifact(path: Path) -> ServedArtifact:
    """An engine (by its sidecar, its bytes checked against it) or an ONNX (its graph's inputs and outputs,
    checked against its metadata); other files are refused in one line."""
    name = path.name.lower()
    if name.endswith(ENGINE_SUFFIXES):
        return _read_engine(path)
    if name.endswith(ONNX_SUFFIXES):
        return _read_onnx(path)
    raise ArtifactError(
        f"{path} is not an artifact Triton serves here: give an engine ({', '.join(ENGINE_SUFFIXES)}, with its "
        "sidecar) or an ONNX (.onnx)",
        field="artifacts",
    )


def _read_engine(path: Path) -> ServedArtifact:
    sidecar = EngineSidecar.read(path)
    if sidecar.engine_bytes != path.stat().st_size or sha256_file(path) != sidecar.engine_sha256:
        raise ArtifactError(
            f"{path} does not match its sidecar (truncated, damaged or replaced); {sidecar.rebuild_hint()}",
            field="artifacts",
        )
    metadata = sidecar.metadata
    io = sidecar.io or {}
    inputs, outputs = io.get("inputs") or [], io.get("outputs") or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise ArtifactError(
            f"{path}'s sidecar records {len(inputs)} inputs and {len(outputs)} outputs; an image classifier has one "
            f"of each: {sidecar.rebuild_hint()}",
            field="artifacts",
        )
    shape_in, shape_out = list(inputs[0].get("shape") or []), list(outputs[0].get("shape") or [])
    profile = sidecar.profile or {}
    dynamic = bool(shape_in) and shape_in[0] == -1
    batch = int(profile["max"][0]) if dynamic and profile.get("max") else (None if dynamic else 0)
    return ServedArtifact(
        path=path,
        kind="engine",
        metadata=metadata,
        input=Tensor(str(inputs[0]["name"]), data_type(str(inputs[0].get("dtype", "float"))), _dims(shape_in, batch)),
        output=Tensor(
            str(outputs[0]["name"]), data_type(str(outputs[0].get("dtype", "float"))), _dims(shape_out, batch)
        ),
        batch=batch,
        precision=sidecar.precision,
        tensorrt=f"{sidecar.backend} {sidecar.backend_version}",
        sidecar=sidecar,
    )


def _read_onnx(path: Path) -> ServedArtifact:
    model = load_onnx(path, external_data=False)
    metadata = check_graph_matches_metadata(model, source=str(path))
    initializers = {i.name for i in model.graph.initializer}
    external = [i.name for i in model.graph.initializer if i.data_location == 1]  # TensorProto.EXTERNAL
    if external:
        raise ArtifactError(
            f"{path} keeps its weights in separate files ({external[0]}...); Triton's repository takes one "
            "self-contained model.onnx: export it again without external data",
            field="artifacts",
        )
    graph_in = next(v for v in model.graph.input if v.name not in initializers)
    graph_out = model.graph.output[0]
    shape_in, type_in = _onnx_tensor(graph_in)
    shape_out, type_out = _onnx_tensor(graph_out)
    batch = None if not isinstance(shape_in[0], int) or shape_in[0] <= 0 else 0
    precision = onnx_props(model).get("precision", "fp32")
    return ServedArtifact(
        path=path,
        kind="onnx",
        metadata=metadata,
        input=Tensor(graph_in.name, type_in, _dims(shape_in, batch)),
        output=Tensor(graph_out.name, type_out, _dims(shape_out, batch)),
        batch=batch,
        precision=precision,
    )


_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 10: "float16", 11: "float64", 16: "bfloat16"}


def _onnx_tensor(value: Any) -> tuple[list[int | str], str]:
    tensor = value.type.tensor_type
    shape: list[int | str] = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim
    ]
    return shape, data_type(_ONNX_TYPES.get(tensor.elem_type, f"element type {tensor.elem_type}"))


def _dims(shape: Sequence[Any], batch: int | None) -> tuple[int, ...]:
    """Triton's dims: without the batch dimension when the model batches (``batch`` not 0), -1 where unknown."""
    dims = shape[1:] if batch != 0 else shape
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in dims)


def check_servable(artifact: ServedArtifact, triton_release: str | None) -> tuple[str, ...]:
    """The Triton releases that load ``artifact`` (engines; () for ONNX files), or a one-line refusal: a
    TensorRT-RTX engine (Triton has no TensorRT-RTX backend), or an engine ``triton_release`` cannot load."""
    sidecar = artifact.sidecar
    if sidecar is None:
        return ()
    if sidecar.backend != "tensorrt":
        source = sidecar.source_onnx or "its ONNX"
        raise ArtifactError(
            f"{artifact.path} is a {sidecar.backend} engine and Triton has no TensorRT-RTX backend: serve "
            f"{source} instead (Triton runs it on ONNX Runtime or OpenVINO), or build the engine with full TensorRT "
            "(`resnet-deploy build-engine` with TensorRT installed) on the GPU that serves it",
            field="artifacts",
        )
    loads = triton_releases.releases_with(sidecar.backend_version)
    if triton_release is not None:
        theirs = triton_releases.tensorrt_of(triton_release)
        if not triton_releases.same_tensorrt(theirs, sidecar.backend_version):
            fits = f"Triton {', '.join(loads)} ships it" if loads else "no Triton release in the table ships it"
            raise ArtifactError(
                f"{artifact.path} was built with TensorRT {sidecar.backend_version} but Triton {triton_release} "
                f"ships TensorRT {theirs}, which cannot load it ({fits}); rebuild the engine inside "
                f"{triton_releases.image(triton_release)}, or give the matching `triton_release`",
                field="triton_release",
            )
    return loads


@dataclass(frozen=True)
class RepositoryOptions:
    """How each model is served (see ``TritonJob``, whose fields these are)."""

    version: int = 1
    backend: str = "onnxruntime"  # ONNX files: onnxruntime or openvino
    max_batch_size: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1
    instance_kind: str = "auto"
    warmup: bool = True
    ensemble: bool = True
    triton_release: str | None = None


@dataclass(frozen=True)
class PlannedModel:
    """One model directory to write: ``files`` maps a path inside it to bytes, or to a file copied there."""

    name: str
    role: str  # "classifier", "preprocess", "ensemble"
    config: ModelConfig
    files: dict[str, bytes | Path]
    source: Path | None = None
    notes: tuple[str, ...] = ()

    @property
    def config_text(self) -> str:
        return self.config.text()


def model_name(path: Path) -> str:
    """A model name from a file name: ``r20.int8.engine`` -> ``r20_int8`` (letters, digits, ``_`` and ``-``)."""
    stem = path.name
    for suffix in (*ENGINE_SUFFIXES, *ONNX_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    name = _NAME.sub("_", stem).strip("_-")
    return name or "model"


def unique_names(paths: Sequence[Path], name: str | None = None) -> list[str]:
    """One distinct model name per artifact (``name`` for a single one); clashes get the file type, then a number."""
    if name is not None:
        if len(paths) != 1:
            raise ArtifactError("`name` names the model of one artifact; leave it out for several", field="name")
        if _NAME.search(name) or not name.strip("_-"):
            raise ArtifactError(
                f"`name` {name!r} is not a Triton model name: use letters, digits, _ and - only", field="name"
            )
        return [name]
    taken: set[str] = set()
    names = []
    for path in paths:
        base = model_name(path)
        candidate = base
        if candidate in taken:
            candidate = f"{base}_{path.suffix.lstrip('.').lower() or 'model'}"
        number = 2
        while candidate in taken:
            candidate, number = f"{base}_{number}", number + 1
        taken.add(candidate)
        names.append(candidate)
    return names


def plan_models(
    artifact: ServedArtifact,
    name: str,
    options: RepositoryOptions,
    bench_rows: Sequence[dict[str, Any]] | None = None,
) -> list[PlannedModel]:
    """The classifier's model, and (unless it takes raw frames or ``options.ensemble`` is off) its
    preprocessing model and the ensemble of both."""
    loads = check_servable(artifact, options.triton_release)
    max_batch = _max_batch(artifact, options)
    platform, backend, filename, kind = _how_served(artifact, options)
    notes: list[str] = []
    preferred = _preferred(artifact, options, max_batch, bench_rows, notes)
    names = artifact.metadata.class_names
    if names and any("\n" in n or "\r" in n for n in names):
        raise ArtifactError(f"{artifact.path} has a class name with a line break; labels.txt holds one per line")
    labels = LABELS_FILE if names else None
    if not names:
        notes.append(f"{name}: the model records no class names; Triton's classification returns indices only")
    output = Tensor(artifact.output.name, artifact.output.data_type, artifact.output.dims, labels)
    comments = [
        f"written by resnet-deploy from {artifact.path.name} ({artifact.metadata.config.name}, {artifact.precision})",
    ]
    if artifact.tensorrt:
        comments += _engine_comments(artifact, loads)
    if artifact.frames:
        frame = artifact.metadata.frame_input
        assert frame is not None
        comments.append(f"input: raw {frame.describe()} frames (NHWC); the graph resizes and normalises them")
    config = ModelConfig(
        name=name,
        platform=platform,
        backend=backend,
        default_model_filename=filename if backend else None,
        max_batch_size=max_batch,
        inputs=(artifact.input,),
        outputs=(output,),
        preferred_batch_sizes=preferred,
        max_queue_delay_us=options.max_queue_delay_us if max_batch > 0 else None,
        instances=options.instances,
        instance_kind=kind,
        warmup=options.warmup,
        comments=tuple(comments),
    )
    files: dict[str, bytes | Path] = {f"{options.version}/{filename}": artifact.path}
    if labels and names:
        files[labels] = ("\n".join(names) + "\n").encode()
    models = [PlannedModel(name, "classifier", config, files, artifact.path, tuple(notes))]
    if options.ensemble and not artifact.frames:
        models += _ensemble(artifact, name, config, options)
    return models


def _max_batch(artifact: ServedArtifact, options: RepositoryOptions) -> int:
    asked = options.max_batch_size
    if artifact.batch == 0:
        if asked:
            raise ArtifactError(
                f"{artifact.path} takes one fixed batch (its input is {artifact.input.dims}); leave out "
                "`max_batch_size`, or export it with a dynamic batch",
                field="max_batch_size",
            )
        return 0
    if asked is not None and artifact.batch is not None and asked > artifact.batch:
        raise ArtifactError(
            f"`max_batch_size` {asked} is above the {artifact.batch} {artifact.path.name} was built for (its "
            f"optimisation profile's max); give at most {artifact.batch}, or rebuild it with `batch`",
            field="max_batch_size",
        )
    return asked if asked is not None else (artifact.batch or DEFAULT_MAX_BATCH)


def _how_served(artifact: ServedArtifact, options: RepositoryOptions) -> tuple[str | None, str | None, str, str]:
    """(platform, backend, model file name, instance kind)."""
    want = options.instance_kind
    if artifact.kind == "engine":
        if want == "cpu":
            raise ArtifactError(
                f"{artifact.path.name} is a TensorRT engine: it runs on a GPU only; leave out `instance_kind`, "
                "or serve the ONNX on the CPU",
                field="instance_kind",
            )
        return "tensorrt_plan", None, "model.plan", "KIND_GPU"
    if options.backend == "openvino":
        if want == "gpu":
            raise ArtifactError(
                "Triton's OpenVINO backend runs on the CPU only: choose `backend=onnxruntime` for a GPU",
                field="instance_kind",
            )
        return None, "openvino", "model.onnx", "KIND_CPU"
    return "onnxruntime_onnx", None, "model.onnx", "KIND_GPU" if want == "gpu" else "KIND_CPU"


def _preferred(
    artifact: ServedArtifact,
    options: RepositoryOptions,
    max_batch: int,
    bench_rows: Sequence[dict[str, Any]] | None,
    notes: list[str],
) -> tuple[int, ...]:
    """The dynamic batcher's preferred sizes: given, or from the bench rows of this artifact (each measured
    batch whose images/s reach ``BENCH_SHARE`` of the best), else the powers of two from 4 to the max."""
    if max_batch <= 0:
        return ()
    if options.preferred_batch_sizes is not None:
        over = [b for b in options.preferred_batch_sizes if b > max_batch]
        if over:
            raise ArtifactError(
                f"`preferred_batch_sizes` {over[0]} is above the model's max batch {max_batch}",
                field="preferred_batch_sizes",
            )
        return tuple(sorted(set(options.preferred_batch_sizes)))
    if bench_rows is not None:
        rows = _rows_of(artifact, options, bench_rows)
        rows = [r for r in rows if 0 < int(r["batch"]) <= max_batch]
        if rows:
            best = max(float(r["images_per_second"]) for r in rows)
            chosen = sorted({int(r["batch"]) for r in rows if float(r["images_per_second"]) >= BENCH_SHARE * best})
            if any(r.get("unstable") for r in rows):
                notes.append(f"{artifact.path.name}: some bench rows were unstable; the preferred batch sizes may be")
            return tuple(chosen)
        notes.append(f"{artifact.path.name}: the bench results hold no row for it; default preferred batch sizes")
    sizes = []
    size = 4
    while size <= max_batch:
        sizes.append(size)
        size *= 2
    return tuple(sizes) or (max_batch,)


def _rows_of(
    artifact: ServedArtifact, options: RepositoryOptions, bench_rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    mine = [r for r in bench_rows if _same_artifact(str(r.get("artifact", "")), artifact.path)]
    runtime = "tensorrt" if artifact.kind == "engine" else options.backend
    matching = [r for r in mine if r.get("backend") == runtime]
    return matching or mine


def _same_artifact(recorded: str, path: Path) -> bool:
    if not recorded:
        return False
    other = Path(recorded)
    try:
        if other.exists() and os.path.samefile(other, path):
            return True
    except OSError:
        pass
    return other.name == path.name


def _engine_comments(artifact: ServedArtifact, loads: tuple[str, ...]) -> list[str]:
    sidecar = artifact.sidecar
    assert sidecar is not None
    gpu = sidecar.targets.gpu or "its build GPU"
    lines = [f"TensorRT {sidecar.backend_version} engine, built on {gpu}: it loads only where both are the same"]
    if loads:
        lines.append(f"Triton containers with TensorRT {sidecar.backend_version}: " + ", ".join(loads))
        lines.append(f"e.g. {triton_releases.image(loads[-1])}")
    else:
        lines.append(f"no Triton release in resnet-deploy's table ships TensorRT {sidecar.backend_version}")
    return lines


def _ensemble(
    artifact: ServedArtifact, name: str, classifier: ModelConfig, options: RepositoryOptions
) -> list[PlannedModel]:
    """``<name>_preprocess`` (Python backend) and ``<name>_ensemble``: encoded images in, logits out."""
    image = Tensor(IMAGE_INPUT, "TYPE_STRING", (1,))
    tensor = artifact.input
    preprocess_name, ensemble_name = f"{name}_preprocess", f"{name}_ensemble"
    fp32 = Tensor(tensor.name, tensor.data_type, tensor.dims)
    preprocess = ModelConfig(
        name=preprocess_name,
        backend="python",
        max_batch_size=classifier.max_batch_size,
        inputs=(image,),
        outputs=(fp32,),
        instances=options.instances,
        instance_kind="KIND_CPU",
        comments=(
            f"encoded images -> {name}'s {tensor.name} by resnet-deploy's preprocessing of {artifact.path.name}",
            "needs resnet-deploy in the Triton container: pip install resnet-deploy",
        ),
    )
    out = classifier.outputs[0]
    ensemble = ModelConfig(
        name=ensemble_name,
        platform="ensemble",
        max_batch_size=classifier.max_batch_size,
        inputs=(image,),
        outputs=(Tensor(out.name, out.data_type, out.dims),),
        instance_kind=None,
        steps=(
            Step(preprocess_name, {IMAGE_INPUT: IMAGE_INPUT}, {tensor.name: "preprocessed"}),
            Step(name, {tensor.name: "preprocessed"}, {out.name: out.name}),
        ),
        comments=(f"encoded images (TYPE_STRING, one per batch item) -> {preprocess_name} -> {name} -> {out.name}",),
    )
    props = json.dumps(artifact.metadata.to_props(), indent=1, sort_keys=True) + "\n"
    files: dict[str, bytes | Path] = {
        f"{options.version}/model.py": model_py(name, tensor.name).encode(),
        f"{options.version}/{METADATA_FILE}": props.encode(),
    }
    return [
        PlannedModel(preprocess_name, "preprocess", preprocess, files, artifact.path),
        PlannedModel(ensemble_name, "ensemble", ensemble, {f"{options.version}/.keep": b""}, artifact.path),
    ]


def check_destination(repository: Path, names: Sequence[str], overwrite: bool) -> list[str]:
    """Refuse, before any work, a ``repository`` that cannot hold the models; the existing models replaced."""
    if repository.exists() and not repository.is_dir():
        raise OutputPathError(f"{repository} is a file; give a directory for the repository (`output`)", field="output")
    ancestor = repository.parent if str(repository.parent) else Path(".")
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise OutputPathError(f"cannot create {repository}: {ancestor} is not writable (`output`)", field="output")
    duplicated = sorted({n for n in names if list(names).count(n) > 1})
    if duplicated:
        raise OutputPathError(f"two models would both be named {duplicated[0]}; give other `name`s", field="name")
    replaced = []
    for name in names:
        target = repository / name
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            if not overwrite:
                raise OutputPathError(
                    f"{target} exists and is not empty; pass `overwrite=True` to replace that model (other models "
                    "in the repository are kept), or choose another `name` or `output`",
                    field="output",
                )
            replaced.append(str(target))
    return replaced


def write_repository(repository: Path, models: Sequence[PlannedModel]) -> list[Path]:
    """Write every model into a temporary directory beside ``repository``, then rename each into place
    (an existing one of the same name is moved aside first and removed once all are in). On any failure
    the models renamed so far are taken back and the old ones restored: all are written, or none."""
    parent = repository.parent if str(repository.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(repository.name), suffix=".tmp", dir=parent))
    try:
        for model in models:
            _write_model(staging / model.name, model)
        if not repository.exists():  # a new repository: one rename puts it all in place
            staging.chmod(0o755)
            os.rename(staging, repository)
            sync_directory(parent)
            return [repository / m.name for m in models]
        return _swap_in(repository, staging, [m.name for m in models])
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _write_model(directory: Path, model: PlannedModel) -> None:
    directory.mkdir(parents=True)
    (directory / "config.pbtxt").write_text(model.config_text)
    for relative, content in model.files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())


def _swap_in(repository: Path, staging: Path, names: Sequence[str]) -> list[Path]:
    moved_aside: list[tuple[Path, Path]] = []
    landed: list[Path] = []
    try:
        for name in names:
            target = repository / name
            if target.exists():
                aside = staging / f".old-{name}"
                os.rename(target, aside)
                moved_aside.append((aside, target))
            os.rename(staging / name, target)
            landed.append(target)
    except BaseException:
        for target in landed:
            shutil.rmtree(target, ignore_errors=True)
        for aside, target in moved_aside:
            os.rename(aside, target)
        raise
    sync_directory(repository)
    return landed
