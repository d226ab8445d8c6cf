"""Latency and throughput of artifacts side by side: the same input, in one process.

Each artifact runs in blocks of consecutive calls (as an application runs it), and the blocks of
all artifacts alternate (A B C A B C ...) so drift from heat or other load hits them alike. Calls
are not interleaved one by one: ONNX Runtime's and PyTorch's worker threads spin after each call,
and on 2 cores one runtime's spinning threads slowed the next one's call by up to 2x. A short
pause between blocks lets them park. A timing is one synchronous ``infer`` call, host array in,
host logits out: by ``perf_counter`` on the CPU; on a GPU by CUDA events recorded around the call
on the backend's stream, so the host-device copies an application pays are included.
Percentiles are over all timed calls after the warm-up. Below ``P99_MIN_RUNS`` calls a p99 cannot be
told from the slowest call, so it is reported as that maximum and the table marks it ``p99*``.

Each row carries its spread: the interquartile range (p75 - p25), the sample standard deviation and
the maximum of its calls. A row is *unstable* when its IQR exceeds ``UNSTABLE_IQR`` (25%) of its
median or its slowest call took more than ``UNSTABLE_MAX`` (3x) its median: other load on the
machine (another process, heat, a neighbour VM) moved its timings, so its p50 and the ratios
against it are not to be trusted. ``bench`` and ``demo`` warn once per unstable row.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._io import atomic_output
from resnet_deploy._lazy import is_available, lazy_import
from resnet_deploy.errors import BenchmarkError
from resnet_deploy.runtime.base import Backend, random_batch
from resnet_deploy.runtime.machine import describe_host

if TYPE_CHECKING:
    import matplotlib
    from matplotlib import pyplot as plt
else:
    matplotlib = lazy_import("matplotlib", extra="plot")
    plt = lazy_import("matplotlib.pyplot", extra="plot")

BLOCKS = 3  # alternating blocks per artifact and batch size
PAUSE_SECONDS = 0.2
P99_MIN_RUNS = 100  # fewer timed calls than this: "p99" is their maximum (marked p99*)
UNSTABLE_IQR = 0.25  # IQR / p50 above this: unstable
UNSTABLE_MAX = 3.0  # max / p50 above this: unstable
# /proc/cpuinfo flags that decide which CPU kernels (MLAS, oneDNN) run, hence speed and rounding (x86, then ARM)


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
    iqr_ms: float = 0.0  # p75 - p25
    std_ms: float = 0.0  # sample standard deviation (ddof 1; 0 for one call)
    max_ms: float = 0.0
    label: str = ""  # the artifact's name in the table: its file, and its runtime when a file runs on several

    def __post_init__(self) -> None:
        self.label = self.label or self.artifact

    @property
    def p99_is_max(self) -> bool:
        return self.iters < P99_MIN_RUNS

    @property
    def spread(self) -> float:
        """IQR / p50: the relative spread of the calls (0.1: the middle half of the calls spans 10% of p50)."""
        return self.iqr_ms / self.p50_ms if self.p50_ms > 0 else 0.0

    @property
    def max_over_p50(self) -> float:
        return self.max_ms / self.p50_ms if self.p50_ms > 0 else 0.0

    @property
    def unstable(self) -> bool:
        return self.spread > UNSTABLE_IQR or self.max_over_p50 > UNSTABLE_MAX

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "spread": self.spread,
            "max_over_p50": self.max_over_p50,
            "unstable": self.unstable,
            "p99_is_max": self.p99_is_max,
        }


def summarise(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """Percentiles and spread (milliseconds) of per-call timings in seconds; p99 is the maximum below
    ``P99_MIN_RUNS`` calls."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    if ms.size == 0:
        raise BenchmarkError("no timings to summarise")
    p25, p50, p75, p90 = (float(v) for v in np.percentile(ms, [25, 50, 75, 90]))
    p99 = float(ms.max()) if ms.size < P99_MIN_RUNS else float(np.percentile(ms, 99))
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": float(ms.mean()),
        "iqr_ms": p75 - p25,
        "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "max_ms": float(ms.max()),
    }


