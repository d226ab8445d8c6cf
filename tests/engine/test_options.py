"""Build options and backend choice: parsed and refused before any work (no TensorRT needed)."""

from __future__ import annotations

import pytest

from resnet_deploy.engine import backends
from resnet_deploy.engine.options import (
    BatchProfile,
    BuildOptionError,
    BuildOptions,
    check_combination,
    parse_batch,
    parse_target_cc,
    resolve_batch,
)


def test_batch_profiles() -> None:
    assert parse_batch("1:8:32") == BatchProfile(1, 8, 32)
    assert parse_batch("4") == BatchProfile(4, 4, 4)
    for bad, message in [("8:4:32", "min <= opt <= max"), ("0:1:2", "start at 1"), ("1:8", "N or MIN:OPT:MAX")]:
        with pytest.raises(BuildOptionError, match=message):
            parse_batch(bad)
    assert resolve_batch(None, -1) == BatchProfile(1, 8, 32)  # TensorRT's -1: a dynamic dimension
    assert resolve_batch(None, 4) == BatchProfile(4, 4, 4)
    with pytest.raises(BuildOptionError, match="static batch of 4, so --batch 1:8:32 cannot be built"):
        resolve_batch(BatchProfile(1, 8, 32), 4)


def test_target_compute_capabilities() -> None:
    assert parse_target_cc("8.6, sm89,8.6,120") == ("8.6", "8.9", "12.0")
    with pytest.raises(BuildOptionError, match=r"'9\.0' is not a TensorRT-RTX target"):
        parse_target_cc("9.0")


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("tensorrt-rtx", BuildOptions(dla_core=0), "TensorRT-RTX has no DLA"),
        ("tensorrt", BuildOptions(gpu_fallback=True), "only applies with --dla-core"),
        ("tensorrt", BuildOptions(target_cc=("8.6",)), "--target-cc is for TensorRT-RTX"),
        ("tensorrt", BuildOptions(precision="fp16", implicit=True), "--implicit goes with --int8"),
        ("tensorrt", BuildOptions(precision="int8", implicit=True), "--implicit needs --calib-cache"),
        ("tensorrt", BuildOptions(calib_cache="x.cache"), "--calib-cache is for --implicit"),
        ("tensorrt", BuildOptions(builder_opt_level=7), "0..5"),
        ("tensorrt-rtx", BuildOptions(version_compatible=True), "TensorRT-RTX has no lean runtime"),
    ],
)
def test_contradictory_options(backend, options, message) -> None:
    with pytest.raises(BuildOptionError, match=message):
        check_combination(options, backend)


def test_no_backend_says_how_to_get_each(monkeypatch) -> None:
    monkeypatch.setattr(backends, "_import", lambda name: None)
    with pytest.raises(backends.NoBackendError) as info:
        backends.choose()
    message = str(info.value)
    assert "JetPack" in message and "pypi.nvidia.com" in message and 'pip install "resnet-deploy[rtx]"' in message
    with pytest.raises(backends.NoBackendError, match="--backend tensorrt is not installed"):
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

    from resnet_deploy.engine.network import EngineBuildError
    from resnet_deploy.engine.progress import cancel_on_interrupt

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
