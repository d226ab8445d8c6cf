"""``resnet-deploy bench``: latency percentiles and images/s of artifacts, side by side."""

from __future__ import annotations

from contextlib import ExitStack

import click

from resnet_deploy.cli.options import json_option, overwrite_option
from resnet_deploy.cli.output import Reporter


@click.command()
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--batch", "batches", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option(
    "--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed rounds per batch size."
)
@click.option("--iters", type=click.IntRange(min=1), default=30, show_default=True, help="Timed rounds per batch size.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for ONNX Runtime and PyTorch.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write a PNG chart.")
@overwrite_option
@json_option
def bench(
    artifacts: tuple[str, ...],
    batches: str,
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

    \b
    Examples:
      resnet-deploy bench r50.pt r50.onnx r50.cpu.int8.onnx --batch 1 --threads 2
      resnet-deploy bench r20.int8.engine r20.onnx --batch 1,8,32 --plot bench.png --json
    """
    from resnet_deploy.bench import check_plot_path, plot, run_bench
    from resnet_deploy.output_plan import OutputPlan
    from resnet_deploy.provenance import inputs_digest, png_of, report_mark
    from resnet_deploy.runtime import open_backend
    from resnet_deploy.runtime.load import ONNX_SUFFIXES, TORCH_SUFFIXES

    out = Reporter(as_json)
    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{batches!r} is not a comma-separated list of integers", param_hint="--batch"
        ) from None
    mark = ""
    if plot_path:  # planned before loading anything: never over an artifact, its sidecar or a foreign file
        check_plot_path(plot_path)
        digest = inputs_digest(artifacts, extra=f"{batches}|{iters}|{threads}")
        mark = report_mark("bench", digest)
        plan = OutputPlan("bench", overwrite=overwrite)
        plan.read_all(artifacts, "artifact")
        plan.write(plot_path, "chart", ours=png_of("bench", digest))
        plan.check()
        for note in plan.notes():
            out.say(note)
    with ExitStack() as stack:
        opened = []
        for path in artifacts:
            cpu_backend = path.lower().endswith(ONNX_SUFFIXES + TORCH_SUFFIXES)
            options = {"threads": threads} if threads and cpu_backend else {}
            opened.append(stack.enter_context(open_backend(path, **options)))
        report = run_bench(opened, sizes, warmup=warmup, iters=iters, threads=threads)
    m = report.machine
    out.say(
        f"machine: {m['cpu']}"
        + (f" ({', '.join(m['isa'])})" if m.get("isa") else "")
        + f", {m['cores']} cores, threads {m['threads']}, {m['os']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
    )
    out.say(report.table())
    for warning in report.warnings():
        out.warn(warning)
    if plot_path:
        plot(report, plot_path, mark)
        out.say(f"plot: {plot_path}")
    out.result({"ok": True, **report.to_dict()})
