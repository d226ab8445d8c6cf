"""``DemoJob``: the main job end to end on the embedded default, offline: train a CIFAR-style ResNet on
the embedded digits with the paper's recipe, export it (verified against PyTorch), calibrate INT8 for
TensorRT and for the CPU, convert to FP16, build FP16/INT8 engines with whatever TensorRT is installed
(TensorRT-RTX ahead of time when there is no GPU), validate every artifact that runs here against the
original, and benchmark them side by side.

Its plan is the other jobs' steps in a row (train, export, calibrate, convert, build, validate, bench),
every file named by ``artifacts.naming`` inside one directory the demo owns, and checked at once.

    from resnet_deploy import DemoJob, Printed, plan, run
    result = run(plan(DemoJob(directory="demo-out", epochs=2)), Printed())
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import sha256_file, write_bytes_atomic
from resnet_deploy.artifacts import naming
from resnet_deploy.artifacts.engine_sidecar import sidecar_path
from resnet_deploy.artifacts.model_spec import ARCHITECTURES, ModelSpec, model_config
from resnet_deploy.engine.options import BuildOptions, check_combination
from resnet_deploy.errors import BuildOptionError, NoBackendError, OutputPathError, TrainingError, UnknownModelError
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.bench import BenchJob, Time
from resnet_deploy.pipeline.calibrate import Calibrate
from resnet_deploy.pipeline.convert import ConvertFp16
from resnet_deploy.pipeline.engine import Build
from resnet_deploy.pipeline.export import Export, export_ours
from resnet_deploy.pipeline.job import Job
from resnet_deploy.pipeline.plan import Output, Plan, Step, checked
from resnet_deploy.pipeline.reports import MarkedFile
from resnet_deploy.pipeline.train import Train
from resnet_deploy.pipeline.validate import Score
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.runtime.machine import gpu_present
from resnet_deploy.training.options import TrainOptions
from resnet_deploy.trt.flavours import choose

if TYPE_CHECKING:
    from resnet_deploy.evaluate.bench import BenchReport
    from resnet_deploy.evaluate.validate import ValidationReport
    from resnet_deploy.training.trainer import TrainResult

# TensorRT-RTX targets when there is no GPU to build for: RTX 30xx, 40xx, 50xx
DEMO_TARGET_CC = ("8.6", "8.9", "12.0")
CIFAR_DEPTHS = tuple(d for d, (family, _, _) in ARCHITECTURES.items() if family == "cifar")


@dataclass
class DemoResult:
    directory: Path
    trained: TrainResult
    artifacts: list[Path]  # ONNX: FP32, INT8 (TensorRT, CPU), FP16
    engines: list[Path]
    validation: ValidationReport
    bench: BenchReport
    files: list[str] = field(default_factory=list)  # what was written, described

    def to_dict(self, seconds: float) -> dict[str, Any]:
        return {
            "ok": True,
            "model": self.trained.config.name,
            "epochs": self.trained.epochs,
            "checkpoint": str(self.trained.checkpoint),
            "validation": self.validation.to_dict(),
            "engines": [str(e) for e in self.engines],
            "bench": self.bench.to_dict(),
            "out_dir": str(self.directory),
            "train_seconds": round(self.trained.seconds, 2),
            "seconds": round(seconds, 2),
        }


@dataclass(frozen=True)
class DemoJob(Job[DemoResult]):
    """The demo into ``directory`` (a previous demo there is replaced; anyone else's files only with
    ``overwrite``): a ResNet of ``depth`` (CIFAR family) trained ``epochs`` (default: the recipe's 20),
    calibrated on ``calib_images``, benchmarked on ``threads`` CPU threads (default: every core)."""

    command = "demo"

    directory: str | Path = naming.DEMO_DIR
    depth: int = 20
    epochs: int | None = None
    calib_images: int = 512
    threads: int | None = None
    overwrite: bool = False

    def plan(self) -> Plan[DemoResult]:
        if self.depth not in CIFAR_DEPTHS:
            raise UnknownModelError(
                f"the demo trains a CIFAR-family ResNet on 32x32 digits: choose one of "
                f"{', '.join(map(str, CIFAR_DEPTHS))}, not {self.depth}",
                field="depth",
            )
        if self.epochs is not None and self.epochs < 1:
            raise TrainingError(f"`epochs` must be at least 1, got {self.epochs}", field="epochs")
        directory = Path(self.directory)
        check_directory(directory, self.overwrite)  # every option checked before the directory is touched
        files = naming.demo_files(directory, model_config(ModelSpec(self.depth)).name)
        steps, headings = self._steps(directory, files)
        return checked(
            self.command,
            steps,
            lambda results: _result(directory, files, steps, results),
            overwrite=True,
            headings=headings,
            output_field="directory",
        )

    def _steps(self, directory: Path, files: dict[str, Path]) -> tuple[list[Step], dict[int, str]]:
        threads = self.threads or os.cpu_count() or 1
        checkpoint = files["run"] / naming.MODEL_FILE
        calibration = CalibrationOptions(count=self.calib_images, cache_dir=files["calibration"])
        options: TrainOptions = TrainOptions(model=ModelSpec(self.depth), data="digits", epochs=self.epochs)
        onnx, int8, cpu_int8, half = files["onnx"], files["int8"], files["cpu_int8"], files["fp16"]
        headings: dict[int, str] = {}
        steps: list[Step] = []

        def stage(heading: str, *added: Step) -> None:
            headings[len(steps)] = heading
            steps.extend(added)

        stage(
            f"== 1. train resnet{self.depth} on the embedded digits",
            Claim(directory, files["run"]),
            Train(options, files["run"], overwrite=True),
        )
        stage(
            "== 2. export to ONNX and verify against PyTorch",
            Export(checkpoint, ModelSpec(), onnx, export_ours(checkpoint, ModelSpec())),
        )
        stage(
            "== 3. calibrate INT8 (TensorRT Q/DQ placement, and ONNX Runtime's CPU form)",
            Calibrate(onnx, int8, "tensorrt", calibration),
            Calibrate(onnx, cpu_int8, "cpu", calibration),
        )
        stage("== 4. convert to FP16 (float32 I/O), verify against FP32", ConvertFp16(onnx, half))
        engines = self._engines(int8, half, files)
        stage("== 5. build TensorRT engines (FP16, INT8)", *engines)
        artifacts = (onnx, int8, cpu_int8, half, *(b.output for b in engines if isinstance(b, Build)))
        report = MarkedFile(files["validation"], "", lambda _: True)  # the demo's directory: replaced whole
        stage(
            "== 6. validate every artifact against the original on the digits test split",
            Score(checkpoint, artifacts, report=report, skip_failing_engines=True),
        )
        bench = BenchJob(
            (checkpoint, *artifacts),
            batches=(1, 32),
            warmup=3,
            iters=15,
            threads=threads,
            skip_failing_engines=True,
        )
        stage(
            f"== 7. benchmark, batch 1 and 32, {threads} CPU threads",
            Time(bench, tuple(map(Path, bench.artifacts)), json_path=files["bench"]),
            Seal(directory),
        )
        return steps, headings

    @staticmethod
    def _engines(int8: Path, half: Path, files: dict[str, Path]) -> list[Step]:
        """An engine per precision with whatever TensorRT is installed; none, with the reason, otherwise."""
        try:
            backend = choose()
        except NoBackendError as exc:
            return [Skip(f"skipping engines: {exc}")]
        target_cc = DEMO_TARGET_CC if backend.is_rtx and not gpu_present() else ()
        builds = [
            Build(graph, engine, BuildOptions(precision=precision, target_cc=target_cc), backend, input_onnx=graph)
            for precision, graph, engine in (("int8", int8, files["int8_engine"]), ("fp16", half, files["fp16_engine"]))
        ]
        try:
            for build in builds:
                check_combination(build.options, backend)  # what EngineJob checks: none can be built here
        except BuildOptionError as exc:
            return [Skip(f"skipping engines: {exc}")]
        ahead = f"no GPU here: {backend.name} builds ahead of time for compute capabilities {', '.join(target_cc)}"
        steps: list[Step] = [Skip(ahead)] if target_cc else []
        return steps + list(builds)


def check_directory(directory: Path, overwrite: bool) -> None:
    """Refuse a directory that holds someone else's files (or a training run the demo did not make)."""
    run = directory / "train"
    if not (overwrite or demo_owns(directory)):
        raise OutputPathError(
            f"{directory} holds files a demo did not write, and the demo replaces what is in its directory; "
            "choose another `directory`, or `overwrite=True`",
            field="directory",
        )
    changed = [] if overwrite else not_the_demos(directory)
    if changed:
        shown = ", ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else "")
        it = "it" if len(changed) == 1 else "them"
        raise OutputPathError(
            f"{directory} holds {shown}, which the last demo there did not write (or that changed since); the demo "
            f"would replace {it}: move {it}, choose another `directory`, or `overwrite=True`",
            field="directory",
        )
    if (run / naming.STATE_FILE).exists() and not (directory / naming.DEMO_MARKER).exists():
        # overwriting replaces files, never deletes a training run
        raise OutputPathError(
            f"{run} holds a training run the demo did not make (or an older version's demo: delete it yourself "
            "then); choose another `directory`",
            field="directory",
        )


def demo_owns(directory: Path) -> bool:
    """An output directory the demo may replace: absent, empty, or a demo's (its marker)."""
    if not directory.is_dir():
        return not directory.exists()
    names = {p.name for p in directory.iterdir()}
    return not names or naming.DEMO_MARKER in names


def _files(directory: Path) -> dict[str, Path]:
    """Every file below ``directory`` but the marker, by its path relative to it."""
    return {
        path.relative_to(directory).as_posix(): path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.name != naming.DEMO_MARKER
    }


def not_the_demos(directory: Path) -> list[str]:
    """The files a finished demo's marker does not record as it wrote them (by sha256): the user's, or
    changed by the user since. A demo that did not finish (or an older version's marker) records none:
    what is there is taken as its own."""
    marker = directory / naming.DEMO_MARKER
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict) or record.get("complete") is not True or not isinstance(record.get("files"), dict):
        return []
    written = record["files"]
    return [name for name, path in _files(directory).items() if written.get(name) != sha256_file(path)]


