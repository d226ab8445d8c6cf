"""The names of every file resnet-deploy writes, in one place.

A plan asks here where each output goes when the user named none (``r20.onnx`` -> ``r20.int8.onnx``),
and the file-safety checks ask which file travels with which (``model.pt`` -> ``model.pt.json``).
Renaming an artifact is an edit to this module alone.

    MODEL.onnx              export of a checkpoint or a --depth model (``exported``)
    MODEL.fp16.onnx         FP16 twin (``fp16_twin``)
    MODEL.framesWxH.onnx    preprocessing inside, for W x H uint8 frames (``frames_twin``; ``-float32``: float32 frames)
    MODEL.int8.onnx         INT8 Q/DQ for TensorRT; MODEL.cpu.int8.onnx for ONNX Runtime (``int8_twin``)
    MODEL.qat.int8.onnx     INT8 Q/DQ for TensorRT after quantization-aware training (``qat_twin``), and
      + .qat-state.pt       its resumable fine-tuning state while it runs
    MODEL[.prec].engine     engine beside the ONNX it is built from (``engine_beside``), its
      + .engine.json        sidecar (``json_beside``)
    RUN/model.pt(.json), RUN/train_state.pt, RUN/log.csv, RUN/log.json   a training run (``RUN_FILES``)
"""

from __future__ import annotations

import os
from pathlib import Path

# Files that travel with a file: reading or writing the first means reading or writing the second.
_COMPANIONS: dict[str, str] = {".pt": "metadata", ".pth": "metadata", ".engine": "sidecar", ".plan": "sidecar"}

# A training run directory
MODEL_FILE = "model.pt"
STATE_FILE = "train_state.pt"
LOCK_FILE = ".train.lock"
LOG_FILES = ("log.csv", "log.json")
RUN_FILES = (MODEL_FILE, MODEL_FILE + ".json", STATE_FILE, *LOG_FILES)
RUNS_DIR = Path("runs")

DEMO_DIR = Path("demo-out")
DEMO_MARKER = ".resnet-deploy-demo"
PRECISION_TAGS = (".fp16", ".int8")  # what a twin's name adds to its source's


def json_beside(path: str | os.PathLike[str]) -> Path:
    """``model.pt`` -> ``model.pt.json``, ``r20.engine`` -> ``r20.engine.json``: the one naming rule
    for checkpoint metadata and engine sidecars."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def companion(path: Path) -> tuple[Path, str] | None:
    """The file that travels with ``path`` (``model.pt`` -> ``model.pt.json``) and what it is."""
    what = _COMPANIONS.get(path.suffix.lower())
    return (json_beside(path), what) if what else None


def model_stem(path: str | os.PathLike[str]) -> str:
    """``r20.int8.onnx`` -> ``r20``: the model a file is a form of."""
    name = Path(path).name.removesuffix(".onnx")
    for tag in PRECISION_TAGS:
        name = name.removesuffix(tag)
    return name


def exported(name: str, directory: str | os.PathLike[str] = ".") -> Path:
    """Where a model called ``name`` (``resnet20``, or a checkpoint's stem) is exported to."""
    return Path(directory) / f"{name}.onnx"


def export_beside(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str]) -> Path:
    """Where a checkpoint given to a command that needs an ONNX is exported: beside ``output``, named
    for the checkpoint (``calibrate runs/r20/model.pt`` -> ``runs/r20/model.onnx``)."""
    return Path(output).with_name(Path(checkpoint).stem + ".onnx")


def fp16_twin(onnx: str | os.PathLike[str]) -> Path:
    """``r20.onnx`` -> ``r20.fp16.onnx``."""
    return Path(str(Path(onnx).with_suffix("")) + ".fp16.onnx")


def frames_twin(onnx: str | os.PathLike[str], width: int, height: int, dtype: str = "uint8") -> Path:
    """``r50.onnx`` -> ``r50.frames1280x720.onnx``: the model with its preprocessing inside, for WxH frames
    (``r50.frames1280x720-float32.onnx`` for float32 frames)."""
    kind = "" if dtype == "uint8" else f"-{dtype}"
    return Path(str(Path(onnx).with_suffix("")) + f".frames{width}x{height}{kind}.onnx")


def int8_twin(model: str | os.PathLike[str], target: str = "tensorrt") -> Path:
    """``r20.onnx`` (or ``r20.pt``) -> ``r20.int8.onnx``; ``r20.cpu.int8.onnx`` for ONNX Runtime's CPU form."""
    suffix = ".int8.onnx" if target == "tensorrt" else ".cpu.int8.onnx"
    return Path(str(Path(model).with_suffix("")) + suffix)


def qat_twin(model: str | os.PathLike[str]) -> Path:
    """``r20.onnx`` (or ``r20.pt``) -> ``r20.qat.int8.onnx``: fine-tuned INT8 Q/DQ for TensorRT."""
    return Path(str(Path(model).with_suffix("")) + ".qat.int8.onnx")


def engine_suffix(precision: str) -> str:
    return ".engine" if precision == "fp32" else f".{precision}.engine"


def engine_beside(onnx: str | os.PathLike[str], precision: str) -> Path:
    """``r20.onnx`` (or its ``.fp16`` / ``.int8`` twin) -> ``r20.engine`` for FP32, ``r20.int8.engine``..."""
    return Path(onnx).with_name(model_stem(onnx) + engine_suffix(precision))


def engine_of_model(stem: str, directory: str | os.PathLike[str], precision: str) -> Path:
    """The engine of a checkpoint (``stem`` of ``runs/r20/model.pt`` in its directory) or a ``--depth`` model."""
    return Path(directory) / f"{stem}{engine_suffix(precision)}"


def engine_twin(engine: Path, precision: str) -> Path:
    """Where the FP16 / INT8 ONNX built on the way goes: beside the engine, named for its precision
    (r20.engine or r20.fp16.engine -> r20.fp16.onnx), so it is never the FP32 ONNX it came from."""
    tag = "fp16" if precision == "fp16" else "int8"
    stem = engine.name.rsplit(".", 1)[0] if engine.suffix else engine.name
    return engine.with_name(stem + ("" if stem.endswith(f".{tag}") else f".{tag}") + ".onnx")


def run_dir(model_name: str, data: str) -> Path:
    """A training run's default directory: ``runs/resnet20-digits``."""
    return RUNS_DIR / f"{model_name}-{data.split(':')[0]}"


def demo_files(directory: Path, name: str) -> dict[str, Path]:
    """What the demo writes into ``directory`` for a model called ``name``."""
    onnx = exported(name, directory)
    int8, half = int8_twin(onnx), fp16_twin(onnx)
    return {
        "run": directory / "train",
        "onnx": onnx,
        "int8": int8,
        "cpu_int8": int8_twin(onnx, "cpu"),
        "fp16": half,
        "int8_engine": int8.with_suffix(".engine"),
        "fp16_engine": half.with_suffix(".engine"),
        "calibration": directory / "calibration",
        "validation": directory / "validation.md",
        "bench": directory / "bench.json",
        "marker": directory / DEMO_MARKER,
    }
