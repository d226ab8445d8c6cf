"""``DeepStreamJob``: a DeepStream Gst-nvinfer config for one classifier (an engine or an ONNX), its label
file beside it, and what nvinfer's preprocessing costs the model in top-1, measured and written in the
config's comments.

    from resnet_deploy.pipeline.deepstream import DeepStreamJob
    from resnet_deploy import plan, run

    result = run(plan(DeepStreamJob("r20.int8.engine", output="ds/")))
    print(result.config, result.cost.change.describe())      # ds/config_infer_r20.int8.txt, +0.00 pp [...]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import atomic_outputs, sha256_file
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, load_onnx, read_lineage
from resnet_deploy.artifacts.onnx_metadata import OUTPUT_NAME, ArtifactMetadata
from resnet_deploy.errors import ArtifactError, OutputPathError, RunnerError, ValidationError
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, existing_file
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last
from resnet_deploy.runtime.load import ENGINE_SUFFIXES, ONNX_BACKENDS, ONNX_SUFFIXES
from resnet_deploy.serve.deepstream_config import (
    ConfigRequest,
    ModelFiles,
    config_name,
    header,
    labels_text,
    render,
)
from resnet_deploy.serve.nvinfer_preprocess import RAW_PIXELS, Normalisation, PreprocessCost, for_model

if TYPE_CHECKING:  # the runtimes, the dataset readers and the GPU probe load when a step runs
    from resnet_deploy import runtime
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.runtime import machine
    from resnet_deploy.serve import nvinfer_preprocess
else:
    runtime = lazy_module("resnet_deploy.runtime")
    data_spec = lazy_module("resnet_deploy.data.spec")
    machine = lazy_module("resnet_deploy.runtime.machine")
    nvinfer_preprocess = lazy_module("resnet_deploy.serve.nvinfer_preprocess")

LABELS = "labels.txt"


@dataclass(frozen=True)
class DeepStreamResult:
    """The files written, the normalisation nvinfer gets, and its measured cost (None: not measured)."""

    config: Path
    labels: Path
    artifact: Path
    precision: str
    normalisation: Normalisation
    exact: bool  # nvinfer's normalisation is the model's own (one std for every channel)
    cost: PreprocessCost | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": str(self.config),
            "labels": str(self.labels),
            "artifact": str(self.artifact),
            "precision": self.precision,
            "net_scale_factor": self.normalisation.scale,
            "offsets": list(self.normalisation.offsets),
            "normalisation_exact": self.exact,
            "measured": self.cost.to_dict() if self.cost else None,
        }


@dataclass(frozen=True)
class DeepStreamJob(Job[DeepStreamResult]):
    """Write ``config_infer_NAME.txt`` and ``labels.txt`` for ``artifact`` (an engine or an ONNX) into
    ``output`` (a directory; default the artifact's), never over a file of the user's unless ``overwrite``.

    ``secondary``: classify the objects another element detects (``operate_on_gie_id``, its classes
    ``operate_on_class_ids``) instead of whole frames; ``gie_unique_id`` defaults to 1 (primary) or 2.
    ``batch_size`` frames or objects per inference; ``threshold``: nvinfer's classifier-threshold;
    ``maintain_aspect_ratio``: pad rather than stretch. ``measure``: run the model on ``data`` (default:
    the dataset it records), at most ``limit`` images, exact and through nvinfer's preprocessing
    (ONNX files on ``backend``), and write what that costs in top-1 into the config."""

    command = "deepstream"

    artifact: str | Path | None = None
    output: str | Path | None = None
    secondary: bool = False
    gie_unique_id: int | None = None
    operate_on_gie_id: int = 1
    operate_on_class_ids: tuple[int, ...] = ()
    batch_size: int = 1
    threshold: float = 0.0
    maintain_aspect_ratio: bool = False
    measure: bool = True
    data: str | None = None
    limit: int | None = None
    backend: str = "auto"
    overwrite: bool = False

    def plan(self) -> Plan[DeepStreamResult]:
        if self.artifact is None:
            raise ArtifactError("no artifact to configure: a TensorRT engine or an ONNX file", field="artifact")
        artifact = existing_file(self.artifact, "artifact", "artifact")
        assert artifact is not None
        self._check_options()
        request, measured_with = _resolve(artifact, self)
        steps: list[Step] = []
        if self.measure and request.metadata.frame_input is None:  # a frames model's preprocessing is exact
            if measured_with is None:
                raise ValidationError(
                    f"cannot measure nvinfer's preprocessing here: no NVIDIA GPU runs {artifact.name}, and the ONNX "
                    f"it was built from is not found ({request.files.missing_onnx}); measure where it runs, or "
                    "pass `measure=False`",
                    field="measure",
                )
            spec = self.data or request.metadata.dataset
            if spec is None:
                raise ValidationError(
                    f"{artifact.name} records no dataset to measure nvinfer's preprocessing on (random or foreign "
                    "weights); pass `data=SPEC` with labelled images, or `measure=False`",
                    field="data",
                )
            steps.append(
                Measure(artifact, measured_with, spec, request.normalisation, self.threshold, self.limit, self.backend)
            )
        steps.append(Write(request))
        return checked(self.command, steps, last, overwrite=self.overwrite)

    def _check_options(self) -> None:
        for name in ("batch_size", "operate_on_gie_id"):
            _whole(name, getattr(self, name), 1)
        _whole("gie_unique_id", self.gie_unique_id, 1, optional=True)
        _whole("limit", self.limit, 1, optional=True)
        for class_id in self.operate_on_class_ids:
            _whole("operate_on_class_ids", class_id, 0)
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < math.inf:
            raise RunnerError(
                f"`threshold` is nvinfer's classifier-threshold, a number of at least 0, not {threshold!r}",
                field="threshold",
            )
        if self.backend not in ONNX_BACKENDS:
            raise RunnerError(f"`backend` runs ONNX files: one of {', '.join(ONNX_BACKENDS)}", field="backend")
        if not self.secondary and self.operate_on_class_ids:
            raise RunnerError(
                "`operate_on_class_ids` picks the detected objects a `secondary` classifier works on; add "
                "`secondary` or leave them out",
                field="operate_on_class_ids",
            )
        if self.secondary and self.gie_unique_id == self.operate_on_gie_id:
            raise RunnerError(
                f"`gie_unique_id` {self.gie_unique_id} is also `operate_on_gie_id`: a secondary classifier needs an "
                "id of its own, other than the detector's",
                field="gie_unique_id",
            )
        if not self.measure and (self.data is not None or self.limit is not None):
            raise ValidationError(
                "`data` and `limit` are for the measurement; leave them out with `measure=False`", field="data"
            )


def _whole(name: str, value: Any, least: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise RunnerError(f"`{name}` must be a whole number of at least {least}, got {value!r}", field=name)


def _resolve(artifact: Path, job: DeepStreamJob) -> tuple[ConfigRequest, Path | None]:
    """The config's request (without a measurement), and the file the measurement runs (None: none here)."""
    suffix = artifact.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        metadata, precision, files, batch_max, output_name = _engine(artifact)
        measured_with = artifact if _gpu() else files.onnx
    elif suffix in ONNX_SUFFIXES:
        metadata, precision = _onnx(artifact)
        files, batch_max, output_name, measured_with = ModelFiles(onnx=artifact), None, None, artifact
    else:
        raise ArtifactError(
            f"nvinfer runs TensorRT engines ({', '.join(ENGINE_SUFFIXES)}) and ONNX files; {artifact.name} is "
            "neither: export it to ONNX first (`resnet-deploy export`)",
            field="artifact",
        )
    frame = metadata.frame_input
    if frame is not None and frame.dtype != "float32":
        raise ArtifactError(
            f"{artifact.name} takes {frame.describe()} frames, but nvinfer hands TensorRT float tensors only; convert "
            f"the model it was made from with `frame_dtype=float32` (the same pixel values as floats: exact under "
            "nvinfer), or write the config for the model without a frame size",
            field="artifact",
        )
    if frame is not None and job.maintain_aspect_ratio:
        raise RunnerError(
            f"{artifact.name} takes whole {frame.width}x{frame.height} frames and fits them itself: leave out "
            "`maintain_aspect_ratio`, which would pad them",
            field="maintain_aspect_ratio",
        )
    if batch_max is not None and job.batch_size > batch_max:
        raise RunnerError(
            f"`batch_size` {job.batch_size} is more than the {batch_max} {artifact.name} was built for; choose at "
            f"most {batch_max}, or rebuild the engine with a larger batch",
            field="batch_size",
        )
    directory = Path(job.output) if job.output is not None else artifact.parent
    if directory.exists() and not directory.is_dir():
        raise OutputPathError(f"{directory} is a file; `output` is the directory the config goes to", field="output")
    request = ConfigRequest(
        artifact=artifact,
        metadata=metadata,
        precision=precision,
        files=files,
        directory=directory,
        labels=directory / LABELS,
        normalisation=for_model(metadata.mean, metadata.std) if frame is None else RAW_PIXELS,
        secondary=job.secondary,
        gie_unique_id=job.gie_unique_id or (2 if job.secondary else 1),
        operate_on_gie_id=job.operate_on_gie_id,
        operate_on_class_ids=tuple(job.operate_on_class_ids),
        batch_size=job.batch_size,
        threshold=float(job.threshold),
        maintain_aspect_ratio=job.maintain_aspect_ratio,
        output_name=output_name or OUTPUT_NAME,
    )
    labels_text(metadata)  # a class name the label file cannot hold is refused now, not after the measurement
    return request, measured_with


def _gpu() -> bool:
    return bool(machine.gpu_present())


def _onnx(path: Path) -> tuple[ArtifactMetadata, str]:
    model = load_onnx(path, external_data=False)
    metadata = check_graph_matches_metadata(model, source=str(path))  # one classifier input, one logits output
    lineage = read_lineage(model, str(path))
    if lineage.graph_precision == "int8-cpu":
        raise ArtifactError(
            f"{path.name} is ONNX Runtime's CPU form of INT8, which TensorRT cannot build; calibrate for TensorRT "
            "(`resnet-deploy calibrate`'s default) and give that ONNX, or an engine",
            field="artifact",
        )
    return metadata, lineage.graph_precision


def _engine(path: Path) -> tuple[ArtifactMetadata, str, ModelFiles, int | None, str | None]:
    sidecar = EngineSidecar.read(path)
    metadata = sidecar.metadata
    options = sidecar.build_options or {}
    onnx = _beside(sidecar.source_onnx, path, sidecar.source_onnx_sha256)
    cache = _beside(options.get("calib_cache"), path) if options.get("implicit") else None
    missing = None
    if onnx is None:
        missing = sidecar.source_onnx
    elif options.get("implicit") and cache is None:  # the FP32 ONNX alone would build no INT8 engine
        missing = f"{onnx} with its calibration cache {options.get('calib_cache')}"
        onnx = None
    profile = sidecar.profile or {}
    batch_max = profile["max"][0] if isinstance(profile.get("max"), list) and profile["max"] else None
    outputs = (sidecar.io or {}).get("outputs") or []
    files = ModelFiles(
        engine=path, onnx=onnx, calib_cache=cache, missing_onnx=missing, dla_core=sidecar.targets.dla_core
    )
    return metadata, sidecar.precision, files, batch_max, outputs[0]["name"] if len(outputs) == 1 else None


def _beside(recorded: Any, engine: Path, sha256: str | None = None) -> Path | None:
    """A file an engine's sidecar names: where it says (from here), else beside the engine; None when neither
    holds it (or holds another file than the sha256 recorded)."""
    if not isinstance(recorded, str) or not recorded:
        return None
    for candidate in (Path(recorded), engine.parent / Path(recorded).name):
        if candidate.is_file() and (sha256 is None or sha256_file(candidate) == sha256):
            return candidate
    return None


@dataclass(frozen=True)
class Measure(Step):
    """Run the test images through the model exactly and as nvinfer prepares them; the paired change."""

    artifact: Path
    model: Path  # what runs: the artifact, or the ONNX an engine was built from
    data: str
    normalisation: Normalisation
    threshold: float = 0.0
    limit: int | None = None
    backend: str = "auto"

    @property
    def title(self) -> str:
        with_what = "" if self.model == self.artifact else f" (with {self.model.name}, which it was built from)"
        return f"measure what nvinfer's preprocessing costs {self.artifact.name} in top-1 on {self.data}{with_what}"

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.model, "model measured"))

    def run(self, out: Messages, earlier: Sequence[Any]) -> PreprocessCost:
        dataset = data_spec.open_dataset(self.data)
        onnx = self.model.suffix.lower() in ONNX_SUFFIXES
        with runtime.open_backend(self.model, backend=self.backend if onnx else "auto") as backend:
            cost = nvinfer_preprocess.measure(
                backend, dataset, self.normalisation, threshold=self.threshold, limit=self.limit
            )
        for line in cost.lines():
            out.say(line)
        return cost


