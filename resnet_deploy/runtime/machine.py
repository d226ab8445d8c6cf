"""What machine this is: the CPU a measurement ran on, and its NVIDIA driver and GPUs."""

from __future__ import annotations

import ctypes
import os
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


def cuda_version_text(version: int) -> str:
    """12040 -> "12.4", as cuDriverGetVersion and cudaRuntimeGetVersion encode it."""
    return f"{version // 1000}.{version % 1000 // 10}"


def no_gpu_reason() -> str | None:
    """Why no NVIDIA GPU can be used here, saying what to do: no driver at all, or a driver that sees no
    GPU; None when the driver sees one (a driver too old for some CUDA bindings is the caller's to name)."""
    version = driver_cuda_version()
    return describe_no_gpu(version, gpu_count() if version is not None else 0)


def describe_no_gpu(driver_version: int | None, gpus: int) -> str | None:
    """``no_gpu_reason`` from what was found: the driver's CUDA version (None: no driver) and its GPUs."""
    if driver_version is None:
        return (
            "no NVIDIA driver is installed (libcuda does not load): this needs a machine with an NVIDIA GPU "
            "and its driver"
        )
    if gpus == 0:
        return (
            f"the NVIDIA driver (CUDA {cuda_version_text(driver_version)}) is installed but sees no GPU: check "
            "CUDA_VISIBLE_DEVICES, or that the GPU is passed into the container (docker run --gpus all)"
        )
    return None


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


# instruction sets that decide INT8/BF16 CPU speed, as /proc/cpuinfo names them (x86, then ARM)
ISA_NAMES = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "asimd": "NEON",
    "asimddp": "NEON dot product",
    "i8mm": "I8MM",
    "sve": "SVE",
}
ISA_FLAGS = tuple(ISA_NAMES)


def cpu_flags() -> list[str]:
    """The ``ISA_FLAGS`` this CPU has (from /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):  # x86, ARM
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in ISA_FLAGS if flag in have]
    except OSError:
        pass
    return []


def describe_isa(isa: list[str]) -> str:
    """``AVX2, FMA, no VNNI``: the flags by their usual names; an AVX2 CPU without VNNI says so (INT8 is slower)."""
    names = [ISA_NAMES.get(flag, flag) for flag in isa]
    if "avx2" in isa and not {"avx512_vnni", "avx_vnni"} & set(isa):
        names.append("no VNNI")
    return ", ".join(names)


def cpu_kind(isa: list[str]) -> str:
    """The kind of CPU, for naming its benchmark results: amx, avx512-vnni, avx-vnni, avx2, neon-dot or other
    (the best INT8 instructions it has)."""
    for flag, kind in (
        ("amx_int8", "amx"),
        ("avx512_vnni", "avx512-vnni"),
        ("avx_vnni", "avx-vnni"),
        ("avx2", "avx2"),
        ("asimddp", "neon-dot"),
    ):
        if flag in isa:
            return kind
    return "other"


def describe_host() -> dict[str, Any]:
    """The CPU a measurement ran on, for its report: name, instruction sets (flags, their usual names, the
    kind), cores, OS and Python. Reports add their runtimes' versions."""
    isa = cpu_flags()
    return {
        "cpu": cpu_name(),
        "isa": isa,
        "kind": cpu_kind(isa),
        "instruction_sets": describe_isa(isa),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def host_line(m: dict[str, Any]) -> str:
    """``AMD EPYC (AVX2, FMA, ...), 2 cores, Linux 6.1, Python 3.11.7``: a :func:`describe_host` in one line."""
    isa = f" ({m['instruction_sets']})" if m.get("instruction_sets") else ""
    system = f", {m['os']}" if m.get("os") else ""
    python = f", Python {m['python']}" if m.get("python") else ""
    return f"{m['cpu']}{isa}, {m['cores']} cores{system}{python}"
