"""The main job end to end on the embedded default, offline: train a CIFAR-style ResNet on the
embedded digits with the paper's recipe, export it (verified against PyTorch), calibrate INT8 for
TensorRT and for the CPU, convert to FP16, build FP16/INT8 engines with whatever TensorRT is
installed (TensorRT-RTX ahead of time when there is no GPU), validate every artifact that can run
here against the original, and benchmark them side by side.

:func:`run_demo` is the composition; each step is one function.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import human_bytes, write_bytes_atomic
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.engine_sidecar import sidecar_path
from resnet_deploy.artifacts.model_spec import ARCHITECTURES, ModelSpec
from resnet_deploy.engine.options import BuildOptions
from resnet_deploy.errors import NoBackendError, OutputPathError, ResnetDeployError, UnknownModelError
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.engines import build_engine
from resnet_deploy.pipeline.exports import export_model
from resnet_deploy.quantize.options import CalibrationOptions
from resnet_deploy.runtime import open_backend
from resnet_deploy.runtime.machine import gpu_present
from resnet_deploy.trt.flavours import choose

if TYPE_CHECKING:
    from resnet_deploy.convert import fp16
    from resnet_deploy.evaluate import bench, validate
    from resnet_deploy.quantize import calibrate
    from resnet_deploy.training import log, run_state, trainer
else:
    bench, fp16, validate, calibrate, log, run_state, trainer = map(
        lazy_module,
        (
            "resnet_deploy.evaluate.bench",
            "resnet_deploy.convert.fp16",
            "resnet_deploy.evaluate.validate",
            "resnet_deploy.quantize.calibrate",
            "resnet_deploy.training.log",
            "resnet_deploy.training.run_state",
            "resnet_deploy.training.trainer",
        ),
    )

# TensorRT-RTX targets when there is no GPU to build for: RTX 30xx, 40xx, 50xx
DEMO_TARGET_CC = ("8.6", "8.9", "12.0")
DEMO_MARKER = ".resnet-deploy-demo"


@dataclass
class DemoResult:
    directory: Path
    trained: Any  # training.trainer.TrainResult
    artifacts: list[Path]  # ONNX: FP32, INT8 (TensorRT, CPU), FP16
    engines: list[Path]
    validation: Any  # validate.ValidationReport
    bench: Any  # bench.BenchReport
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


def check_demo_depth(depth: int) -> None:
    cifar_depths = [d for d, (family, _, _) in ARCHITECTURES.items() if family == "cifar"]
    if depth not in cifar_depths:
        raise UnknownModelError(
            f"the demo trains a CIFAR-family ResNet on 32x32 digits: choose one of "
            f"{', '.join(map(str, cifar_depths))}, not {depth}"
        )


def demo_owns(directory: Path) -> bool:
    """An output directory the demo may replace: absent, empty, or a demo's (its marker)."""
    if not directory.is_dir():
        return not directory.exists()
    names = {p.name for p in directory.iterdir()}
    return not names or DEMO_MARKER in names


def prepare_directory(directory: Path, overwrite: bool) -> Path:
    """Claim ``directory`` for the demo (refused when it holds someone else's files) and clear the
    previous demo's training run; returns the run directory."""
    run_dir = directory / "train"
    if not (overwrite or demo_owns(directory)):
        raise OutputPathError(
            f"{directory} holds files a demo did not write, and the demo replaces what is in its directory; "
            "choose another directory (--out), or overwrite it (--overwrite)"
        )
    if (run_dir / run_state.STATE_FILE).exists():
        if not (directory / DEMO_MARKER).exists():  # overwriting replaces files, never deletes a training run
            raise OutputPathError(
                f"{run_dir} holds a training run the demo did not make (or an older version's demo: delete it "
                "yourself then); choose another directory (--out)"
            )
        shutil.rmtree(run_dir)  # the demo always starts fresh; use `train` for runs you keep
    directory.mkdir(parents=True, exist_ok=True)
    (directory / DEMO_MARKER).write_text("written by `resnet-deploy demo`: a later demo replaces this directory\n")
    return run_dir


def train_step(out: Messages, run_dir: Path, depth: int, epochs: int | None, progress: bool) -> Any:
    out.say(f"== 1. train resnet{depth} on the embedded digits")
    run = trainer.Trainer(
        trainer.TrainOptions(model=ModelSpec(depth), data="digits", epochs=epochs),
        run_dir,
        on_info=out.say,
        on_epoch=lambda row: out.say(log.describe_epoch(row, run.plan.epochs if run.plan else 0)),
        progress=progress,
    )
    return run.run()


def export_step(out: Messages, checkpoint: Path, directory: Path, name: str) -> Path:
    out.say("== 2. export to ONNX and verify against PyTorch")
    exported = export_model(
        out,
        str(checkpoint),
        str(directory / f"{name}.onnx"),
        opset=None,
        static_batch=None,
        simplify=False,
        verify=True,
        tolerance=None,
        overwrite=True,  # the demo's own directory (prepare_directory): a previous demo there is replaced
    )
    return Path(exported.path)


