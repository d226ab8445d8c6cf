"""The full-TensorRT branches (8.6 / 10.x / 11.x, DLA), driven through stand-ins of the TensorRT module.

Full TensorRT cannot be installed here; these fakes have exactly the attributes that tell the
versions apart (builder precision flags, STRONGLY_TYPED, EXPLICIT_BATCH), so the choices our code
makes for each version are pinned. mypy checks the calls themselves against tensorrt-stubs.
"""

from __future__ import annotations

from enum import IntEnum
from types import SimpleNamespace

import pytest

from resnet_deploy.engine.backends import Backend
from resnet_deploy.engine.build import typing_mode
from resnet_deploy.engine.network import configure, network_flags
from resnet_deploy.engine.options import BatchProfile, BuildOptionError, BuildOptions


def fake_tensorrt(version: str, *, flags: bool, strongly_typed: bool, explicit_batch: bool) -> SimpleNamespace:
    creation = {"EXPLICIT_BATCH": 0} if explicit_batch else {}
    if strongly_typed:
        creation["STRONGLY_TYPED"] = 1
    builder_flags = {"GPU_FALLBACK": 10, "VERSION_COMPATIBLE": 11}
    if flags:
        builder_flags.update({"FP16": 0, "INT8": 1})
    return SimpleNamespace(
        __version__=version,
        NetworkDefinitionCreationFlag=IntEnum("NetworkDefinitionCreationFlag", creation, start=0)
        if creation
        else SimpleNamespace(),
        BuilderFlag=IntEnum("BuilderFlag", builder_flags),
        MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"),
        DeviceType=SimpleNamespace(DLA="dla", GPU="gpu"),
        HardwareCompatibilityLevel=SimpleNamespace(AMPERE_PLUS="ampere+", SAME_COMPUTE_CAPABILITY="same-cc"),
        Dims=tuple,
    )


TRT86 = Backend("tensorrt", fake_tensorrt("8.6.1", flags=True, strongly_typed=False, explicit_batch=True), "8.6.1")
TRT10 = Backend("tensorrt", fake_tensorrt("10.3.0", flags=True, strongly_typed=True, explicit_batch=True), "10.3.0")
TRT11 = Backend("tensorrt", fake_tensorrt("11.0.0", flags=False, strongly_typed=True, explicit_batch=False), "11.0.0")


@pytest.mark.parametrize(
    ("backend", "precision", "implicit", "expected"),
    [
        (TRT86, "fp16", False, (False, ("FP16",))),  # 8.6: no strongly typed networks, flags it is
        (TRT86, "int8", False, (False, ("INT8",))),
        (TRT10, "fp16", False, (True, ())),  # 10.x: strongly typed from the FP16 graph
        (TRT10, "int8", False, (True, ())),
        (TRT10, "best", False, (False, ("INT8", "FP16"))),  # best needs the flags
        (TRT10, "int8", True, (False, ("INT8",))),  # implicit INT8 from a calibration cache
        (TRT11, "best", False, (True, ())),  # 11.x: flags are gone, everything strongly typed
        (TRT11, "fp32", False, (True, ())),
    ],
)
def test_typing_mode_per_version(backend, precision, implicit, expected) -> None:
    assert typing_mode(backend, BuildOptions(precision=precision, implicit=implicit)) == expected


def test_network_flags_per_version() -> None:
    assert network_flags(TRT86, strongly_typed=False) == 1 << 0  # EXPLICIT_BATCH, required before 10
    assert network_flags(TRT10, strongly_typed=True) == 1 << 1  # STRONGLY_TYPED; EXPLICIT_BATCH is implied
    assert network_flags(TRT11, strongly_typed=True) == 1 << 1


class Recorder(SimpleNamespace):
    def __init__(self, **kw):
        super().__init__(flags=[], profiles=[], pools={}, **kw)

    def set_flag(self, flag):
        self.flags.append(flag.name)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)


def fake_builder(dla_cores: int) -> SimpleNamespace:
    class Profile:
        def set_shape(self, name, low, opt, high):
            self.shapes = (name, low, opt, high)

    config = Recorder()
    return SimpleNamespace(
        num_DLA_cores=dla_cores,
        create_builder_config=lambda: config,
        create_optimization_profile=Profile,
    )


NETWORK = SimpleNamespace(get_input=lambda i: SimpleNamespace(name="input", shape=(-1, 3, 224, 224)))


