"""What machine this is: the CPU a measurement ran on, and whether an NVIDIA GPU is present."""

from __future__ import annotations

import platform
import sys
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13"); platform's vaguer answer where /proc/cpuinfo is absent."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_present() -> bool:
    """An NVIDIA GPU with its driver loaded (Linux: the driver lists it in /proc); Windows: assumed."""
    if sys.platform.startswith("linux"):
        gpus = Path("/proc/driver/nvidia/gpus")
        return gpus.is_dir() and any(gpus.iterdir())
    return True  # Windows RTX PCs: let TensorRT-RTX find it