def calibrate_step(out: Messages, onnx_path: Path, directory: Path, images: int) -> list[Path]:
    out.say("== 3. calibrate INT8 (TensorRT Q/DQ placement, and ONNX Runtime's CPU form)")
    options = CalibrationOptions(count=images, cache_dir=directory / "calibration")
    written = []
    for target, suffix in (("tensorrt", ".int8.onnx"), ("cpu", ".cpu.int8.onnx")):
        q = calibrate.calibrate_onnx(onnx_path, onnx_path.with_suffix(suffix), options, target=target, warn=out.warn)
        out.say(f"{target}: {q.path} ({q.method}, {q.images} images, {q.calibrate_seconds:.1f} s)")
        written.append(Path(q.path))
    return written


def fp16_step(out: Messages, onnx_path: Path) -> Path:
    out.say("== 4. convert to FP16 (float32 I/O), verify against FP32")
    half = fp16.convert_to_fp16(onnx_path, onnx_path.with_suffix(".fp16.onnx"))
    out.say(f"{half.path}: max |err| {half.max_abs_error:.1e} vs FP32, top-1 agreement {half.top1_agreement:.0%}")
    return Path(half.path)


def engines_step(out: Messages, graphs: dict[str, Path], progress: bool = False) -> list[Path]:
    """An engine per precision (``{"fp16": FP16 ONNX, "int8": Q/DQ ONNX}``) with whatever TensorRT is
    installed; none, with the reason, otherwise."""
    out.say("== 5. build TensorRT engines (FP16, INT8)")
    try:
        backend = choose()
    except NoBackendError as exc:
        out.say(f"skipping engines: {exc}")
        return []
    target_cc = DEMO_TARGET_CC if backend.is_rtx and not gpu_present() else ()
    if target_cc:
        out.say(f"no GPU here: {backend.name} builds ahead of time for compute capabilities {', '.join(target_cc)}")
    engines = []
    for precision, graph in graphs.items():
        options = BuildOptions(precision=precision, target_cc=target_cc)
        result = build_engine(graph, graph.with_suffix(".engine"), options, backend=backend, progress=progress)
        out.say(
            f"{result.path} ({human_bytes(result.size_bytes)}, {result.backend} {result.backend_version}) "
            f"in {result.build_seconds:.1f} s"
        )
        engines.append(result.path)
    return engines


def validate_and_bench_step(
    out: Messages, checkpoint: Path, artifacts: list[Path], engines: list[Path], directory: Path, threads: int
) -> tuple[Any, Any]:
    out.say("== 6. validate every artifact against the original on the digits test split")
    with ExitStack() as stack:
        reference = stack.enter_context(open_backend(checkpoint))
        opened = [stack.enter_context(open_backend(path)) for path in artifacts]
        for engine in engines:
            try:
                opened.append(stack.enter_context(open_backend(engine)))
            except ResnetDeployError as exc:
                out.say(f"not validating {engine.name}: {exc}")
        report = validate.validate(reference, opened)
        validate.write_report(report, directory / "validation.md")
        out.say(report.table())

        out.say(f"== 7. benchmark, batch 1 and 32, {threads} CPU threads")
        timings = bench.run_bench([reference, *opened], [1, 32], warmup=3, iters=15, threads=threads)
    write_bytes_atomic(directory / "bench.json", (json.dumps(timings.to_dict(), indent=1) + "\n").encode())
    out.say(timings.table())
    for warning in timings.warnings():
        out.warn(warning)
    return report, timings


def describe_files(run_dir: Path, checkpoint: Path, artifacts: list[Path], engines: list[Path]) -> list[str]:
    directory = run_dir.parent
    return [
        f"{run_dir}/  (the training run: {checkpoint.name} with its .json, log and state)",
        *map(str, artifacts),
        *(f"{engine}  (and {sidecar_path(engine).name}, its build record)" for engine in engines),
        f"{directory / 'calibration'}/  (the calibration cache: ranges and TensorRT .calib.cache)",
        str(directory / "validation.md"),
        str(directory / "bench.json"),
    ]


def run_demo(
    out: Messages,
    directory: Path,
    *,
    depth: int = 20,
    epochs: int | None = None,
    calib_images: int = 512,
    threads: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> DemoResult:
    """Train, export, calibrate, convert, build, validate and benchmark into ``directory``."""
    check_demo_depth(depth)  # every option is checked before the directory is touched
    run_dir = prepare_directory(directory, overwrite)
    trained = train_step(out, run_dir, depth, epochs, progress)
    onnx_path = export_step(out, trained.checkpoint, directory, trained.config.name)
    int8, cpu_int8 = calibrate_step(out, onnx_path, directory, calib_images)
    half = fp16_step(out, onnx_path)
    engines = engines_step(out, {"int8": int8, "fp16": half}, progress)
    artifacts = [onnx_path, int8, cpu_int8, half]
    report, timings = validate_and_bench_step(out, trained.checkpoint, artifacts, engines, directory, threads)
    files = describe_files(run_dir, trained.checkpoint, artifacts, engines)
    return DemoResult(directory, trained, artifacts, engines, report, timings, files)
