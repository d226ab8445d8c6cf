"""Errors the user can act on.

Every error raised on purpose derives from :class:`ResnetDeployError`; the CLI prints its message
as one line and exits with its ``exit_code``. Anything else escaping the CLI is a bug.

Messages speak in the library's parameters, never in command-line flags: a parameter is named in
backticks, alone (`` `calib_images` ``) or with a value (`` `precision=int8` ``), and ``field`` holds
the Job field at fault. A Python caller reads the names it passed; the CLI prints each as its flag
(``--calib-images``, ``--int8``).
"""

from __future__ import annotations


class ResnetDeployError(Exception):
    """Base class: a problem with the user's input or environment, with a message saying what to do."""

    exit_code = 2

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the parameter at fault ("calibration.count", "depth"), when one is


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


class JobFailed(TrainingError):
    """A process of an ``nproc`` job failed; the message names it and its cause. ``resumable``: the run
    in ``run_dir`` has a saved epoch to continue from (set by the job that launched it)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.resumable = False
        self.run_dir: object = None
        self.nproc: int | None = None


STOPPED_BY_PEER = "stopped: rank 0 failed"  # how a PeerFailed message starts: never a job's root cause


class PeerFailed(TrainingError):
    """Rank 0 of a data-parallel job failed and said why; this process stops without saying it again."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"{STOPPED_BY_PEER} ({cause})")


class OutputPathError(ResnetDeployError):
    """An output path that cannot be written."""


class MissingDependencyError(ResnetDeployError):
    """An optional dependency (TensorRT, cuda-python, ...) is needed but not installed."""


class NoBackendError(MissingDependencyError):
    """Neither TensorRT nor TensorRT-RTX is installed (or the one asked for is not)."""


class ArtifactError(ResnetDeployError):
    """A model file, its metadata or its sidecar is malformed or contradicts itself."""


class BuildOptionError(ResnetDeployError):
    """Build options the chosen TensorRT release, GPU or graph cannot build."""


class EngineBuildError(ResnetDeployError):
    """TensorRT or TensorRT-RTX could not parse or build the graph."""


class EngineMismatchError(ResnetDeployError):
    """An engine that does not fit this machine, this TensorRT or its own sidecar."""


class CudaError(ResnetDeployError):
    """The CUDA driver, runtime or bindings cannot do what the engine runner needs."""


class RunnerError(ResnetDeployError):
    """Inputs, options or a device the runner cannot use, or a failure while it infers."""


class QuantizationError(ResnetDeployError):
    """A model that cannot be calibrated to INT8 or converted to FP16 as asked."""


class ValidationError(ResnetDeployError):
    """Artifacts that cannot be scored against their reference as asked."""


class AccuracyGateError(ResnetDeployError):
    """An artifact lost more top-1 accuracy than ``max_top1_drop`` allows, or was not scored."""

    exit_code = 4
    report: object = None  # the validation report the gate judged, when it came from a ValidateJob


class BenchmarkError(ResnetDeployError):
    """Artifacts or options that cannot be benchmarked as asked."""


class Stopped(ResnetDeployError):
    """A process of a data-parallel job that ends quietly with ``exit_code``: another process (rank 0, or the
    launcher) says why, once for the whole job."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"stopped with exit code {exit_code}")
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same cleanup runs (temporaries removed, runs resumable); exit 143."""

    exit_code = 143


def raise_terminated(_signum: int, _frame: object) -> None:
    """The CLI's SIGTERM handler: :class:`Terminated` raised where the process stands."""
    raise Terminated()


def interrupted_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM: what a shell reports for a process those signals end."""
    return Terminated.exit_code if isinstance(exc, Terminated) else 130


class RunInterrupted(KeyboardInterrupt):
    """A training run stopped by Ctrl-C or SIGTERM, and where it stands: ``epochs_done`` saved in ``run_dir``."""

    def __init__(self, run_dir: object, epochs_done: int, terminated: bool, nproc: int | None = None) -> None:
        super().__init__()
        self.run_dir, self.epochs_done, self.terminated, self.nproc = run_dir, epochs_done, terminated, nproc

    @property
    def exit_code(self) -> int:
        return Terminated.exit_code if self.terminated else 130
