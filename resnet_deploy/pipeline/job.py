"""What every command's Job shares: a frozen record of what is asked, with the library's defaults,
that plans itself into steps (``job.plan()``, or ``resnet_deploy.plan(job)``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from resnet_deploy.artifacts.model_spec import ModelSpec
from resnet_deploy.errors import ArtifactError, OutputPathError, RunnerError
from resnet_deploy.runtime.load import ENGINE_SUFFIXES, ONNX_BACKENDS, ONNX_SUFFIXES, TORCH_SUFFIXES

if TYPE_CHECKING:
    from typing_extensions import Self

    from resnet_deploy.pipeline.plan import Plan

R = TypeVar("R")
_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelSpec))


class Job(Generic[R]):
    """Base of the command records: ``ExportJob``, ``EngineJob``... (frozen dataclasses)."""

    command: ClassVar[str]  # the CLI command that runs it ("build-engine"), named in refusals

    def plan(self) -> Plan[R]:
        """The steps, every output checked before any work."""
        raise NotImplementedError

    @classmethod
    def of(cls, **fields: Any) -> Self:
        """The job with the model's fields given flat: ``ExportJob.of(depth=50, output="r50.onnx")``."""
        model = {k: fields.pop(k) for k in list(fields) if k in _MODEL_FIELDS}
        if model:
            fields["model"] = ModelSpec.of(fields.get("model"), **model)
        return cls(**fields)


def existing_file(path: str | Path | None, what: str, field: str) -> Path | None:
    """``path`` as a Path, refused in one line when it is not an existing file."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"{what} {path} not found" if not path.is_dir() else f"{what} {path} is a directory", field=field
        )
    return path


def output_path(path: str | Path | None, suffixes: tuple[str, ...], what: str, field: str = "output") -> Path | None:
    """An output path the user gave, refused in one line unless it ends in one of ``suffixes``."""
    if path is None:
        return None
    if not str(path).lower().endswith(suffixes):
        ends = " or ".join(suffixes)
        raise OutputPathError(f"{what}: give a path ending in {ends} (`{field}`), not {path}", field=field)
    return Path(path)


MODEL_SUFFIXES = (*ENGINE_SUFFIXES, *ONNX_SUFFIXES, *TORCH_SUFFIXES)


def runnable_model(path: str | Path | None, backend: str, what: str) -> Path:
    """The model a runner opens (an engine, an ONNX on ``backend``, a checkpoint), refused in one line when it is
    missing, not a file, of a kind no runner opens, or ``backend`` is not an ONNX runtime; ``what``: "to serve"."""
    if path is None:
        raise RunnerError(f"no model {what}: an engine, an ONNX or a checkpoint", field="model")
    model = existing_file(path, "model", "model")
    assert model is not None
    if not model.name.lower().endswith(MODEL_SUFFIXES):
        raise RunnerError(
            f"cannot tell what {model} is from its suffix; the model is an engine ({', '.join(ENGINE_SUFFIXES)}), "
            f"an ONNX (.onnx) or a checkpoint ({', '.join(TORCH_SUFFIXES)})",
            field="model",
        )
    if backend not in ONNX_BACKENDS:
        raise RunnerError(f"`backend` runs ONNX files: one of {', '.join(ONNX_BACKENDS)}", field="backend")
    return model
