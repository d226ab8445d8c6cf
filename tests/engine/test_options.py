"""Build options and backend choice: parsed and refused before any work (no TensorRT needed)."""

from __future__ import annotations

import pytest

from resnet_deploy.engine.options import (
    BatchProfile,
    BuildOptionError,
    BuildOptions,
    check_combination,
    parse_batch,
    parse_target_cc,
    resolve_batch,
)
from resnet_deploy.trt import flavours as backends


def test_batch_profiles() -> None:
    assert parse_batch("1:8:32") == BatchProfile(1, 8, 32)
    assert parse_batch("4") == BatchProfile(4, 4, 4)
    for bad, message in [("8:4:32", "min <= opt <= max"), ("0:1:2", "start at 1"), ("1:8", "N or MIN:OPT:MAX")]:
        with pytest.raises(BuildOptionError, match=message):
            parse_batch(bad)
    assert resolve_batch(None, -1) == BatchProfile(1, 8, 32)  # TensorRT's -1: a dynamic dimension
    assert resolve_batch(None, 4) == BatchProfile(4, 4, 4)
    assert resolve_batch(None, -1, static=True) == BatchProfile(8, 8, 8)  # DLA: the default profile's opt
    assert resolve_batch(BatchProfile(2, 2, 2), -1, static=True) == BatchProfile(2, 2, 2)
    with pytest.raises(BuildOptionError, match="static batch of 4, so `batch=1:8:32` cannot be built"):
        resolve_batch(BatchProfile(1, 8, 32), 4)


def test_target_compute_capabilities() -> None:
    assert parse_target_cc("8.6, sm89,8.6,120") == ("8.6", "8.9", "12.0")
    with pytest.raises(BuildOptionError, match=r"'9\.0' is not a TensorRT-RTX target"):
        parse_target_cc("9.0")


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("rtx", BuildOptions(dla_core=0, precision="fp16"), "TensorRT-RTX has no DLA"),
        ("10.3", BuildOptions(gpu_fallback=True), "only applies with `dla_core=N`"),
        ("10.3", BuildOptions(target_cc=("8.6",)), "`target_cc` is for TensorRT-RTX"),
        ("10.3", BuildOptions(precision="fp16", implicit=True), "`implicit` goes with `precision=int8`"),
        ("10.3", BuildOptions(precision="int8", implicit=True), "`implicit` needs `calib_cache=FILE`"),
        ("10.3", BuildOptions(calib_cache="x.cache"), "`calib_cache` is for `implicit`"),
        ("10.3", BuildOptions(builder_opt_level=7), "0..5"),
        ("10.3", BuildOptions(workspace_mib=0), "at least 1 MiB"),
        ("10.3", BuildOptions(dla_core=0), "`dla_core` runs FP16 or INT8 only"),
        ("10.3", BuildOptions(dla_core=0, precision="best"), "INT8 from a calibration cache only"),
        ("10.3", BuildOptions(dla_core=0, precision="fp16", batch=BatchProfile(1, 8, 32)), "one static batch"),
        ("10.3", BuildOptions(hardware_compat="same-cc"), r"same-cc` needs TensorRT >= 10\.9; this is tensorrt 10\.3"),
        ("10.3", BuildOptions(), "builds for the GPU it runs on, and this machine has none"),
        ("rtx", BuildOptions(version_compatible=True), "TensorRT-RTX has no lean runtime"),
        ("rtx", BuildOptions(), "no NVIDIA GPU here to build for; name the target GPUs with `target_cc`"),
    ],
)
def test_contradictory_options(backend, options, message, monkeypatch) -> None:
    from resnet_deploy.runtime import machine
    from tests.trt_standin import standin, standin_rtx

    module = standin_rtx() if backend == "rtx" else standin(backend)
    flavour = backends.EngineBackend("tensorrt-rtx" if backend == "rtx" else "tensorrt", module, module.__version__)
    monkeypatch.setattr(machine, "gpu_present", lambda: False)  # this machine: no GPU
    with pytest.raises(BuildOptionError, match=message):
        check_combination(options, flavour)


def test_no_backend_says_how_to_get_each(monkeypatch) -> None:
    monkeypatch.setattr(backends, "_import", lambda name: None)
    with pytest.raises(backends.NoBackendError) as info:
        backends.choose()
    message = str(info.value)
    assert "JetPack" in message and "pypi.nvidia.com" in message and 'pip install "resnet-deploy[rtx]"' in message
    with pytest.raises(backends.NoBackendError, match="`backend=tensorrt` is not installed"):
        backends.choose("tensorrt")


def test_stub_only_tensorrt_is_not_a_backend(monkeypatch) -> None:
    import types

    bare = types.ModuleType("tensorrt")  # what tensorrt-stubs leaves importable
    monkeypatch.setattr(backends.importlib, "import_module", lambda name: bare)
    assert backends._import("tensorrt") is None


def test_versions() -> None:
    assert backends.version_tuple("10.3.0.26") == (10, 3, 0, 26)
    assert backends.version_tuple("8.6.1.post1") == (8, 6, 1, 1)


def test_ctrl_c_during_a_build_is_an_interrupt_not_a_build_failure() -> None:
    import os
    import signal
    from types import SimpleNamespace

    from resnet_deploy.engine.progress import cancel_on_interrupt
    from resnet_deploy.errors import EngineBuildError

    monitor = SimpleNamespace(cancelled=False)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with cancel_on_interrupt(monitor):
            os.kill(os.getpid(), signal.SIGINT)  # handled: asks TensorRT to stop at its next step
            assert monitor.cancelled
            raise EngineBuildError("failed to build the engine")  # what TensorRT's cancelled build gives
    assert signal.getsignal(signal.SIGINT) is before
    with cancel_on_interrupt(SimpleNamespace(cancelled=False)):
        pass  # no interrupt: nothing raised


def test_options_as_the_flags_that_rebuild_the_engine() -> None:
    options = BuildOptions(
        precision="int8",
        batch=BatchProfile(1, 8, 32),
        target_cc=("8.6", "8.9"),
        hardware_compat="ampere+",
        builder_opt_level=5,
        workspace_mib=512,
        version_compatible=True,
    )
    assert options.cli_args() == [
        "--int8",
        "--batch",
        "1:8:32",
        "--workspace",
        "512",
        "--builder-opt-level",
        "5",
        "--target-cc",
        "8.6,8.9",
        "--version-compatible",
        "--hardware-compat",
        "ampere+",
    ]
    assert BuildOptions().cli_args() == []


def test_a_gpu_is_found_where_the_driver_lists_none_in_proc(monkeypatch) -> None:
    """Jetson's integrated GPU (nvgpu) and WSL2 have no /proc/driver/nvidia: the driver is asked."""
    import ctypes

    from resnet_deploy.runtime import machine

    class LibCuda:
        def __init__(self, devices: int) -> None:
            self.devices = devices

        def cuDeviceGetCount(self, count) -> int:
            ctypes.cast(count, ctypes.POINTER(ctypes.c_int))[0] = self.devices
            return 0

    monkeypatch.setattr(machine, "Path", lambda path: __import__("pathlib").Path("/nonexistent"))
    monkeypatch.setattr(machine, "_libcuda", lambda: LibCuda(1))
    assert machine.gpu_count() == 1 and machine.gpu_present()
    monkeypatch.setattr(machine, "_libcuda", lambda: LibCuda(0))
    assert not machine.gpu_present()
    monkeypatch.setattr(machine, "_libcuda", lambda: None)  # no driver at all
    assert not machine.gpu_present() and machine.driver_cuda_version() is None
