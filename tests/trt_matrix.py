"""Every ``build-engine`` option against every TensorRT release: what happens, for the tests and the README.

A column is a TensorRT release: the strict stand-ins of ``tests/trt_standin.py`` for full TensorRT
8.6 (on a Jetson with two DLA cores, as JetPack 6.0), 10.3 (the same, JetPack 6.1/6.2), 10.13,
10.16 and 11.1 (a data-centre GPU), and the real installed TensorRT-RTX building ahead of time for
SM89. A row is an option combination. ``run_case`` builds ResNet-20 through ``build_engine`` and
returns a ``Cell``: built (with what the plan records: typing, flags, DLA core...), or refused (the
one-line message), or cancelled. ``tests/engine/test_trt_conformance.py`` pins every cell;
``scripts/trt_support_table.py`` writes the same cells into the README.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fake_cuda import FakeCudart
from tests.trt_standin import JETSON, PLAN_MAGIC, RELEASES, Machine, standin

COLUMNS = (*RELEASES, "rtx")
COLUMN_TITLES = {
    "8.6": "TensorRT 8.6 (JetPack 6.0)",
    "10.3": "10.3 (JetPack 6.1/6.2)",
    "10.13": "10.13",
    "10.16": "10.16",
    "11.1": "11.1",
    "rtx": "TensorRT-RTX 1.7",
}
RTX_TARGETS = ("8.9",)


@dataclass(frozen=True)
class Case:
    key: str
    title: str  # the build-engine options, as the README shows them
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    interrupt: bool = False  # Ctrl-C while TensorRT builds


CASES = (
    Case("fp32", "FP32 (default)"),
    Case("fp16", "`--fp16`", {"precision": "fp16"}),
    Case("int8", "`--int8` (Q/DQ)", {"precision": "int8"}),
    Case("best", "`--best`", {"precision": "best"}),
    Case("implicit", "`--int8 --implicit --calib-cache C`", {"precision": "int8", "implicit": True}),
    Case(
        "dla-fp16", "`--fp16 --dla-core 0 --gpu-fallback`", {"precision": "fp16", "dla_core": 0, "gpu_fallback": True}
    ),
    Case(
        "dla-int8",
        "`--int8 --implicit --calib-cache C --dla-core 1`",
        {"precision": "int8", "implicit": True, "dla_core": 1},
    ),
    Case("dla-qdq", "`--int8 --dla-core 0` (Q/DQ)", {"precision": "int8", "dla_core": 0}),
    Case("timing", "`--timing-cache F`", {"timing_cache": True}),
    Case("vc", "`--version-compatible`", {"version_compatible": True}),
    Case("ampere", "`--hardware-compat ampere+`", {"hardware_compat": "ampere+"}),
    Case("samecc", "`--hardware-compat same-cc`", {"hardware_compat": "same-cc"}),
    Case("opt", "`--builder-opt-level 5`", {"builder_opt_level": 5}),
    Case("workspace", "`--workspace 256`", {"workspace_mib": 256}),
    Case("progress", "progress bars (default)", progress=True),
    Case("no-progress", "`--no-progress`"),
    Case("cancel", "Ctrl-C while building", progress=True, interrupt=True),
)


@dataclass
class Inputs:
    """What the builds read: the FP32 export, its Q/DQ twin and an EntropyCalibration2 cache."""

    fp32: Path
    qdq: Path
    calib_cache: Path


@dataclass
class Cell:
    status: str  # "built", "refused" or "cancelled"
    message: str = ""  # the refusal, one line
    plan: dict[str, Any] = field(default_factory=dict)  # what the stand-in's plan records
    sidecar: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)  # files left in the output directory
    note: str = ""  # what else the README says about it (progress bars, how Ctrl-C stopped it)

    def summary(self) -> str:
        """The README's words for this cell."""
        if self.status == "refused":
            return "refused"
        if self.status == "cancelled":
            return ("cancelled, nothing written" if not self.written else "cancelled, FILES LEFT") + self.note
        flags = self.sidecar["builder_flags"]
        typing = "weakly typed, flags " + "+".join(flags) if flags else "weakly typed, no flag"
        notes = ["strongly typed" if self.sidecar["strongly_typed"] else typing]
        dla = self.plan.get("dla_core")
        if dla is not None:
            notes.append(f"on DLA {dla}")
        elif "dla_core" in self.sidecar.get("targets", {}):
            notes.append("GPU fallback")
        return "yes, " + ", ".join(notes) + self.note


