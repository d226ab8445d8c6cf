"""A CUDA kernel compiled for the GPU at hand, as the GPU tests' stand-in engines launch it.

The image is a cubin for the device's own architecture (``sm_XY``), which the driver loads as it is:
PTX (``compute_XY``) would be JIT-compiled by the driver, which refuses PTX from an NVRTC newer than
itself (``CUDA_ERROR_UNSUPPORTED_PTX_VERSION``). NVIDIA's cuda-python examples do the same. Compiling
needs NVRTC only, no GPU and no driver: the CPU tests check the image this returns.
"""

from __future__ import annotations

from typing import Any


class CompileError(AssertionError):
    """NVRTC refused the source; the message carries its log."""


def check(result: Any, what: str) -> Any:
    """cuda-python's ``(error, value...)`` tuples: the value(s), or an assertion naming the call."""
    error, *values = result if isinstance(result, tuple) else (result,)
    assert int(error) == 0, f"{what}: {error}"
    return values[0] if len(values) == 1 else values


def compile_cubin(source: bytes, name: bytes, major: int, minor: int) -> bytes:
    """``source`` compiled by NVRTC into a cubin for compute capability ``major.minor``."""
    from cuda.bindings import nvrtc

    program = check(nvrtc.nvrtcCreateProgram(source, name, 0, [], []), "nvrtcCreateProgram")
    try:
        options = [f"--gpu-architecture=sm_{major}{minor}".encode()]
        (error,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if int(error) != 0:
            log = b" " * check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
            check(nvrtc.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            raise CompileError(f"nvrtcCompileProgram: {error}\n{log.decode(errors='replace').strip()}")
        cubin = b" " * check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(program)
