"""``build_engine_file``: an ONNX graph -> a TensorRT / TensorRT-RTX engine plus its sidecar record.

Which graph is built depends on the precision and on the backend's typing:

| precision | strongly typed (TensorRT >= 10, TensorRT-RTX) | weakly typed (TensorRT 8.6/9) |
|---|---|---|
| fp32 | FP32 ONNX | FP32 ONNX |
| fp16 | FP16 ONNX (converted if given FP32) | FP32 ONNX + FP16 flag |
| int8 | Q/DQ ONNX (calibrated if given FP32) | Q/DQ ONNX + INT8 flag |
| best | Q/DQ ONNX (on TensorRT <= 10: weakly typed, INT8 + FP16 flags) | Q/DQ ONNX + INT8 + FP16 flags |
| int8 --implicit | - | FP32 ONNX + INT8 flag + calibration cache |

TensorRT 10 is built strongly typed except for ``best``, ``--implicit`` and DLA, which need the
flags (DLA runs FP16 from the FP16 flag and INT8 from a calibration cache only).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy._io import atomic_outputs, check_writable, sha256_bytes, sha256_file, write_bytes_atomic
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar, EngineTargets, sidecar_path
from resnet_deploy.artifacts.onnx_io import read_onnx_props
from resnet_deploy.engine import network as tensorrt_api  # through the module: tests replace its calls
from resnet_deploy.engine import progress as progress_bars  # through the module, as tensorrt_api
from resnet_deploy.engine.build_gpu import describe_build_gpu
from resnet_deploy.engine.implicit_int8 import cache_calibrator
from resnet_deploy.engine.options import BatchProfile, BuildOptions, check_combination, resolve_batch
from resnet_deploy.errors import BuildOptionError
from resnet_deploy.files.output_plan import OutputPlan
from resnet_deploy.trt.flavours import EngineBackend, choose


@dataclass
class BuildResult:
    path: Path
    sidecar_path: Path
    backend: str
    backend_version: str
    precision: str
    strongly_typed: bool
    onnx: Path  # the graph TensorRT built
    size_bytes: int
    build_seconds: float
    batch: str
    derived: list[Path] = field(default_factory=list)  # ONNX files written on the way (fp16, int8)
    timing_cache: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("path", "sidecar_path", "onnx", "timing_cache"):
            out[key] = str(out[key]) if out[key] is not None else None
        out["derived"] = [str(p) for p in self.derived]
        return out


NOT_MODEL_PROPS = (
    "source_onnx_sha256",
    "int8_kept_out",
    "int8_kept_out_precision",
    "int8_mac_share",
    "accuracy_budget",
)


def _json_prop(props: dict[str, str], key: str) -> Any:
    """A JSON-valued prop the calibration wrote (None when absent or unreadable: the sidecar just lacks it)."""
    try:
        return json.loads(props[key]) if key in props else None
    except ValueError:
        return None


def graph_precision(props: dict[str, str]) -> str:
    if props.get("quantization") == "qdq-onnxruntime-cpu":
        return "int8-cpu"
    return props.get("precision", "fp32")


def twin_path(output: Path, precision: str) -> Path:
    """Where the FP16 / INT8 ONNX built on the way goes: beside the engine, named for its precision
    (r20.engine or r20.fp16.engine -> r20.fp16.onnx), so it is never the FP32 ONNX it came from."""
    tag = "fp16" if precision == "fp16" else "int8"
    stem = output.name.rsplit(".", 1)[0] if output.suffix else output.name
    return output.with_name(stem + ("" if stem.endswith(f".{tag}") else f".{tag}") + ".onnx")


def twin_needed(given: str, precision: str, strongly_typed: bool, implicit: bool, source: Path) -> str | None:
    """ "fp16" or "int8" when the build converts / calibrates ``source`` (of precision ``given``) first,
    None when it builds ``source`` itself; a graph the precision cannot be built from is refused."""
    if given == "int8-cpu":
        raise BuildOptionError(
            f"{source} is ONNX Runtime's CPU INT8 form (int32 biases), which TensorRT rejects; "
            "give the FP32 export (build-engine --int8 calibrates it) or `calibrate --target tensorrt` output"
        )
    if precision == "fp32" or implicit or (precision == "fp16" and not strongly_typed):
        if given != "fp32":
            raise BuildOptionError(
                f"{source} is an {given} model; {'--implicit' if implicit else f'--{precision}'} "
                "builds from the FP32 export"
            )
        return None
    if precision == "fp16":
        if given == "fp16":
            return None
        if given != "fp32":
            raise BuildOptionError(f"{source} is an {given} model; --fp16 builds from the FP32 (or FP16) export")
        return "fp16"
    if given == "int8":
        return None
    if given != "fp32":
        raise BuildOptionError(f"{source} is an {given} model; --{precision} builds from the FP32 export")
    return "int8"


def plan_build(
    plan: OutputPlan,
    source: Path,
    output: Path,
    options: BuildOptions,
    backend: EngineBackend,
    *,
    given_ours: Callable[[Path], bool],
    exported_later: bool = False,
    twin_settings: dict[str, str] | None = None,
) -> None:
    """Add everything a build writes to ``plan``: the engine and its sidecar, the FP16/INT8 twin,
    the timing cache (updated in place). ``exported_later``: ``source`` is an FP32 export still to be
    written (whatever a file there holds now is replaced)."""
    from resnet_deploy.files.provenance import onnx_twin_of

    plan.write(output, "engine", ours=given_ours)
    strongly_typed, _ = typing_mode(backend, options)
    given = "fp32" if exported_later else graph_precision(read_onnx_props(source))
    kind = twin_needed(given, options.precision, strongly_typed, options.implicit, source)
    if kind is not None:
        quantization = "qdq-tensorrt" if kind == "int8" else None
        settings = twin_settings if kind == "int8" else None
        plan.write(
            twin_path(output, options.precision),
            f"{kind.upper()} ONNX",
            ours=onnx_twin_of(source, kind, quantization, settings),
        )
    if options.timing_cache:
        plan.write(options.timing_cache, "timing cache", existing_ok=True, with_companion=False)
    plan.read(options.calib_cache, "calibration cache")


def typing_mode(backend: EngineBackend, options: BuildOptions) -> tuple[bool, tuple[str, ...]]:
    """(strongly typed?, builder precision flags) for this backend and precision (table above)."""
    weak = not backend.strongly_typed_only and (
        options.implicit
        or options.precision == "best"
        or options.dla_core is not None
        or not backend.supports_strongly_typed
    )
    if not weak:
        return True, ()
    return False, {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",), "best": ("INT8", "FP16")}[options.precision]


def rebuild_command(graph: Path, output: Path, options: BuildOptions, backend: EngineBackend) -> str:
    """The command that builds this engine again from the graph TensorRT built (every shaping option)."""
    import shlex

    # an INT8 engine is rebuilt from its Q/DQ ONNX and an FP16 one from its FP16 twin: no calibration again
    return shlex.join(
        [
            "resnet-deploy",
            "build-engine",
            "--onnx",
            str(graph),
            *options.cli_args(),
            "--backend",
            backend.name,
            "-o",
            str(output),
        ]
    )


def build_engine_file(
    graph: str | Path,
    output: str | Path,
    options: BuildOptions,
    *,
    backend: EngineBackend | str | None = None,
    input_onnx: Path | None = None,
    derived: list[Path] | None = None,
    warn: Callable[[str], None] = lambda message: None,
    say: Callable[[str], None] = lambda message: None,
    progress: bool = False,
) -> BuildResult:
    """Build ``graph``, an ONNX of the precision ``options`` asks for (the table above; converting or
    calibrating one on the way is ``resnet_deploy.pipeline.build_engine``'s job), into ``output`` and
    its sidecar. ``input_onnx``: the FP32 ONNX ``graph`` was made from. ``progress`` draws bars;
    Ctrl-C cancels."""
    chosen = backend if isinstance(backend, EngineBackend) else choose(backend)
    check_combination(options, chosen)
    output, graph = check_writable(output), Path(graph)
    strongly_typed, weak_flags = typing_mode(chosen, options)
    props = read_onnx_props(graph)
    if twin_needed(graph_precision(props), options.precision, strongly_typed, options.implicit, graph) is not None:
        raise BuildOptionError(
            f"{graph} is an {graph_precision(props)} model; a {options.precision} engine is built from its "
            f"{'FP16' if options.precision == 'fp16' else 'INT8 Q/DQ'} form, "
            "which resnet_deploy.pipeline.build_engine makes on the way"
        )
    if options.precision == "best" and strongly_typed:
        warn(
            f"{chosen.describe()} builds strongly typed: --best is the INT8 Q/DQ graph; "
            "layers without Q/DQ run in the graph's float type"
        )
    builder, network, _parser, logger = tensorrt_api.parse(chosen, graph, strongly_typed)
    profile = _batch_profile(network, graph, options, warn)
    config = _configure(chosen, builder, network, options, profile, weak_flags)
    timing_cache_path = _timing_cache(chosen, config, options, logger, warn)
    monitor = progress_bars.make_monitor(chosen, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    elif progress:
        say(f"{chosen.describe()} has no progress monitor: no progress bars; Ctrl-C stops when TensorRT returns")
    typing = "strongly typed" if strongly_typed else "flags " + "+".join(weak_flags or ("none",))
    say(f"building {options.precision} engine from {graph.name} with {chosen.describe()} ({typing}, batch {profile})")
    start = time.perf_counter()
    with progress_bars.cancel_on_interrupt(monitor):
        engine = tensorrt_api.build(chosen, builder, network, config, logger)
    seconds = time.perf_counter() - start
    record = _sidecar(engine, output, graph, input_onnx, props, network, profile, options, chosen, weak_flags, seconds)
    with atomic_outputs(output, sidecar_path(output)) as (engine_tmp, meta_tmp):  # engine first: see atomic_outputs
        engine_tmp.write_bytes(engine)
        meta_tmp.write_text(record.to_text())
    if timing_cache_path is not None:
        write_bytes_atomic(timing_cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return BuildResult(
        path=output,
        sidecar_path=sidecar_path(output),
        backend=chosen.name,
        backend_version=chosen.version,
        precision=options.precision,
        strongly_typed=strongly_typed,
        onnx=graph,
        size_bytes=len(engine),
        build_seconds=seconds,
        batch=str(profile),
        derived=list(derived or []),
        timing_cache=timing_cache_path,
    )


def _batch_profile(network: Any, graph: Path, options: BuildOptions, warn: Callable[[str], None]) -> BatchProfile:
    if network.num_inputs != 1 or len(network.get_input(0).shape) != 4:
        raise BuildOptionError(f"{graph} is not an image classifier with one (N, C, H, W) input")
    onnx_batch = network.get_input(0).shape[0]
    dla = options.dla_core is not None
    profile = resolve_batch(options.batch, onnx_batch, static=dla)
    if dla and options.batch is None and onnx_batch <= 0:
        warn(f"DLA has no dynamic shapes: building one static batch of {profile.opt} (choose it with --batch N)")
    return profile


def _configure(
    chosen: EngineBackend,
    builder: Any,
    network: Any,
    options: BuildOptions,
    profile: BatchProfile,
    weak: tuple[str, ...],
) -> Any:
    dla = options.dla_core is not None
    calibrator = (
        cache_calibrator(chosen, Path(options.calib_cache), dla=dla)
        if options.implicit and options.calib_cache
        else None
    )
    return tensorrt_api.configure(chosen, builder, network, options, profile, weak_flags=weak, calibrator=calibrator)


def _timing_cache(
    chosen: EngineBackend, config: Any, options: BuildOptions, logger: Any, warn: Callable[[str], None]
) -> Path | None:
    path = Path(options.timing_cache) if options.timing_cache else None
    if path is not None and not chosen.has_timing_cache:
        warn("TensorRT-RTX keeps no timing cache (its timing-cache calls are no-ops); --timing-cache ignored")
        path = None
    tensorrt_api.load_timing_cache(config, path, logger, warn)
    return path


def _sidecar(
    engine: bytes,
    output: Path,
    graph: Path,
    input_onnx: Path | None,
    props: dict[str, str],
    network: Any,
    profile: BatchProfile,
    options: BuildOptions,
    chosen: EngineBackend,
    weak_flags: tuple[str, ...],
    seconds: float,
) -> EngineSidecar:
    """The engine's record: what it is, for which GPUs, from which graph, and how to build it again."""
    if chosen.is_rtx:
        targets = EngineTargets(compute_capabilities=tuple(options.target_cc) or ("current GPU",))
    else:
        targets = describe_build_gpu()
        if options.dla_core is not None:
            targets = dataclasses.replace(targets, dla_core=options.dla_core)
    shape = [int(d) for d in network.get_input(0).shape[1:]]
    return EngineSidecar(
        engine=output.name,
        engine_bytes=len(engine),
        engine_sha256=sha256_bytes(engine),
        backend=chosen.name,
        backend_version=chosen.version,
        precision=options.precision,
        strongly_typed=typing_mode(chosen, options)[0],
        builder_flags=tuple(weak_flags),
        targets=targets,
        hardware_compat=options.hardware_compat,
        version_compatible=options.version_compatible,
        profile={
            "input": network.get_input(0).name,
            "min": [profile.min, *shape],
            "opt": [profile.opt, *shape],
            "max": [profile.max, *shape],
        },
        io=tensorrt_api.io_tensors(network),
        source_onnx=str(graph),
        source_onnx_sha256=sha256_file(graph),
        input_onnx_sha256=sha256_file(input_onnx) if input_onnx is not None and input_onnx != graph else None,
        calibration_id=props.get("calibration_id"),
        int8_kept_out=_json_prop(props, "int8_kept_out"),
        accuracy_budget=_json_prop(props, "accuracy_budget"),
        build_options=options.to_dict(),
        build_seconds=round(seconds, 3),
        model={k: v for k, v in props.items() if k not in NOT_MODEL_PROPS and not k.startswith("calibration_")},
        rebuild_command=rebuild_command(graph, output, options, chosen),
    )