@contextmanager
def environment(column: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The backend module for ``column``, installed as ``tensorrt`` on a machine with a GPU."""
    from resnet_deploy.runtime import cuda_memory, machine

    if column == "rtx":
        import tensorrt_rtx

        yield tensorrt_rtx
        return
    jetson = column in ("8.6", "10.3")
    spec = Machine(**JETSON) if jetson else Machine()
    major, minor = spec.compute_capability.split(".")
    spec.cuda = FakeCudart(gpu=spec.gpu, compute_capability=(int(major), int(minor)))
    module = standin(column, spec)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "tensorrt", module)
        patch.setattr(machine, "gpu_present", lambda: True)
        patch.setattr(cuda_memory, "_import_cuda_python", lambda: spec.cuda)
        patch.setattr(cuda_memory, "driver_cuda_version", lambda: None)
        yield module


def case_options(column: str, case: Case, inputs: Inputs, out_dir: Path) -> Any:
    from resnet_deploy.engine.options import BuildOptions

    options = dict(case.options)
    if options.get("implicit"):
        options["calib_cache"] = str(inputs.calib_cache)
    if options.pop("timing_cache", False):
        options["timing_cache"] = str(out_dir / "timing.cache")
    if column == "rtx":
        options["target_cc"] = RTX_TARGETS
    return BuildOptions(**options)


def case_onnx(case: Case, inputs: Inputs) -> Path:
    explicit_int8 = case.options.get("precision") in ("int8", "best") and not case.options.get("implicit")
    return inputs.qdq if explicit_int8 else inputs.fp32


@contextmanager
def interrupting_monitor(monkeypatch: pytest.MonkeyPatch, module: Any) -> Iterator[None]:
    """Ctrl-C at TensorRT's first progress step (or, without a monitor, while it builds)."""
    from resnet_deploy.engine import progress

    original = progress.make_monitor

    def make(backend: Any, out: Any) -> Any:
        monitor = original(backend, out)
        if monitor is None:
            module._sd_sim.machine.interrupt_at_step = 0  # the stand-in raises SIGINT mid-build
            return None

        class Interrupting(type(monitor)):  # type: ignore[misc]
            def step_complete(self, phase_name: str, step: int) -> bool:
                signal.raise_signal(signal.SIGINT)
                return super().step_complete(phase_name, step)

        return Interrupting()

    # A shell starts background jobs with SIGINT ignored (`cmd &`, nohup, some CI runners): then a
    # raised SIGINT would do nothing. A terminal's Ctrl-C is what is simulated, so install its handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(progress, "make_monitor", make)
            yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_case(column: str, case: Case, inputs: Inputs, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Cell:
    from resnet_deploy.errors import ResnetDeployError
    from resnet_deploy.pipeline import build_engine
    from resnet_deploy.quantize.options import CalibrationOptions
    from resnet_deploy.trt.flavours import choose

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"r20.{case.key}.engine"
    with environment(column, monkeypatch) as module:
        backend = choose("tensorrt-rtx" if column == "rtx" else "tensorrt")
        note = ""
        if case.progress and not backend.has_progress_monitor:
            note = ": at the build's end (no progress monitor)" if case.interrupt else "; no bars (no progress monitor)"
        try:
            options = case_options(column, case, inputs, out_dir)
            calibrate = CalibrationOptions(method="minmax", count=32, cache_dir=None)
            with interrupting_monitor(monkeypatch, module) if case.interrupt else nullcontext():
                build_engine(
                    case_onnx(case, inputs),
                    output,
                    options,
                    backend=backend,
                    calibration=calibrate,
                )
        except ResnetDeployError as exc:
            return Cell("refused", str(exc), written=_files(out_dir))
        except KeyboardInterrupt:
            return Cell("cancelled", written=_files(out_dir), note=note)
    data = output.read_bytes()
    plan = json.loads(data[len(PLAN_MAGIC) :]) if data.startswith(PLAN_MAGIC) else {}
    sidecar = json.loads(Path(f"{output}.json").read_text())
    return Cell("built", plan=plan, sidecar=sidecar, written=_files(out_dir), note=note)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def make_inputs(directory: Path) -> Inputs:
    """A ResNet-20 export, its TensorRT Q/DQ twin and its entropy calibration cache (ranges from 32 images)."""
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    source = open_model(depth=20)
    fp32 = directory / "r20.onnx"
    export_onnx(source.model, fp32, source.metadata, verify=False)
    qdq = calibrate_onnx(
        fp32,
        directory / "r20.int8.onnx",
        target="tensorrt",
        method="entropy",
        count=32,
        cache_dir=directory / "calibration",
    )
    (cache,) = (directory / "calibration").glob("*.calib.cache")
    return Inputs(fp32=fp32, qdq=qdq.path, calib_cache=cache)


def table(cells: dict[tuple[str, str], Cell]) -> str:
    """The README's option x release table, refusals as footnotes with their one-line messages."""
    notes: list[str] = []
    lines = [
        "| option | " + " | ".join(COLUMN_TITLES[c] for c in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for case in CASES:
        row = []
        for column in COLUMNS:
            cell = cells[(column, case.key)]
            text = cell.summary()
            if cell.status == "refused":
                message = _normalise(cell.message)
                if message not in notes:
                    notes.append(message)
                text += f" [{notes.index(message) + 1}]"
            row.append(text)
        lines.append(f"| {case.title} | " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"[{i}] {message}  " for i, message in enumerate(notes, 1)]
    return "\n".join(lines).rstrip() + "\n"


def _normalise(message: str) -> str:
    """A refusal as the README lists it once for every release that gives it: as `build-engine` prints it
    (flags, not the library's parameters), without this run's paths and with the release it names as
    "this release"."""
    import re

    from resnet_deploy.cli import main
    from resnet_deploy.cli.flags import render

    message = render(message, main.commands["build-engine"])
    message = re.sub(r"/\S+/(r20[\w.]*|calibration/\S+)", r"\1", message)
    return re.sub(r"this is tensorrt(-rtx)? \d+(\.\d+)*", "this is the installed release", message)