@dataclass
class BenchReport:
    machine: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "rows": [r.to_dict() for r in self.rows],
            "unstable_when": {"iqr_over_p50_above": UNSTABLE_IQR, "max_over_p50_above": UNSTABLE_MAX},
        }

    def speedups(self, baseline: str) -> dict[tuple[str, int], float]:
        """p50 of ``baseline`` / p50 of each artifact, per batch size."""
        base = {r.batch: r.p50_ms for r in self.rows if r.label == baseline}
        return {(r.label, r.batch): base[r.batch] / r.p50_ms for r in self.rows if r.batch in base}

    def table(self) -> str:
        p99_max = any(r.p99_is_max for r in self.rows)
        p99 = "p99* ms" if p99_max else "p99 ms"
        width = max([28, *(len(r.label) for r in self.rows)])
        header = f"{'artifact':<{width}} {'backend':<12} {'precision':<9} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} "
        header += f"{p99:>9} {'IQR/p50':>8} {'img/s':>9} {'vs first':>8}"
        first = self.rows[0].label if self.rows else ""
        speed = self.speedups(first)
        lines = [header]
        for r in self.rows:
            spread = f"{r.spread:.0%}" + ("!" if r.unstable else " ")
            ratio = speed.get((r.label, r.batch), 1.0)
            lines.append(
                f"{r.label:<{width}} {r.backend:<12} {r.precision:<9} {r.batch:>5} {r.p50_ms:>9.2f} {r.p90_ms:>9.2f} "
                f"{r.p99_ms:>9.2f} {spread:>8} {r.images_per_second:>9.1f} {ratio:>7.2f}x"
            )
        if p99_max:
            runs = sorted({r.iters for r in self.rows if r.p99_is_max})
            lines.append(f"* p99 of N<{P99_MIN_RUNS} runs is their max (N = {', '.join(map(str, runs))})")
        if any(r.unstable for r in self.rows):
            lines.append(
                f"! unstable: IQR above {UNSTABLE_IQR:.0%} of p50 or max above {UNSTABLE_MAX:g}x p50 "
                "(other load on this machine); its p50 and ratios are unreliable"
            )
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        """One line per unstable row (see the module docstring), for ``Reporter.warn``."""
        return [
            f"{r.label} batch {r.batch}: unstable timings (IQR {r.spread:.0%} of p50, max {r.max_over_p50:.1f}x "
            f"p50 over {r.iters} runs); its p50 and 'vs first' ratio are unreliable: rerun on an idle machine"
            for r in self.rows
            if r.unstable
        ]


