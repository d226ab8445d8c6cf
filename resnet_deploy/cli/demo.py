"""``resnet-deploy demo``: the main job end to end on the embedded default, offline.

Train a CIFAR-style ResNet on the embedded digits with the paper's recipe, export the trained
checkpoint to ONNX (verified against PyTorch), calibrate INT8 for TensorRT and for the CPU, convert
to FP16, build FP16/INT8 engines with whatever TensorRT is installed (TensorRT-RTX ahead of time
when there is no GPU), validate every artifact that can run here against the original on the
digits test split, benchmark them side by side, and list every file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import click

from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter, human_bytes
from resnet_deploy.engine.sidecar import sidecar_path
from resnet_deploy.errors import OutputPathError, ResnetDeployError
from resnet_deploy.models.config import ARCHITECTURES
from resnet_deploy.pipeline import export_model
from resnet_deploy.training.log import describe_epoch

# TensorRT-RTX targets when there is no GPU to build for: RTX 30xx, 40xx, 50xx
DEMO_TARGET_CC = ("8.6", "8.9", "12.0")


def build_demo_engines(out: Reporter, artifacts: list[Path], directory: Path, progress: bool = False) -> list[Path]:
    """FP16 and INT8 engines with whatever TensorRT is installed; none (with the reason) otherwise."""
    from resnet_deploy.engine.backends import choose
    from resnet_deploy.engine.build import build_engine
    from resnet_deploy.engine.options import BuildOptions
    from resnet_deploy.errors import NoBackendError
    from resnet_deploy.machine import gpu_present

    try:
        backend = choose()
    except NoBackendError as exc:
        out.say(f"skipping engines: {exc}")
        return []
    target_cc = DEMO_TARGET_CC if backend.is_rtx and not gpu_present() else ()
    if target_cc:
        out.say(f"no GPU here: {backend.name} builds ahead of time for compute capabilities {', '.join(target_cc)}")
    engines = []
    for graph in artifacts:
        precision = {".fp16.onnx": "fp16", ".int8.onnx": "int8"}.get("".join(graph.suffixes[-2:]))
        if precision is None or graph.name.endswith(".cpu.int8.onnx"):
            continue
        result = build_engine(
            graph,
            graph.with_suffix(".engine"),
            BuildOptions(precision=precision, target_cc=target_cc),
            progress=progress,
        )
        out.say(
            f"{result.path} ({human_bytes(result.size_bytes)}, {result.backend} {result.backend_version}) "
            f"in {result.build_seconds:.1f} s"
        )
        engines.append(result.path)
    return engines


DEMO_MARKER = ".resnet-deploy-demo"


def _demo_owns(directory: Path) -> bool:
    """An --out the demo may replace: absent, empty, or a demo's (its marker)."""
    if not directory.is_dir():
        return not directory.exists()
    names = {p.name for p in directory.iterdir()}
    return not names or DEMO_MARKER in names


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="demo-out",
    show_default=True,
    help="Directory for every artifact the demo writes (a previous demo there is replaced).",
)
@click.option("--depth", type=int, default=20, show_default=True, help="CIFAR-family depth to train.")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the recipe's 20 on digits)."
)
@click.option("--calib-images", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars (none are drawn when stderr is not a terminal).")
@click.option("--overwrite", is_flag=True, help="Use an --out directory that holds files a demo did not write.")
@json_option
def demo(
    out_dir: str, depth: int, epochs: int | None, calib_images: int, no_progress: bool, overwrite: bool, as_json: bool
) -> None:
    """Run the pipeline end to end on the embedded digits: train, export, INT8, FP16, engines,
    validate, benchmark."""
    from resnet_deploy._io import write_bytes_atomic
    from resnet_deploy.bench import run_bench
    from resnet_deploy.engine.progress import draws_bars
    from resnet_deploy.fp16 import convert_to_fp16
    from resnet_deploy.quantize.calibrate import calibrate_onnx
    from resnet_deploy.runtime import open_backend
    from resnet_deploy.training.run_state import STATE_FILE
    from resnet_deploy.training.trainer import Trainer, TrainOptions
    from resnet_deploy.validate import validate, write_report

    out = Reporter(as_json)
    # Every option is checked before --out is touched: a refused demo leaves the previous one intact.
    cifar_depths = [d for d, (family, _, _) in ARCHITECTURES.items() if family == "cifar"]
    if depth not in cifar_depths:
        raise click.BadParameter(
            f"the demo trains a CIFAR-family ResNet on 32x32 digits: choose one of "
            f"{', '.join(map(str, cifar_depths))}, not {depth}",
            param_hint="--depth",
        )
    threads = os.cpu_count() or 1
    progress = draws_bars(not no_progress)  # only on a terminal: in a log file bars are kilobytes of escape codes
    directory = Path(out_dir)
    run_dir = directory / "train"
    if not (overwrite or _demo_owns(directory)):
        raise OutputPathError(
            f"{directory} holds files a demo did not write, and the demo replaces what is in its directory; "
            "choose another --out, or pass --overwrite"
        )
    if (run_dir / STATE_FILE).exists():
        if not (directory / DEMO_MARKER).exists():  # --overwrite replaces files, never deletes a training run
            raise OutputPathError(
                f"{run_dir} holds a training run the demo did not make (or an older version's demo: delete it "
                "yourself then); choose another --out"
            )
        shutil.rmtree(run_dir)  # the demo always starts fresh; use `train` for runs you keep
    directory.mkdir(parents=True, exist_ok=True)
    (directory / DEMO_MARKER).write_text("written by `resnet-deploy demo`: a later demo replaces this directory\n")
    start = time.perf_counter()

    out.say(f"== 1. train resnet{depth} on the embedded digits")
    trainer = Trainer(
        TrainOptions(depth=depth, data="digits", epochs=epochs),
        run_dir,
        on_info=out.say,
        on_epoch=lambda row: out.say(describe_epoch(row, trainer.plan.epochs if trainer.plan else 0)),
        progress=progress,
    )
    trained = trainer.run()

    out.say("== 2. export to ONNX and verify against PyTorch")
    exported = export_model(
        out,
        str(trained.checkpoint),
        str(directory / f"{trained.config.name}.onnx"),
        opset=None,
        static_batch=None,
        simplify=False,
        verify=True,
        tolerance=None,
        overwrite=True,  # --out is the demo's own directory (checked above): a previous demo there is replaced
    )
    onnx_path = exported.path
    stem = str(onnx_path.with_suffix(""))

    out.say("== 3. calibrate INT8 (TensorRT Q/DQ placement, and ONNX Runtime's CPU form)")
    artifacts = [onnx_path]
    for target, suffix in (("tensorrt", ".int8.onnx"), ("cpu", ".cpu.int8.onnx")):
        q = calibrate_onnx(
            onnx_path,
            stem + suffix,
            target=target,
            count=calib_images,
            cache_dir=directory / "calibration",
            warn=out.warn,
        )
        out.say(f"{target}: {q.path} ({q.method}, {q.images} images, {q.calibrate_seconds:.1f} s)")
        artifacts.append(q.path)

    out.say("== 4. convert to FP16 (float32 I/O), verify against FP32")
    half = convert_to_fp16(onnx_path, stem + ".fp16.onnx")
    out.say(f"{half.path}: max |err| {half.max_abs_error:.1e} vs FP32, top-1 agreement {half.top1_agreement:.0%}")
    artifacts.append(half.path)

    out.say("== 5. build TensorRT engines (FP16, INT8)")
    engines = build_demo_engines(out, artifacts, directory, progress)

    out.say("== 6. validate every artifact against the original on the digits test split")
    with ExitStack() as stack:
        reference = stack.enter_context(open_backend(trained.checkpoint))
        opened = [stack.enter_context(open_backend(path)) for path in artifacts]
        for engine in engines:
            try:
                opened.append(stack.enter_context(open_backend(engine)))
            except ResnetDeployError as exc:
                out.say(f"not validating {engine.name}: {exc}")
        report = validate(reference, opened)
        write_report(report, directory / "validation.md")
        out.say(report.table())

        out.say(f"== 7. benchmark, batch 1 and 32, {threads} CPU threads")
        bench_report = run_bench([reference, *opened], [1, 32], warmup=3, iters=15, threads=threads)
    write_bytes_atomic(directory / "bench.json", (json.dumps(bench_report.to_dict(), indent=1) + "\n").encode())
    out.say(bench_report.table())
    for warning in bench_report.warnings():
        out.warn(warning)
    total = time.perf_counter() - start
    out.say("files:")
    out.say(f"  {run_dir}/  (the training run: {trained.checkpoint.name} with its .json, log and state)")
    for path in artifacts:
        out.say(f"  {path}")
    for engine in engines:
        out.say(f"  {engine}  (and {sidecar_path(engine).name}, its build record)")
    out.say(f"  {directory / 'calibration'}/  (the calibration cache: ranges and TensorRT .calib.cache)")
    for path in [directory / "validation.md", directory / "bench.json"]:
        out.say(f"  {path}")
    out.say(f"demo finished in {total:.0f} s; artifacts and validation.md in {directory}/")
    out.result(
        {
            "ok": True,
            "model": trained.config.name,
            "epochs": trained.epochs,
            "checkpoint": str(trained.checkpoint),
            "validation": report.to_dict(),
            "engines": [str(e) for e in engines],
            "bench": bench_report.to_dict(),
            "out_dir": str(directory),
            "train_seconds": round(trained.seconds, 2),
            "seconds": round(total, 2),
        }
    )
