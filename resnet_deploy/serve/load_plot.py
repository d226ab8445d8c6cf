"""A load test's chart: latency percentiles (p50, p90, p99) and throughput against concurrency, one line per
batch size. Needs matplotlib (the ``plot`` extra), imported when a chart is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from resnet_deploy._io import atomic_output
from resnet_deploy._lazy import is_available, lazy_import
from resnet_deploy.errors import RunnerError

if TYPE_CHECKING:
    import matplotlib
    from matplotlib import pyplot as plt

    from resnet_deploy.serve.load_test import LoadReport
else:
    matplotlib = lazy_import("matplotlib", extra="plot")
    plt = lazy_import("matplotlib.pyplot", extra="plot")

PERCENTILES = (("p50_ms", "p50", "-"), ("p90_ms", "p90", "--"), ("p99_ms", "p99", ":"))


def check_plot(path: str | Path) -> None:
    """One line, before any load is sent, when the chart cannot be drawn."""
    if not str(path).lower().endswith(".png"):
        raise RunnerError(f"`plot` writes a PNG chart: give a path ending in .png, not {path}", field="plot")
    if not is_available("matplotlib"):
        raise RunnerError('`plot` needs matplotlib: pip install "resnet-deploy[plot]"', field="plot")


def plot(report: LoadReport, path: str | Path, mark: str = "") -> Path:
    """Draw the chart to ``path`` (PNG, written atomically; ``mark`` in its Description text chunk)."""
    check_plot(path)
    matplotlib.use("Agg")  # before pyplot loads: no display needed
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    batches = sorted({r.batch for r in report.rows})
    colours = plt.get_cmap("tab10")
    for index, batch in enumerate(batches):
        rows = sorted((r for r in report.rows if r.batch == batch), key=lambda r: r.concurrency)
        x = [r.concurrency for r in rows]
        for key, name, style in PERCENTILES:
            latency.plot(x, [getattr(r, key) for r in rows], style, marker="o", color=colours(index),
                         label=f"batch {batch} {name}")  # fmt: skip
        throughput.plot(
            x, [r.images_per_s for r in rows], "-", marker="o", color=colours(index), label=f"batch {batch}"
        )
    for ax, label in ((latency, "latency (ms)"), (throughput, "images / s")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r.concurrency for r in report.rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrency (requests outstanding)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    latency.set_title("latency percentiles", fontsize=9)
    throughput.set_title("throughput", fontsize=9)
    m = report.model
    fig.suptitle(
        f"{m.model} at {report.url} ({report.protocol.upper()}), {m.datatype} {list(m.shape)}; client: "
        f"{report.machine['cpu']}, {report.machine['cores']} cores",
        fontsize=8,
    )
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Description": mark} if mark else None)
    plt.close(fig)
    return Path(path)
