"""The TensorRT API calls both backends share: parse the ONNX, configure the builder, build.

TensorRT and TensorRT-RTX agree on these calls; the objects are annotated with the types of
``tensorrt-stubs``, so mypy checks each call against TensorRT's real API. What only one of them has
(DLA, builder precision flags, implicit-INT8 calibrators; RTX compute capabilities) is in
``configure`` behind checks on the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy.engine.options import HARDWARE_COMPAT, BatchProfile, BuildOptions
from resnet_deploy.errors import BuildOptionError, EngineBuildError
from resnet_deploy.messages import Messages
from resnet_deploy.trt.flavours import EngineBackend
from resnet_deploy.trt.logger import make_logger

if TYPE_CHECKING:
    import tensorrt as trt_types

MAX_LISTED_ERRORS = 5


def network_flags(backend: EngineBackend, strongly_typed: bool) -> int:
    trt = backend.module
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if backend.version_tuple < (10,) and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # implicit batch is gone from 10
    return flags


def parse(
    backend: EngineBackend, onnx_path: Path, strongly_typed: bool
) -> tuple[trt_types.Builder, trt_types.INetworkDefinition, trt_types.OnnxParser, Any]:
    """Builder, network, parser (keep it alive with the network) and logger; parser errors listed."""
    trt = backend.module
    logger = make_logger(trt)
    builder: trt_types.Builder = trt.Builder(logger)
    network: trt_types.INetworkDefinition = builder.create_network(network_flags(backend, strongly_typed))
    parser: trt_types.OnnxParser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            where = _where(error)
            errors.append(f"{where}: {error.desc()}")
        listed = "; ".join(errors[:MAX_LISTED_ERRORS])
        more = f" (+{len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
        raise EngineBuildError(f"{backend.describe()} cannot parse {onnx_path}: {listed}{more}" + _hint(errors))
    return builder, network, parser, logger


def _where(error: Any) -> str:
    """Node name and op of a parser error (TensorRT >= 9.1), else the node index (8.6)."""
    name = error.node_name() if hasattr(error, "node_name") else ""
    if name:
        return f"node {name!r} ({error.node_operator()})"
    index = error.node() if hasattr(error, "node") else -1
    return f"node #{index}" if index >= 0 else "graph"


def _hint(errors: list[str]) -> str:
    if any("DequantizeLinear" in e for e in errors):
        return " (TensorRT needs the INT8 ONNX of calibrate's `target=tensorrt`, not the cpu form)"
    return ""


def io_tensors(network: trt_types.INetworkDefinition) -> dict[str, list[dict[str, Any]]]:
    def describe(tensor: trt_types.ITensor) -> dict[str, Any]:
        shape = [int(d) for d in tensor.shape[:]]
        return {"name": tensor.name, "dtype": str(tensor.dtype).split(".")[-1].lower(), "shape": shape}

    return {
        "inputs": [describe(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [describe(network.get_output(i)) for i in range(network.num_outputs)],
    }


def configure(
    backend: EngineBackend,
    builder: trt_types.Builder,
    network: trt_types.INetworkDefinition,
    options: BuildOptions,
    profile_batch: BatchProfile,
    *,
    weak_flags: tuple[str, ...] = (),
    calibrator: Any = None,
) -> trt_types.IBuilderConfig:
    """The builder config: profile, memory, flags, device, targets."""
    trt = backend.module
    config: trt_types.IBuilderConfig = builder.create_builder_config()

    tensor = network.get_input(0)
    shape = [int(d) for d in tensor.shape[1:]]
    profile = builder.create_optimization_profile()
    profile.set_shape(
        tensor.name,
        trt.Dims([profile_batch.min, *shape]),
        trt.Dims([profile_batch.opt, *shape]),
        trt.Dims([profile_batch.max, *shape]),
    )
    config.add_optimization_profile(profile)

    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.builder_opt_level is not None:
        config.builder_optimization_level = options.builder_opt_level
    sharing = getattr(getattr(trt, "PreviewFeature", None), "PROFILE_SHARING_0806", None)
    if sharing is not None and backend.version_tuple < (9,):
        # 8.x gives profile 0 to the first execution context only; the runner's CUDA graphs need one
        # context per batch size (the default from 9.0, where the flag is deprecated)
        config.set_preview_feature(sharing, True)
    for flag in weak_flags:  # FP16 / INT8 on TensorRT <= 10 (weakly typed networks)
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if calibrator is not None:
        config.int8_calibrator = calibrator
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.hardware_compat != "none":
        config.hardware_compatibility_level = getattr(
            trt.HardwareCompatibilityLevel, HARDWARE_COMPAT[options.hardware_compat]
        )
    if options.dla_core is not None:
        cores = builder.num_DLA_cores
        if cores == 0:
            raise BuildOptionError(
                "`dla_core`: this machine has no DLA (TensorRT reports 0 DLA cores); DLA exists on Jetson "
                "AGX Orin/Xavier and Orin NX; build without `dla_core` for the GPU",
                field="dla_core",
            )
        if not 0 <= options.dla_core < cores:
            raise BuildOptionError(
                f"`dla_core={options.dla_core}`: this machine has DLA cores 0..{cores - 1}", field="dla_core"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        if options.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if backend.is_rtx:
        _set_rtx_targets(trt, config, options.target_cc)
        # its builder then logs the engine's layers (precisions, the ONNX nodes each fused): the sidecar keeps them
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return config


def _set_rtx_targets(trt: Any, config: Any, target_cc: tuple[str, ...]) -> None:
    """TensorRT-RTX compiles ahead of time for the chosen compute capabilities (or the GPU present,
    which ``check_combination`` made sure exists)."""
    if not target_cc:
        config.num_compute_capabilities = 1
        config.set_compute_capability(trt.ComputeCapability.CURRENT, 0)
        return
    config.num_compute_capabilities = len(target_cc)
    for i, cc in enumerate(target_cc):
        config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), i)


def load_timing_cache(
    config: trt_types.IBuilderConfig, path: Path | None, logger: Any, out: Messages
) -> trt_types.ITimingCache | None:
    """Read ``path`` into the config; a cache from another TensorRT version is ignored with a warning."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    mark = logger.mark()
    cache = None  # create_timing_cache can raise, or return None, on a foreign cache
    try:
        cache = config.create_timing_cache(data)
        accepted = cache is not None and config.set_timing_cache(cache, False)
    except Exception:
        accepted = False
    if data and (not accepted or logger.mark() > mark):
        out.warn(f"timing cache {path} is from another TensorRT version or damaged; ignored (it will be rewritten)")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def build(
    backend: EngineBackend, builder: trt_types.Builder, network: trt_types.INetworkDefinition, config: Any, logger: Any
) -> bytes:
    mark = logger.mark()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = logger.since(mark, MAX_LISTED_ERRORS)
        raise EngineBuildError(f"{backend.describe()} failed to build the engine: {errors}")
    return bytes(memoryview(serialized))