@dataclass(frozen=True)
class Seal(Step):
    """Record in the marker every file the finished demo wrote, by sha256: a later demo replaces those,
    and refuses a file that is not among them or that changed."""

    directory: Path

    @property
    def title(self) -> str:
        return f"record the files the demo wrote in {self.directory / naming.DEMO_MARKER}"

    def run(self, out: Messages, earlier: Sequence[Any]) -> None:
        files = {name: sha256_file(path) for name, path in _files(self.directory).items()}
        record = {"written_by": "resnet-deploy demo", "complete": True, "files": files}
        write_bytes_atomic(self.directory / naming.DEMO_MARKER, (json.dumps(record, indent=1) + "\n").encode())


@dataclass(frozen=True)
class Claim(Step):
    """Mark ``directory`` as the demo's and clear the previous demo's training run: every demo starts fresh."""

    directory: Path
    run_dir: Path

    @property
    def title(self) -> str:
        return f"claim {self.directory} for the demo (a previous demo's run there is cleared)"

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.directory / naming.DEMO_MARKER, "demo marker", with_companion=False, makes_parent=True),)

    def run(self, out: Messages, earlier: Sequence[Any]) -> None:
        check_directory(self.directory, overwrite=True)  # again at the work: a run another process started meanwhile
        if (self.run_dir / naming.STATE_FILE).exists():
            shutil.rmtree(self.run_dir)  # the demo always starts fresh; use `train` for runs you keep
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = {"written_by": "resnet-deploy demo", "complete": False, "files": {}}  # sealed when it finishes
        write_bytes_atomic(self.directory / naming.DEMO_MARKER, (json.dumps(marker) + "\n").encode())


@dataclass(frozen=True)
class Skip(Step):
    """Work the plan leaves out, and why (said when its turn comes)."""

    reason: str

    @property
    def title(self) -> str:
        return self.reason

    def run(self, out: Messages, earlier: Sequence[Any]) -> None:
        out.say(self.reason)


def _result(directory: Path, files: dict[str, Path], steps: Sequence[Step], results: list[Any]) -> DemoResult:
    def of(kind: type[Step]) -> Any:
        return next(r for s, r in zip(steps, results, strict=True) if isinstance(s, kind))

    trained, validation, timings = of(Train), of(Score), of(Time)
    engines = [s.output for s in steps if isinstance(s, Build)]
    artifacts = [files[k] for k in ("onnx", "int8", "cpu_int8", "fp16")]
    described = [
        f"{files['run']}/  (the training run: {trained.checkpoint.name} with its .json, log and state)",
        *map(str, artifacts),
        *(f"{engine}  (and {sidecar_path(engine).name}, its build record)" for engine in engines),
        f"{files['calibration']}/  (the calibration cache: ranges and TensorRT .calib.cache)",
        str(files["validation"]),
        str(files["bench"]),
    ]
    return DemoResult(directory, trained, artifacts, engines, validation, timings, described)
