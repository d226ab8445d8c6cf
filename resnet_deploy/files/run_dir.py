"""A training run's directory: which files a run writes there, whether a ``resume`` continues it in
place, and what a directory already holding a run may not be used for (torch-free, for plans)."""

from __future__ import annotations

import json
from pathlib import Path

from resnet_deploy.artifacts.naming import LOG_FILES, STATE_FILE
from resnet_deploy.artifacts.train_state import history_records
from resnet_deploy.errors import ArtifactError, OutputPathError, TrainingError


def resumes_in_place(resume: str | Path | None, run_dir: Path) -> bool:
    """Whether ``resume`` names ``run_dir`` itself (or its state file): the run writes where it was."""
    return resume is not None and Path(resume).resolve() in (run_dir.resolve(), (run_dir / STATE_FILE).resolve())


def resumed_dir(resume: str | Path) -> Path:
    """The run directory a ``resume`` names (the directory of a state file given)."""
    return Path(resume).parent if Path(resume).is_file() else Path(resume)


def check_run_dir(run_dir: Path, resume: str | Path | None) -> None:
    """A new run never starts in a directory that holds a run (resume it instead), nor in a file."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputPathError(f"run directory {run_dir} is a file; choose another `output`", field="output")
    if (run_dir / STATE_FILE).exists() and not resumes_in_place(resume, run_dir):
        raise TrainingError(
            f"{run_dir} already holds a training run; continue it with `resume={run_dir}` or choose another `output`",
            field="output",
        )


def epochs_logged(run_dir: Path) -> int:
    """Epochs the run's log holds (what a launcher that did not train itself can tell of a stopped job)."""
    try:
        return len(history_records(json.loads((run_dir / LOG_FILES[1]).read_text())))
    except (OSError, ValueError, ArtifactError):
        return 0
