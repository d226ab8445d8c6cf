"""What machine this is: the CPU a measurement ran on, and its NVIDIA driver and GPUs."""

from __future__ import annotations

import ctypes
import platform
import sys
from pathlib import Path
from typing import Any

DRIVER_LIBRARIES = (
    ("nvcuda.dll",)
    if sys.platform == "win32"
    else (
        "libcuda.so.1",  # the loader's path, ld.so.conf.d included
        "/usr/lib/aarch64-linux-gnu/nvidia/libcuda.so.1",  # JetPack 6 (L4T r36)
        "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1",  # JetPack 4/5
        "/usr/lib/wsl/lib/libcuda.so.1",  # WSL2
    )
)


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


def _libcuda() -> Any:
    """The NVIDIA driver's CUDA library, initialised (cuInit answers 100 without a device); None without one."""
    for name in DRIVER_LIBRARIES:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.cuInit.argtypes, lib.cuInit.restype = [ctypes.c_uint], ctypes.c_int
        lib.cuInit(0)
        return lib
    return None


def driver_cuda_version() -> int | None:
    """The CUDA version the NVIDIA driver supports (12040 for 12.4), from libcuda's cuDriverGetVersion,
    without Python bindings; None when no driver library loads."""
    lib = _libcuda()
    version = ctypes.c_int(0)
    if lib is None or lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return version.value


def gpu_count() -> int:
    """CUDA devices the driver sees (0 without a driver)."""
    lib = _libcuda()
    count = ctypes.c_int(0)
    return count.value if lib is not None and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0


def gpu_present() -> bool:
    """An NVIDIA GPU with its driver loaded. Discrete GPUs on Linux are listed in /proc by the driver;
    Jetson's integrated GPU (nvgpu), WSL2 and some containers have no such entry: the driver is asked."""
    if sys.platform.startswith("linux"):
        gpus = Path("/proc/driver/nvidia/gpus")
        return (gpus.is_dir() and any(gpus.iterdir())) or gpu_count() > 0
    return True  # Windows RTX PCs: let TensorRT-RTX find it
