"""``TritonJob``: a Triton model repository from artifacts, one model per engine or ONNX.

    from resnet_deploy.pipeline.triton import TritonJob
    from resnet_deploy.pipeline import plan, run

    report = run(plan(TritonJob(("r20.onnx", "r20.int8.engine"), output="models", triton_release="24.08")))
    print([m.name for m in report.models])   # r20, r20_preprocess, r20_ensemble, r20_int8, ...

Every ``config.pbtxt`` comes from what its artifact records (see
:mod:`resnet_deploy.serve.triton_repository`) and, when tritonclient is installed (the ``client``
extra), is parsed with Triton's own ``model_config.proto`` before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_deploy.errors import ArtifactError
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, existing_file
from resnet_deploy.pipeline.plan import Input, Plan, Step, checked, last
from resnet_deploy.serve.triton_config import check_configs
from resnet_deploy.serve.triton_releases import tensorrt_of
from resnet_deploy.serve.triton_repository import (
    INSTANCE_KINDS,
    ONNX_TRITON_BACKENDS,
    PlannedModel,
    RepositoryOptions,
    check_destination,
    plan_models,
    read_artifact,
    unique_names,
    write_repository,
)


@dataclass(frozen=True)
class TritonModel:
    """One model written: its name, what it is, how Triton runs it, its directory."""

    name: str
    role: str  # "classifier", "preprocess" or "ensemble"
    runs_on: str  # tensorrt_plan, onnxruntime_onnx, openvino, python, ensemble
    path: Path
    source: str | None
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "runs_on": self.runs_on,
            "path": str(self.path),
            "source": self.source,
            "max_batch_size": self.max_batch_size,
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
        }


@dataclass(frozen=True)
class TritonReport:
    """The repository written, its models, and whether Triton's proto checked every config."""

    repository: Path
    models: tuple[TritonModel, ...]
    checked_against_proto: bool
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": str(self.repository),
            "models": [m.to_dict() for m in self.models],
            "checked_against_proto": self.checked_against_proto,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class TritonJob(Job[TritonReport]):
    """Write a Triton model repository ``output`` with one model per artifact of ``artifacts``.

    ``name``: the model's name (one artifact only; else each file's name, sanitised, made unique).
    ``version``: its version directory. ``backend``: what runs ONNX files (``onnxruntime`` or
    ``openvino``). ``triton_release`` ("24.08"): the Triton container that will serve; an engine it
    cannot load is refused. ``bench``: a ``resnet-deploy bench --json`` result whose fastest batch sizes
    become the dynamic batcher's preferred ones. ``max_batch_size``, ``preferred_batch_sizes``,
    ``max_queue_delay_us``, ``instances`` and ``instance_kind`` (``auto``: GPU for engines, CPU for
    ONNX files) go into each config; ``warmup`` adds a zero-filled warm-up request; ``ensemble`` adds,
    for models that take normalised tensors, a preprocessing model and an ensemble that take encoded
    images. A model directory that exists and is not empty is replaced only with ``overwrite``."""

    command = "triton"

    artifacts: Sequence[str | Path] = ()
    output: str | Path | None = None
    name: str | None = None
    version: int = 1
    backend: str = "onnxruntime"
    triton_release: str | None = None
    bench: str | Path | None = None
    max_batch_size: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_us: int = 100
    instances: int = 1
    instance_kind: str = "auto"
    warmup: bool = True
    ensemble: bool = True
    overwrite: bool = False

    def plan(self) -> Plan[TritonReport]:
        if not self.artifacts:
            raise ArtifactError("no artifacts to serve: give engines or ONNX files", field="artifacts")
        if self.output is None:
            raise ArtifactError("no repository to write: give a directory (`output`)", field="output")
        self._check_numbers()
        if self.backend not in ONNX_TRITON_BACKENDS:
            raise ArtifactError(f"`backend` is one of {', '.join(ONNX_TRITON_BACKENDS)}", field="backend")
        if self.instance_kind not in INSTANCE_KINDS:
            raise ArtifactError(f"`instance_kind` is one of {', '.join(INSTANCE_KINDS)}", field="instance_kind")
        if self.triton_release is not None:
            tensorrt_of(self.triton_release)
        paths = [existing_file(a, "artifact", "artifacts") for a in self.artifacts]
        artifacts = [read_artifact(p) for p in paths if p is not None]
        bench_path = existing_file(self.bench, "bench results", "bench")
        rows = _bench_rows(bench_path) if bench_path is not None else None
        options = RepositoryOptions(
            version=self.version,
            backend=self.backend,
            max_batch_size=self.max_batch_size,
            preferred_batch_sizes=self.preferred_batch_sizes,
            max_queue_delay_us=self.max_queue_delay_us,
            instances=self.instances,
            instance_kind=self.instance_kind,
            warmup=self.warmup,
            ensemble=self.ensemble,
            triton_release=self.triton_release,
        )
        names = unique_names([a.path for a in artifacts], self.name)
        models = [m for a, n in zip(artifacts, names, strict=True) for m in plan_models(a, n, options, rows)]
        repository = Path(self.output)
        replaced = check_destination(repository, [m.name for m in models], self.overwrite)
        step = WriteRepository(repository, tuple(models), tuple(replaced), bench_path)
        return checked(self.command, [step], last, overwrite=self.overwrite)

    def _check_numbers(self) -> None:
        for field, value, low in (
            ("version", self.version, 1),
            ("instances", self.instances, 1),
            ("max_queue_delay_us", self.max_queue_delay_us, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ArtifactError(f"`{field}` is a whole number from {low}, not {value!r}", field=field)
        if self.max_batch_size is not None and (not isinstance(self.max_batch_size, int) or self.max_batch_size < 1):
            raise ArtifactError(
                f"`max_batch_size` is a whole number from 1, not {self.max_batch_size!r}", field="max_batch_size"
            )
        if self.preferred_batch_sizes is not None and (
            not self.preferred_batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.preferred_batch_sizes)
        ):
            raise ArtifactError(
                f"`preferred_batch_sizes` are whole numbers from 1, not {self.preferred_batch_sizes!r}",
                field="preferred_batch_sizes",
            )


def _bench_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``resnet-deploy bench --json`` result (``BenchReport.to_dict()``)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"bench results {path} are not readable JSON ({exc})", field="bench") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(_bench_row(r) for r in rows):
        raise ArtifactError(
            f"{path} is not a `resnet-deploy bench` result (rows with batch and images_per_second); write one "
            "with `resnet-deploy bench` and its JSON output",
            field="bench",
        )
    return rows