def describe_machine(threads: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {**describe_host(), "threads": threads or "default"}
    try:  # the version installed, without importing it
        info["onnxruntime"] = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        pass
    openvino = sys.modules.get("openvino")  # only when an artifact ran on it
    if openvino is not None:
        info["openvino"] = openvino.__version__.split("-")[0]
    torch = sys.modules.get("torch")  # only when a PyTorch artifact loaded it: never imported for this
    if torch is not None:
        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def machine_line(m: dict[str, Any]) -> str:
    """The machine a report was timed on, in one line: CPU and instruction sets, cores, threads, OS, GPU, runtimes."""
    return (
        f"{m['cpu']}"
        + (f" ({m['instruction_sets']})" if m.get("instruction_sets") else "")
        + f", {m['cores']} cores, threads {m['threads']}, {m['os']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + "".join(f", {name} {m[name]}" for name in ("onnxruntime", "openvino") if m.get(name))
    )


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
        raise BenchmarkError("nothing to benchmark: give at least one artifact")
    if not batches or min(batches) < 1:
        raise BenchmarkError(f"batch sizes (`batches`) must be >= 1, got {batches}", field="batches")
    if iters < 1 or warmup < 0:
        raise BenchmarkError("`iters` must be >= 1 and `warmup` >= 0", field="iters")
    shapes = {(b.input_shape, b.input_dtype) for b in backends}
    if len(shapes) != 1:
        raise BenchmarkError(f"artifacts take different inputs {_inputs(shapes)}; bench models of one input size")
    rng = np.random.default_rng(seed)
    report = BenchReport(describe_machine(threads))
    labels = row_labels(backends)
    for batch in batches:
        x = random_batch(backends[0], batch, rng)
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
        for backend, seconds, label in zip(backends, timings, labels, strict=True):
            stats = summarise(seconds)
            report.rows.append(
                BenchRow(
                    artifact=backend.path.name,
                    label=label,
                    backend=backend.kind,
                    precision=backend.precision,
                    batch=batch,
                    images_per_second=batch * 1000 / stats["p50_ms"],
                    iters=iters,
                    timer=backend.timer,
                    **stats,
                )
            )
    return report


def row_labels(backends: list[Backend]) -> list[str]:
    """Each backend's file name, with the runtime asked for (``auto`` when it was chosen) added where one
    file runs on several."""
    names = [b.path.name for b in backends]
    paths: dict[str, set[Path]] = {}
    for b in backends:
        paths.setdefault(b.path.name, set()).add(b.path.resolve())
    names = [  # two files of one name in different folders: their folder too
        f"{b.path.parent.name}/{b.path.name}" if len(paths[b.path.name]) > 1 else b.path.name for b in backends
    ]
    labels = []
    for name, b in zip(names, backends, strict=True):
        runtime = "auto" if b.chosen_because.startswith("auto") else b.kind
        if getattr(b, "inference_precision", "f32") != "f32":  # OpenVINO computing in bfloat16
            runtime += f" {b.inference_precision}"  # type: ignore[attr-defined]
        labels.append(f"{name} ({runtime})" if names.count(name) > 1 else name)
    return labels


def check_plot_path(path: str) -> None:
    """Refuse a --plot that cannot be written, before any benchmarking is done."""
    if not path.lower().endswith(".png"):
        raise BenchmarkError(f"`plot` writes a PNG chart: give a path ending in .png, not {path}", field="plot")
    if not is_available("matplotlib"):
        raise BenchmarkError('`plot` needs matplotlib: pip install "resnet-deploy[plot]"', field="plot") from None


def plot(report: BenchReport, path: str, mark: str = "") -> None:
    check_plot_path(path)
    matplotlib.use("Agg")  # before pyplot loads: no display needed
    artifacts = list(dict.fromkeys(r.label for r in report.rows))
    batches = sorted({r.batch for r in report.rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4 * len(batches), 3.6), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        rows = {r.label: r for r in report.rows if r.batch == batch}
        values = [rows[a].images_per_second for a in artifacts]
        ax.barh(range(len(artifacts)), values, color="tab:green")
        ax.set_yticks(range(len(artifacts)), artifacts, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("images / s (p50)")
        ax.set_title(f"batch {batch}")
    fig.suptitle(f"{report.machine['cpu']}, {report.machine['threads']} threads", fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Description": mark} if mark else None)
    plt.close(fig)


REQUESTS_PER_STREAM = 4  # batches each stream runs per timed round in throughput mode


@dataclass
class ThroughputRow:
    """Images/s of one artifact serving batches of ``batch`` on ``streams`` concurrent requests."""

    artifact: str
    label: str
    backend: str
    precision: str
    batch: int
    streams: int
    images_per_second: float  # median over the timed rounds
    spread: float  # IQR / median of the rounds' images/s
    rounds: int
    best: bool = False  # the best configuration of this artifact on its runtime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ThroughputReport:
    machine: dict[str, Any]
    rows: list[ThroughputRow] = field(default_factory=list)

    def mark_best(self) -> None:
        for label in dict.fromkeys(r.label for r in self.rows):
            rows = [r for r in self.rows if r.label == label]
            best = max(rows, key=lambda r: r.images_per_second)
            for r in rows:
                r.best = r is best

    def best(self) -> list[ThroughputRow]:
        """The best configuration of each artifact (and runtime), fastest first."""
        return sorted((r for r in self.rows if r.best), key=lambda r: -r.images_per_second)

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "mode": "throughput",
            "requests_per_stream": REQUESTS_PER_STREAM,
            "rows": [r.to_dict() for r in self.rows],
        }

    def table(self) -> str:
        width = max([28, *(len(r.label) for r in self.rows)])
        header = f"{'artifact':<{width}} {'backend':<12} {'precision':<9} {'batch':>5} {'streams':>7} {'img/s':>9} "
        header += f"{'IQR/med':>8} {'vs best':>8}"
        top = {label: max(r.images_per_second for r in self.rows if r.label == label) for label in self._labels()}
        lines = [header]
        for r in self.rows:
            ratio = r.images_per_second / top[r.label] if top[r.label] > 0 else 0.0
            lines.append(
                f"{r.label:<{width}} {r.backend:<12} {r.precision:<9} {r.batch:>5} {r.streams:>7} "
                f"{r.images_per_second:>9.1f} {r.spread:>7.0%}  {ratio:>6.2f}x" + (" *" if r.best else "")
            )
        lines.append("* the best batch and streams of each artifact on its runtime")
        for r in self.best():
            lines.append(
                f"best for {r.label}: batch {r.batch} on {r.streams} stream{'s' if r.streams > 1 else ''}, "
                f"{r.images_per_second:.1f} images/s"
            )
        return "\n".join(lines)

    def _labels(self) -> list[str]:
        return list(dict.fromkeys(r.label for r in self.rows))


def run_throughput(
    open_all: Any,
    batches: list[int],
    streams: list[int],
    *,
    rounds: int = 5,
    threads: int | None = None,
    seed: int = 0,
) -> ThroughputReport:
    """Images/s of artifacts at each batch size and number of streams (requests in flight at once).

    ``open_all(n)`` opens every artifact with ``streams=n``; they are closed here once measured. A
    round is ``REQUESTS_PER_STREAM`` batches per stream through ``infer_many``; rounds of the
    artifacts alternate, with a pause between them, as in ``run_bench``.
    """
    if not batches or min(batches) < 1:
        raise BenchmarkError(f"batch sizes (`batches`) must be >= 1, got {batches}", field="batches")
    if not streams or min(streams) < 1:
        raise BenchmarkError(f"`streams` must be >= 1, got {streams}", field="streams")
    if rounds < 1:
        raise BenchmarkError("`iters` (timed rounds) must be >= 1", field="iters")
    rng = np.random.default_rng(seed)
    report: ThroughputReport | None = None
    for count in streams:
        backends: list[Backend] = open_all(count)
        try:
            if not backends:
                raise BenchmarkError("nothing to benchmark: give at least one artifact")
            shapes = {(b.input_shape, b.input_dtype) for b in backends}
            if len(shapes) != 1:
                raise BenchmarkError(
                    f"artifacts take different inputs {_inputs(shapes)}; bench models of one input size"
                )
            if report is None:
                report = ThroughputReport(describe_machine(threads))
            labels = row_labels(backends)
            for batch in batches:
                x = random_batch(backends[0], batch, rng)
                requests = [x] * (count * REQUESTS_PER_STREAM)
                rates: list[list[float]] = [[] for _ in backends]
                for backend in backends:
                    backend.infer_many([x] * count)  # warm every stream
                for _ in range(rounds):
                    for backend, rate in zip(backends, rates, strict=True):
                        time.sleep(PAUSE_SECONDS)
                        start = time.perf_counter()
                        backend.infer_many(requests)
                        rate.append(batch * len(requests) / (time.perf_counter() - start))
                for backend, rate, label in zip(backends, rates, labels, strict=True):
                    q25, median, q75 = (float(v) for v in np.percentile(rate, [25, 50, 75]))
                    report.rows.append(
                        ThroughputRow(
                            artifact=backend.path.name,
                            label=label,
                            backend=backend.kind,
                            precision=backend.precision,
                            batch=batch,
                            streams=count,
                            images_per_second=median,
                            spread=(q75 - q25) / median if median > 0 else 0.0,
                            rounds=rounds,
                        )
                    )
        finally:
            for backend in backends:
                backend.close()
    assert report is not None
    order = {label: i for i, label in enumerate(dict.fromkeys(r.label for r in report.rows))}
    report.rows.sort(key=lambda r: (order[r.label], r.batch, r.streams))
    report.mark_best()
    return report


def _inputs(shapes: set[tuple[tuple[int, int, int], Any]]) -> str:
    """``(3, 32, 32) float32 and (480, 640, 3) uint8``: what each artifact takes, for a refusal."""
    return " and ".join(sorted(f"{shape} {dtype}" for shape, dtype in shapes))