@dataclass(frozen=True)
class Write(Step):
    """Write the label file and the config, both whole or neither."""

    request: ConfigRequest

    @property
    def config(self) -> Path:
        return self.request.directory / config_name(self.request.artifact)

    @property
    def title(self) -> str:
        mode = "secondary" if self.request.secondary else "primary"
        return f"write the nvinfer config ({mode} classifier) for {self.request.artifact.name} and its labels"

    def inputs(self) -> tuple[Input, ...]:
        files = self.request.files
        rebuild = files.onnx if files.onnx != self.request.artifact else None
        return inputs(
            (self.request.artifact, "artifact"),
            (rebuild, "ONNX for rebuilds"),
            (files.calib_cache, "calibration cache"),
        )

    def outputs(self) -> tuple[Output, ...]:
        labels = labels_text(self.request.metadata)
        first = header(self.request.artifact)
        return (
            Output(
                self.request.labels,
                "label file",
                ours=lambda p: _text(p) == labels,
                with_companion=False,
                makes_parent=True,
            ),
            Output(
                self.config,
                "nvinfer config",
                ours=lambda p: _text(p).split("\n", 1)[0] == first,
                with_companion=False,
                makes_parent=True,
            ),
        )

    def run(self, out: Messages, earlier: Sequence[Any]) -> DeepStreamResult:
        cost = next((r for r in earlier if isinstance(r, PreprocessCost)), None)
        request = replace(self.request, cost=cost)
        text = render(request)
        request.directory.mkdir(parents=True, exist_ok=True)
        with atomic_outputs(request.labels, self.config) as (labels_tmp, config_tmp):
            labels_tmp.write_text(labels_text(request.metadata))
            config_tmp.write_text(text)
        out.say(f"nvinfer config: {self.config} (labels: {request.labels})")
        frames = request.metadata.frame_input is not None
        if frames:
            out.say("exact: the model takes the pixels as they are (when nvstreammux's size is the frame size)")
        elif cost is None:
            out.say("not measured: the config says so")
        exact = frames or len(set(request.metadata.std)) == 1
        return DeepStreamResult(
            self.config, request.labels, request.artifact, request.precision, request.normalisation, exact, cost, text
        )


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""