def _bench_row(row: Any) -> bool:
    """A row the preferred batch sizes can be read from: a whole batch from 1, a finite rate from 0."""
    if not isinstance(row, dict):
        return False
    batch, rate = row.get("batch"), row.get("images_per_second")
    return (
        type(batch) is int
        and batch >= 1
        and isinstance(rate, (int, float))
        and not isinstance(rate, bool)
        and math.isfinite(rate)
        and rate >= 0
        and isinstance(row.get("artifact", ""), str)
    )


@dataclass(frozen=True)
class WriteRepository(Step):
    """Check every config against Triton's proto, then write all the model directories, or none."""

    repository: Path
    models: tuple[PlannedModel, ...]
    replacing: tuple[str, ...] = ()
    bench: Path | None = None

    @property
    def title(self) -> str:
        names = ", ".join(m.name for m in self.models)
        replacing = f" (replacing {', '.join(self.replacing)})" if self.replacing else ""
        return f"write the Triton repository {self.repository}: {names}{replacing}"

    def inputs(self) -> tuple[Input, ...]:
        sources = dict.fromkeys(m.source for m in self.models if m.source is not None)
        found = tuple(Input(p, "artifact") for p in sources)
        return found + ((Input(self.bench, "bench results"),) if self.bench else ())

    def run(self, out: Messages, earlier: Sequence[Any]) -> TritonReport:
        checked_ = check_configs([(f"{m.name}/config.pbtxt", m.config_text) for m in self.models])
        if not checked_:
            out.warn(
                "tritonclient is not installed: the configs were not checked against Triton's model_config.proto "
                '(pip install "resnet-deploy[client]")'
            )
        written = write_repository(self.repository, self.models)
        notes = tuple(note for m in self.models for note in m.notes)
        for note in notes:
            out.warn(note)
        models = tuple(
            TritonModel(
                name=m.name,
                role=m.role,
                runs_on=m.config.platform or m.config.backend or "",
                path=path,
                source=str(m.source) if m.source else None,
                max_batch_size=m.config.max_batch_size,
                preferred_batch_sizes=m.config.preferred_batch_sizes,
            )
            for m, path in zip(self.models, written, strict=True)
        )
        for model in models:
            batch = f", max batch {model.max_batch_size}" if model.max_batch_size else ""
            out.say(f"wrote {model.path} ({model.role}, {model.runs_on}{batch})")
        return TritonReport(self.repository, models, checked_, notes)