def test_configure_sets_profile_memory_flags_and_dla() -> None:
    options = BuildOptions(precision="int8", workspace_mib=512, builder_opt_level=5, dla_core=1, gpu_fallback=True)
    config = configure(TRT10, fake_builder(2), NETWORK, options, BatchProfile(1, 4, 8), weak_flags=("INT8",))
    assert config.profiles == [("input", (1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224))]
    assert config.pools == {"workspace": 512 << 20} and config.builder_optimization_level == 5
    assert config.flags == ["INT8", "GPU_FALLBACK"]
    assert (config.default_device_type, config.DLA_core) == ("dla", 1)


def test_dla_refused_where_there_is_none() -> None:
    with pytest.raises(BuildOptionError, match="this machine has no DLA"):
        configure(TRT10, fake_builder(0), NETWORK, BuildOptions(dla_core=0), BatchProfile(1, 1, 1))
    with pytest.raises(BuildOptionError, match=r"this machine has DLA cores 0\.\.1"):
        configure(TRT10, fake_builder(2), NETWORK, BuildOptions(dla_core=2), BatchProfile(1, 1, 1))


def test_implicit_int8_calibrator_is_refused_on_strongly_typed_only_versions(tmp_path) -> None:
    from resnet_deploy.engine.implicit_int8 import cache_calibrator

    with pytest.raises(BuildOptionError, match=r"--implicit needs TensorRT 8\.6-10\.x; tensorrt 11\.0\.0"):
        cache_calibrator(TRT11, tmp_path / "x.calib.cache")
    with pytest.raises(BuildOptionError, match="not found"):
        cache_calibrator(TRT10, tmp_path / "x.calib.cache")
    (tmp_path / "bad.cache").write_text("hello\n")
    with pytest.raises(BuildOptionError, match="is not a TensorRT calibration cache"):
        cache_calibrator(TRT10, tmp_path / "bad.cache")


def test_parser_error_location_on_every_version() -> None:
    from resnet_deploy.engine.network import _where

    modern = SimpleNamespace(node_name=lambda: "conv1", node_operator=lambda: "Conv", node=lambda: 3)
    old = SimpleNamespace(node=lambda: 3)  # TensorRT 8.6: no node_name/node_operator
    assert (_where(modern), _where(old), _where(SimpleNamespace(node=lambda: -1))) == (
        "node 'conv1' (Conv)",
        "node #3",
        "graph",
    )


def test_runner_pads_a_short_chunk_to_the_profile_minimum_and_checks_every_call() -> None:
    """The engine runner's batching, on stand-ins for the CUDA memory and the execution context."""
    import numpy as np

    from resnet_deploy.engine.network import ErrorLog
    from resnet_deploy.errors import ResnetDeployError
    from resnet_deploy.runtime.tensorrt_backend import TensorRTBackend

    class Context:
        def __init__(self):
            self.shapes = []

        def set_input_shape(self, name, shape):
            self.shapes.append(shape[0])
            if shape[0] != 4:  # a static-batch-4 engine
                runner.logger.errors.append("shape outside the profile")
            return shape[0] == 4

        def set_tensor_address(self, name, pointer):
            pass

        def execute_async_v3(self, stream):
            runner.host_out[:] = runner.host_in.reshape(4, -1)[:, :2] + 1  # "logits" from the input
            return True

    class Cuda:
        stream_handle = 0

        def h2d(self, *a):
            pass

        def d2h(self, *a):
            pass

        def synchronize(self):
            pass

    runner = object.__new__(TensorRTBackend)
    runner.__dict__.update(
        min_batch=4,
        max_batch=4,
        sample_shape=(1, 1, 2),
        num_classes=2,
        cuda_graph=False,
        cuda=Cuda(),
        context=Context(),
        input_name="input",
        output_name="logits",
        device_in=1,
        device_out=2,
        host_in=np.zeros((4, 1, 1, 2), np.float32),
        host_out=np.zeros((4, 2), np.float32),
        logger=ErrorLog(),
        path=SimpleNamespace(name="m.engine"),
    )
    batch = np.arange(6 * 2, dtype=np.float32).reshape(6, 1, 1, 2)  # 6 = one full chunk of 4 + 2 padded to 4
    logits = runner._infer(batch)
    assert logits.shape == (6, 2) and runner.context.shapes == [4, 4]
    assert np.array_equal(logits, batch.reshape(6, 2) + 1)
    runner.logger.errors.append("an error of an earlier engine")  # the logger is shared per process
    runner.min_batch = 1  # a profile that claims more than the engine accepts: the refusal is reported
    with pytest.raises(ResnetDeployError, match=r"refused batch 2 .*: shape outside the profile$"):
        runner._run_chunk(batch[:2])
