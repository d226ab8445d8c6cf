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
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy._io import atomic_outputs, check_writable, sha256_bytes, sha256_file, write_bytes_atomic
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar, EngineTargets, sidecar_path
from resnet_deploy.artifacts.lineage import KEYS as LINEAGE_KEYS
from resnet_deploy.artifacts.lineage import GraphLineage
from resnet_deploy.artifacts.onnx_io import load_onnx, read_onnx_props
from resnet_deploy.engine import layer_info
from resnet_deploy.engine import network as tensorrt_api  # through the module: tests replace its calls
from resnet_deploy.engine import progress as progress_bars  # through the module, as tensorrt_api
from resnet_deploy.engine.build_gpu import describe_build_gpu
from resnet_deploy.engine.implicit_int8 import cache_calibrator
from resnet_deploy.engine.options import BatchProfile, BuildOptions, resolve_batch
from resnet_deploy.errors import BuildOptionError
from resnet_deploy.messages import SILENT, Messages, NoProgress
from resnet_deploy.quantize import layer_report
from resnet_deploy.trt.flavours import EngineBackend


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


# The lineage props an engine's sidecar keeps in its model record too: what the graph built is.
MODEL_LINEAGE = ("precision", "quantization")


def twin_needed(given: str, precision: str, strongly_typed: bool, implicit: bool, source: Path) -> str | None:
    """ "fp16" or "int8" when the build converts / calibrates ``source`` (of precision ``given``) first,
    None when it builds ``source`` itself; a graph the precision cannot be built from is refused."""
    if given == "int8-cpu":
        raise BuildOptionError(
            f"{source} is ONNX Runtime's CPU INT8 form (int32 biases), which TensorRT rejects; "
            "give the FP32 export (a `precision=int8` build calibrates it) or the INT8 ONNX of calibrate's "
            "`target=tensorrt`",
            field="precision",
        )
    if precision == "fp32" or implicit or (precision == "fp16" and not strongly_typed):
        if given != "fp32":
            raise BuildOptionError(
                f"{source} is an {given} model; {'`implicit`' if implicit else f'`precision={precision}`'} "
                "builds from the FP32 export"
            )
        return None
    if precision == "fp16":
        if given == "fp16":
            return None
        if given != "fp32":
            raise BuildOptionError(
                f"{source} is an {given} model; `precision=fp16` builds from the FP32 (or FP16) export",
                field="precision",
            )
        return "fp16"
    if given == "int8":
        return None
    if given != "fp32":
        raise BuildOptionError(f"{source} is an {given} model; --{precision} builds from the FP32 export")
    return "int8"


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
    graph: Path,
    output: str | Path,
    options: BuildOptions,
    chosen: EngineBackend,
    *,
    input_onnx: Path | None = None,
    derived: list[Path] | None = None,
    out: Messages = SILENT,
) -> BuildResult:
    """Build ``graph``, an ONNX of the precision ``options`` asks for (the table above), into ``output`` and its
    sidecar, with ``chosen``. The caller has checked the options against the backend and the graph (an
    ``EngineJob``'s plan does: ``check_combination``, ``twin_needed``); converting or calibrating the graph on
    the way is the job's too. ``input_onnx``: the FP32 ONNX ``graph`` was made from. Each build phase is a bar
    of ``out``; Ctrl-C cancels."""
    output = check_writable(output)
    strongly_typed, weak_flags = typing_mode(chosen, options)
    props = read_onnx_props(graph)
    if options.precision == "best" and strongly_typed:
        out.warn(
            f"{chosen.describe()} builds strongly typed: `precision=best` is the INT8 Q/DQ graph; "
            "layers without Q/DQ run in the graph's float type"
        )
    builder, network, _parser, logger = tensorrt_api.parse(chosen, graph, strongly_typed)
    profile = _batch_profile(network, graph, options, out)
    config = _configure(chosen, builder, network, options, profile, weak_flags)
    timing_cache_path = _timing_cache(chosen, config, options, logger, out)
    monitor = progress_bars.make_monitor(chosen, out)
    if monitor is not None:
        config.progress_monitor = monitor
    else:
        bar = out.progress(None, "build")  # would bars be drawn? then say why there are none
        if not isinstance(bar, NoProgress):
            out.say(
                f"{chosen.describe()} has no progress monitor: no progress bars; Ctrl-C stops when TensorRT returns"
            )
        bar.close()
    typing = "strongly typed" if strongly_typed else "flags " + "+".join(weak_flags or ("none",))
    out.say(
        f"building {options.precision} engine from {graph.name} with {chosen.describe()} ({typing}, batch {profile})"
    )
    start = time.perf_counter()
    logger.layer_report = None
    with progress_bars.cancel_on_interrupt(monitor):
        engine = tensorrt_api.build(chosen, builder, network, config, logger)
    seconds = time.perf_counter() - start
    record = _sidecar(engine, output, graph, input_onnx, props, network, profile, options, chosen, weak_flags, seconds)
    record = dataclasses.replace(record, layers=_engine_layers(logger.layer_report, graph))
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


def _batch_profile(network: Any, graph: Path, options: BuildOptions, out: Messages) -> BatchProfile:
    if network.num_inputs != 1 or len(network.get_input(0).shape) != 4:
        raise BuildOptionError(f"{graph} is not an image classifier with one (N, C, H, W) input")
    onnx_batch = network.get_input(0).shape[0]
    dla = options.dla_core is not None
    profile = resolve_batch(options.batch, onnx_batch, static=dla)
    if dla and options.batch is None and onnx_batch <= 0:
        out.warn(f"DLA has no dynamic shapes: building one static batch of {profile.opt} (choose it with `batch`)")
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


def _timing_cache(chosen: EngineBackend, config: Any, options: BuildOptions, logger: Any, out: Messages) -> Path | None:
    path = Path(options.timing_cache) if options.timing_cache else None
    if path is not None and not chosen.has_timing_cache:
        out.warn("TensorRT-RTX keeps no timing cache (its timing-cache calls are no-ops); `timing_cache` ignored")
        path = None
    tensorrt_api.load_timing_cache(config, path, logger, out)
    return path


def _engine_layers(report: str | None, graph: Path) -> list[dict[str, Any]] | None:
    """The engine's layers as its builder reported them, mapped to the graph's Conv/Gemm modules;
    None where the builder reported none (full TensorRT: its engine inspector needs the GPU)."""
    layers = layer_info.parse_layers(report) if report else []
    if not layers:
        return None
    mapped = layer_info.with_modules(layers, layer_report.onnx_layers(load_onnx(graph)))
    return [layer.to_json() for layer in mapped]


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
    lineage = GraphLineage.from_props(props, str(graph))
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
        calibration_id=lineage.calibration.id if lineage.calibration else None,
        int8_kept_out=[k.to_dict() for k in lineage.budget.kept_out] if lineage.budget else None,
        accuracy_budget=dict(lineage.budget.summary) if lineage.budget else None,
        lineage=lineage.to_props() or None,
        build_options=options.to_dict(),
        build_seconds=round(seconds, 3),
        model={k: v for k, v in props.items() if k not in LINEAGE_KEYS or k in MODEL_LINEAGE},
        rebuild_command=rebuild_command(graph, output, options, chosen),
    )
