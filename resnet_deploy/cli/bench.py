"""``resnet-deploy bench``: latency percentiles and images/s of artifacts, side by side."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import click
from click.core import ParameterSource

from resnet_deploy.cli.options import json_option, overwrite_option
from resnet_deploy.cli.output import Reporter

BACKEND_CHOICES = ("auto", "onnxruntime", "openvino")


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=option) from None


def _backend_list(text: str) -> list[str]:
    names = list(dict.fromkeys(b.strip() for b in text.split(",") if b.strip()))
    wrong = [n for n in names if n not in BACKEND_CHOICES]
    if wrong or not names:
        raise click.BadParameter(
            f"{', '.join(wrong) or repr(text)} is not a runtime for ONNX files; use {', '.join(BACKEND_CHOICES)} "
            "(comma-separated to compare them)",
            param_hint="--backend",
        )
    return names


@click.command()
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--batch", "batches", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option(
    "--backend",
    "backends",
    default="auto",
    show_default=True,
    help="Runtime of .onnx artifacts: auto (the faster of OpenVINO and ONNX Runtime, timed at load), onnxruntime "
    "or openvino; comma-separated to run each ONNX file on each.",
)
@click.option(
    "--streams",
    default=None,
    help="Throughput mode: comma-separated numbers of concurrent requests (e.g. 1,2,4); reports images/s of "
    "each batch size and number of streams, and the best of each artifact.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Untimed rounds per batch size (throughput mode: one round on every stream).",
)
@click.option(
    "--iters",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Timed rounds per batch size (throughput mode: 5 unless given).",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="CPU threads for ONNX Runtime, OpenVINO and PyTorch."
)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write a PNG chart.")
@overwrite_option
@json_option
def bench(
    artifacts: tuple[str, ...],
    batches: str,
    backends: str,
    streams: str | None,
    warmup: int,
    iters: int,
    threads: int | None,
    plot_path: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Benchmark artifacts (.pt, .onnx, .engine) in one process, interleaved, on the same input.

    Each row shows its spread (IQR/p50) and is flagged unstable, with a warning, when its IQR is
    above 25% of p50 or its slowest run above 3x p50. With fewer than 100 --iters, p99 is the max.
    ONNX files run on OpenVINO or ONNX Runtime, whichever is faster here (--backend auto), or on
    the runtimes named.

    \b
    Examples:
      resnet-deploy bench r50.pt r50.onnx r50.cpu.int8.onnx --batch 1 --threads 2
      resnet-deploy bench r50.onnx r50.int8.onnx --backend onnxruntime,openvino --batch 1,8
      resnet-deploy bench r50.int8.onnx --streams 1,2,4 --batch 1,8 --json
      resnet-deploy bench r20.int8.engine r20.onnx --batch 1,8,32 --plot bench.png --json
    """
    from resnet_deploy.errors import BenchmarkError
    from resnet_deploy.evaluate.bench import check_plot_path, plot, run_bench, run_throughput
    from resnet_deploy.files.output_plan import OutputPlan
    from resnet_deploy.files.provenance import inputs_digest, png_of, report_mark
    from resnet_deploy.runtime import Backend, open_backend
    from resnet_deploy.runtime.load import ONNX_SUFFIXES, TORCH_SUFFIXES

    out = Reporter(as_json)
    sizes = _int_list(batches, "--batch")
    runtimes = _backend_list(backends)
    stream_counts = _int_list(streams, "--streams") if streams is not None else None
    if stream_counts is not None and plot_path:
        raise click.UsageError("--plot charts latency; throughput mode (--streams) prints its table only")
    mark = ""
    if plot_path:  # planned before loading anything: never over an artifact, its sidecar or a foreign file
        check_plot_path(plot_path)
        digest = inputs_digest(artifacts, extra=f"{batches}|{iters}|{threads}|{backends}")
        mark = report_mark("bench", digest)
        plan = OutputPlan("bench", overwrite=overwrite)
        plan.read_all(artifacts, "artifact")
        plan.write(plot_path, "chart", ours=png_of("bench", digest))
        plan.check()
        for note in plan.notes():
            out.say(note)

    def open_all(stack: ExitStack, count: int) -> list[Backend]:
        opened: list[Backend] = []
        for path in artifacts:
            onnx = path.lower().endswith(ONNX_SUFFIXES)
            options: dict[str, Any] = (
                {"threads": threads} if threads and (onnx or path.lower().endswith(TORCH_SUFFIXES)) else {}
            )
            if count > 1:
                if not onnx:
                    raise BenchmarkError(
                        f"--streams above 1 runs ONNX files (on ONNX Runtime or OpenVINO); {path} is not one"
                    )
                options["streams"] = count
            for runtime in runtimes if onnx else ["auto"]:
                backend = stack.enter_context(open_backend(path, backend=runtime, **options))
                if count == (stream_counts or [1])[0]:  # say how each was chosen once, not per streams
                    _tell(out, backend, runtime)
                opened.append(backend)
        return opened

    report: Any
    with ExitStack() as stack:
        if stream_counts is None:
            report = run_bench(open_all(stack, 1), sizes, warmup=warmup, iters=iters, threads=threads)
        else:
            given = click.get_current_context().get_parameter_source("iters") is not ParameterSource.DEFAULT
            opener: Callable[[int], list[Backend]] = functools.partial(open_all, stack)
            report = run_throughput(opener, sizes, stream_counts, rounds=iters if given else 5, threads=threads)
    m = report.machine
    out.say(
        f"machine: {m['cpu']}"
        + (f" ({m['instruction_sets']})" if m.get("instruction_sets") else "")
        + f", {m['cores']} cores, threads {m['threads']}, {m['os']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + "".join(f", {name} {m[name]}" for name in ("onnxruntime", "openvino") if m.get(name))
    )
    out.say(report.table())
    for warning in getattr(report, "warnings", list)():
        out.warn(warning)
    if plot_path:
        plot(report, plot_path, mark)
        out.say(f"plot: {plot_path}")
    out.result({"ok": True, **report.to_dict()})


def _tell(out: Reporter, backend: Any, asked: str) -> None:
    """How an ONNX file's runtime was chosen (auto), and what could not be used."""
    if asked == "auto" and backend.chosen_because:
        out.say(f"{backend.path.name}: {backend.chosen_because}")
    for note in backend.notes:
        out.warn(note)
