"""The GPU tests' kernel compiles on any machine with NVRTC, into a cubin the driver loads as it is."""

from __future__ import annotations

import pytest

from tests.cuda_kernel import CompileError, compile_cubin
from tests.runtime.test_runner_gpu import KERNEL

pytest.importorskip("cuda.bindings.nvrtc")


@pytest.mark.parametrize("capability", [(7, 5), (8, 6), (9, 0)])
def test_the_kernel_is_a_cubin_for_the_devices_own_architecture(capability: tuple[int, int]) -> None:
    """Not PTX: a driver older than NVRTC refuses its PTX (CUDA_ERROR_UNSUPPORTED_PTX_VERSION)."""
    try:
        image = compile_cubin(KERNEL, b"linear.cu", *capability)
    except AssertionError as exc:
        if "nvrtcCreateProgram" in str(exc) or "NVRTC_ERROR_BUILTIN" in str(exc):
            pytest.skip(f"NVRTC does not run here: {exc}")
        raise
    assert image[:4] == b"\x7fELF" and b".version" not in image[:4096]
    assert int.from_bytes(image[18:20], "little") == 190  # e_machine: EM_CUDA


def test_a_kernel_that_does_not_compile_shows_nvrtcs_log() -> None:
    with pytest.raises(CompileError, match=r"NVRTC_ERROR_COMPILATION[\s\S]*undefined_name"):
        compile_cubin(b'extern "C" __global__ void k(float* x) { x[0] = undefined_name; }', b"bad.cu", 9, 0)
