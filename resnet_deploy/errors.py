"""Errors the user can act on.

Every error raised on purpose derives from :class:`ResnetDeployError`; the CLI prints its message
as one line and exits with its ``exit_code``. Anything else escaping the CLI is a bug.
"""

from __future__ import annotations


class ResnetDeployError(Exception):
    """Base class: a problem with the user's input or environment, with a message saying what to do."""

    exit_code = 2


class UnknownModelError(ResnetDeployError):
    """A depth, variant or shortcut option that names no model."""


class CheckpointError(ResnetDeployError):
    """A checkpoint that cannot be read or does not fit the model."""


class ExportError(ResnetDeployError):
    """torch.onnx could not export the model, or the ONNX failed its checks."""


class VerificationError(ResnetDeployError):
    """An artifact's outputs differ from the original model's beyond tolerance."""

    exit_code = 3


class DatasetError(ResnetDeployError):
    """A dataset spec, directory or file that cannot be read as the format it claims."""


class TrainingError(ResnetDeployError):
    """A training run that cannot start or continue as asked (resume mismatch, diverged loss...)."""


class OutputPathError(ResnetDeployError):
    """An output path that cannot be written."""


class MissingDependencyError(ResnetDeployError):
    """An optional dependency (TensorRT, cuda-python, ...) is needed but not installed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same cleanup runs (temporaries removed, runs resumable); exit 143."""

    exit_code = 143
