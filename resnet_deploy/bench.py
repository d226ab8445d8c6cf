"""Latency and throughput of artifacts side by side: the same input, in one process.

Each artifact runs in blocks of consecutive calls (as an application runs it), and the blocks of
all artifacts alternate (A B C A B C ...) so drift from heat or other load hits them alike. Calls
are not interleaved one by one: ONNX Runtime's and PyTorch's worker threads spin after each call,
and on 2 cores one runtime's spinning threads slowed the next one's call by up to 2x. A short
pause between blocks lets them park. A timing is one synchronous ``infer`` call, host array in,
host logits out: by ``perf_counter`` on the CPU; on a GPU by CUDA events recorded around the call
on the backend's stream, so the host-device copies an application pays are included.
Percentiles are over all timed calls after the warm-up.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.machine import cpu_name
from resnet_deploy.runtime.base import Backend

BLOCKS = 3  # alternating blocks per artifact and batch size
PAUSE_SECONDS = 0.2


@dataclass
class BenchRow:
    artifact: str
    backend: str
    precision: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    images_per_second: float
    iters: int
    timer: str = "perf_counter"  # "cuda-events" for GPU backends


@dataclass
class BenchReport:
    machine: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "rows": [asdict(r) for r in self.rows]}

    def speedups(self, baseline: str) -> dict[tuple[str, int], float]:
        """p50 of ``baseline`` / p50 of each artifact, per batch size."""
        base = {r.batch: r.p50_ms for r in self.rows if r.artifact == baseline}
        return {(r.artifact, r.batch): base[r.batch] / r.p50_ms for r in self.rows if r.batch in base}

    def table(self) -> str:
        header = f"{'artifact':<28} {'backend':<12} {'precision':<9} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} "
        header += f"{'p99 ms':>9} {'img/s':>9} {'vs first':>8}"
        first = self.rows[0].artifact if self.rows else ""
        speed = self.speedups(first)
        lines = [header]
        for r in self.rows:
            lines.append(
                f"{r.artifact:<28} {r.backend:<12} {r.precision:<9} {r.batch:>5} {r.p50_ms:>9.2f} {r.p90_ms:>9.2f} "
                f"{r.p99_ms:>9.2f} {r.images_per_second:>9.1f} {speed.get((r.artifact, r.batch), 1.0):>7.2f}x"
            )
        return "\n".join(lines)


def describe_machine(threads: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads or "default",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    torch = sys.modules.get("torch")  # only when a PyTorch artifact loaded it: never imported for this
    if torch is not None:
        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def run_bench(
    backends: list[Backend],
    batches: list[int],
    *,
    warmup: int = 5,
    iters: int = 30,
    threads: int | None = None,
    seed: int = 0,
) -> BenchReport:
    if not backends:
        raise ResnetDeployError("nothing to benchmark: give at least one artifact")
    if not batches or min(batches) < 1:
        raise ResnetDeployError(f"--batch sizes must be >= 1, got {batches}")
    if iters < 1 or warmup < 0:
        raise ResnetDeployError("--iters must be >= 1 and --warmup >= 0")
    shapes = {b.input_shape for b in backends}
    if len(shapes) != 1:
        raise ResnetDeployError(f"artifacts take different inputs {sorted(shapes)}; bench models of one input size")
    (shape,) = shapes
    rng = np.random.default_rng(seed)
    report = BenchReport(describe_machine(threads))
    for batch in batches:
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        timings: list[list[float]] = [[] for _ in backends]
        blocks = min(BLOCKS, iters)
        for block in range(blocks):
            per_block = iters // blocks + (1 if block < iters % blocks else 0)
            for i, backend in enumerate(backends):
                time.sleep(PAUSE_SECONDS)  # let the previous runtime's spinning threads park
                for _ in range(warmup if block == 0 else 1):
                    backend.infer(x)
                for _ in range(per_block):
                    timings[i].append(backend.timed_infer(x))
        for backend, seconds in zip(backends, timings, strict=True):
            ms = np.asarray(seconds) * 1000
            report.rows.append(
                BenchRow(
                    artifact=backend.path.name,
                    backend=backend.kind,
                    precision=backend.precision,
                    batch=batch,
                    p50_ms=float(np.percentile(ms, 50)),
                    p90_ms=float(np.percentile(ms, 90)),
                    p99_ms=float(np.percentile(ms, 99)),
                    mean_ms=float(ms.mean()),
                    images_per_second=float(batch * 1000 / np.percentile(ms, 50)),
                    iters=iters,
                    timer=backend.timer,
                )
            )
    return report


def check_plot_path(path: str) -> None:
    """Refuse a --plot that cannot be written, before any benchmarking is done."""
    if not path.lower().endswith(".png"):
        raise ResnetDeployError(f"--plot writes a PNG chart: give a path ending in .png, not {path}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ResnetDeployError('--plot needs matplotlib: pip install "resnet-deploy[plot]"') from None


def plot(report: BenchReport, path: str) -> None:
    check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resnet_deploy._io import atomic_output

    artifacts = list(dict.fromkeys(r.artifact for r in report.rows))
    batches = sorted({r.batch for r in report.rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4 * len(batches), 3.6), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        rows = {r.artifact: r for r in report.rows if r.batch == batch}
        values = [rows[a].images_per_second for a in artifacts]
        ax.barh(range(len(artifacts)), values, color="tab:green")
        ax.set_yticks(range(len(artifacts)), artifacts, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("images / s (p50)")
        ax.set_title(f"batch {batch}")
    fig.suptitle(f"{report.machine['cpu']}, {report.machine['threads']} threads", fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
