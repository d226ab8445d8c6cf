"""``build_engine``: an ONNX artifact -> a TensorRT / TensorRT-RTX engine plus its sidecar JSON.

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

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy._io import atomic_outputs, check_writable, sha256_bytes, sha256_file, write_bytes_atomic
from resnet_deploy.engine.backends import EngineBackend, choose
from resnet_deploy.engine.options import BuildOptions, check_combination, resolve_batch
from resnet_deploy.engine.sidecar import describe_build_gpu, sidecar, sidecar_path
from resnet_deploy.errors import BuildOptionError
from resnet_deploy.metadata import check_graph_matches_metadata, read_onnx_props
from resnet_deploy.output_plan import OutputPlan


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


def _graph_precision(props: dict[str, str]) -> str:
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
    from resnet_deploy.provenance import onnx_twin_of

    plan.write(output, "engine", ours=given_ours)
    strongly_typed, _ = typing_mode(backend, options)
    given = "fp32" if exported_later else _graph_precision(read_onnx_props(source))
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


def _prepare_graph(
    onnx_path: Path,
    given: str,
    output: Path,
    precision: str,
    strongly_typed: bool,
    implicit: bool,
    calibrate: dict[str, Any],
    warn: Callable[[str], None],
) -> tuple[Path, list[Path]]:
    """The ONNX to hand TensorRT: the given one (of precision ``given``), or its FP16 / INT8 twin
    written beside the engine."""
    kind = twin_needed(given, precision, strongly_typed, implicit, onnx_path)
    if kind is None:
        return onnx_path, []
    twin = twin_path(output, precision)
    if kind == "fp16":
        from resnet_deploy.fp16 import convert_to_fp16

        return convert_to_fp16(onnx_path, twin).path, [twin]
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    result = calibrate_onnx(onnx_path, twin, target="tensorrt", warn=warn, **calibrate)
    return result.path, [result.path]


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


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    options: BuildOptions,
    *,
    backend: EngineBackend | str | None = None,
    calibrate: dict[str, Any] | None = None,
    warn: Callable[[str], None] = lambda message: None,
    say: Callable[[str], None] = lambda message: None,
    progress: bool = False,
) -> BuildResult:
    """Build ``onnx_path`` into ``output`` (+ its sidecar). ``progress`` draws bars; Ctrl-C cancels."""
    from resnet_deploy.engine.implicit_int8 import cache_calibrator
    from resnet_deploy.engine.network import build as run_build
    from resnet_deploy.engine.network import configure, io_tensors, load_timing_cache, parse
    from resnet_deploy.engine.progress import cancel_on_interrupt, make_monitor

    chosen = backend if isinstance(backend, EngineBackend) else choose(backend)
    check_combination(options, chosen)
    output = check_writable(output)
    onnx_path = Path(onnx_path)
    given_props = read_onnx_props(str(onnx_path))
    check_graph_matches_metadata(onnx_path)  # ours, and the graph it claims to be, or a clear refusal
    if options.timing_cache:
        check_writable(options.timing_cache)

    strongly_typed, weak_flags = typing_mode(chosen, options)
    graph, derived = _prepare_graph(
        onnx_path,
        _graph_precision(given_props),
        output,
        options.precision,
        strongly_typed,
        options.implicit,
        calibrate or {},
        warn,
    )
    if options.precision == "best" and strongly_typed:
        warn(
            f"{chosen.describe()} builds strongly typed: --best is the INT8 Q/DQ graph; "
            "layers without Q/DQ run in the graph's float type"
        )

    builder, network, _parser, logger = parse(chosen, graph, strongly_typed)
    if network.num_inputs != 1 or len(network.get_input(0).shape) != 4:
        raise BuildOptionError(f"{graph} is not an image classifier with one (N, C, H, W) input")
    onnx_batch = network.get_input(0).shape[0]
    dla = options.dla_core is not None
    profile = resolve_batch(options.batch, onnx_batch, static=dla)
    if dla and options.batch is None and onnx_batch <= 0:
        warn(f"DLA has no dynamic shapes: building one static batch of {profile.opt} (choose it with --batch N)")
    calibrator = (
        cache_calibrator(chosen, Path(options.calib_cache), dla=dla)
        if options.implicit and options.calib_cache
        else None
    )
    config = configure(chosen, builder, network, options, profile, weak_flags=weak_flags, calibrator=calibrator)
    timing_cache_path = Path(options.timing_cache) if options.timing_cache else None
    if timing_cache_path is not None and not chosen.has_timing_cache:
        warn("TensorRT-RTX keeps no timing cache (its timing-cache calls are no-ops); --timing-cache ignored")
        timing_cache_path = None
    load_timing_cache(config, timing_cache_path, logger, warn)
    monitor = make_monitor(chosen, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    elif progress:
        say(f"{chosen.describe()} has no progress monitor: no progress bars; Ctrl-C stops when TensorRT returns")

    say(
        f"building {options.precision} engine from {graph.name} with {chosen.describe()} "
        f"({'strongly typed' if strongly_typed else 'flags ' + '+'.join(weak_flags or ('none',))}, batch {profile})"
    )
    start = time.perf_counter()
    with cancel_on_interrupt(monitor):
        engine = run_build(chosen, builder, network, config, logger)
    seconds = time.perf_counter() - start

    shape = [int(d) for d in network.get_input(0).shape[1:]]
    props = given_props if graph == onnx_path else read_onnx_props(str(graph))
    if chosen.is_rtx:
        targets: dict[str, Any] = {"compute_capabilities": list(options.target_cc) or ["current GPU"]}
    else:
        targets = describe_build_gpu()
        if options.dla_core is not None:
            targets["dla_core"] = options.dla_core
    meta = sidecar(
        engine=output.name,
        engine_bytes=len(engine),
        engine_sha256=sha256_bytes(engine),
        backend=chosen.name,
        backend_version=chosen.version,
        precision=options.precision,
        strongly_typed=strongly_typed,
        builder_flags=list(weak_flags),
        targets=targets,
        hardware_compat=options.hardware_compat,
        version_compatible=options.version_compatible,
        profile={
            "input": network.get_input(0).name,
            "min": [profile.min, *shape],
            "opt": [profile.opt, *shape],
            "max": [profile.max, *shape],
        },
        io=io_tensors(network),
        source_onnx=str(graph),
        source_onnx_sha256=sha256_file(graph),
        input_onnx_sha256=sha256_file(onnx_path) if graph != onnx_path else None,  # the FP32 ONNX of a twin
        calibration_id=props.get("calibration_id"),
        build_options=options.to_dict(),
        build_seconds=round(seconds, 3),
        model={k: v for k, v in props.items() if not k.startswith("calibration_") and k != "source_onnx_sha256"},
        rebuild_command=rebuild_command(graph, output, options, chosen),
    )
    with atomic_outputs(output, sidecar_path(output)) as (engine_tmp, meta_tmp):  # engine first: see atomic_outputs
        engine_tmp.write_bytes(engine)
        meta_tmp.write_text(json.dumps(meta, indent=1) + "\n")
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
        derived=derived,
        timing_cache=timing_cache_path,
    )
