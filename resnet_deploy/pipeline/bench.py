"""``BenchJob``: latency percentiles (or, with ``streams``, throughput) of artifacts side by side, in one
process, on the same input; optionally a PNG chart.

    from resnet_deploy import BenchJob, plan, run
    report = run(plan(BenchJob(("r50.onnx", "r50.int8.onnx"), batches=(1, 8), threads=2)))
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import write_bytes_atomic
from resnet_deploy._lazy import lazy_module
from resnet_deploy.errors import BenchmarkError
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, first, inputs
from resnet_deploy.pipeline.reports import MarkedFile, marked_report
from resnet_deploy.runtime.load import ONNX_BACKENDS, ONNX_SUFFIXES, TORCH_SUFFIXES

if TYPE_CHECKING:
    from resnet_deploy import runtime
    from resnet_deploy.evaluate import bench, validate
    from resnet_deploy.evaluate.bench import BenchReport, ThroughputReport
    from resnet_deploy.runtime.base import Backend
else:
    runtime, bench, validate = map(
        lazy_module, ("resnet_deploy.runtime", "resnet_deploy.evaluate.bench", "resnet_deploy.evaluate.validate")
    )

LATENCY_ITERS, THROUGHPUT_ROUNDS = 30, 5  # what ``iters`` None means in each mode


@dataclass(frozen=True)
class BenchJob(Job["BenchReport | ThroughputReport"]):
    """Time ``artifacts`` (.pt, .onnx, .engine) at each of ``batches``; ONNX files on each of ``backends``.

    ``streams`` (e.g. (1, 2, 4)): throughput mode, images/s with that many requests in flight. ``iters``
    None: 30 timed rounds (5 in throughput mode). ``plot``: a PNG chart of the latency table.
    ``skip_failing_engines``: leave out (named) the engines that do not load here (the demo's)."""

    command = "bench"

    artifacts: tuple[str | Path, ...]  # a single path is taken as one artifact
    batches: tuple[int, ...] = (1, 8, 32)
    backends: tuple[str, ...] = ("auto",)
    streams: tuple[int, ...] | None = None
    warmup: int = 5
    iters: int | None = None
    threads: int | None = None
    plot: str | Path | None = None
    skip_failing_engines: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.artifacts, (str, Path)):  # one artifact, not its characters
            object.__setattr__(self, "artifacts", (self.artifacts,))

    def plan(self) -> Plan[BenchReport | ThroughputReport]:
        if not self.artifacts:
            raise BenchmarkError("nothing to benchmark: give at least one artifact", field="artifacts")
        wrong = [b for b in self.backends if b not in ONNX_BACKENDS]
        if wrong or not self.backends:
            raise BenchmarkError(
                f"{', '.join(wrong) or 'no runtime'} is not a runtime for ONNX files; use {', '.join(ONNX_BACKENDS)} "
                "(several to compare them)",
                field="backends",
            )
        if self.streams is not None and self.plot:
            raise BenchmarkError(
                "`plot` charts latency; throughput mode (`streams`) prints its table only", field="plot"
            )
        chart = None
        if self.plot:  # planned before loading anything: never over an artifact, its sidecar or a foreign file
            bench.check_plot_path(str(self.plot))
            settings = f"{','.join(map(str, self.batches))}|{self.iters or LATENCY_ITERS}|{self.threads}|"
            chart = marked_report(
                self.command,
                self.plot,
                list(self.artifacts),
                settings + ",".join(self.backends),
                suffixes=(".png",),
                field="plot",
            )
        steps: list[Step] = [Time(self, tuple(self.artifacts), chart)]
        return checked(self.command, steps, first, overwrite=self.overwrite)


@dataclass(frozen=True)
class Time(Step):
    """Open every artifact, time them in alternating blocks, say the table (and draw the chart)."""

    job: BenchJob
    artifacts: tuple[str | Path, ...]  # as given: each opened by its path
    chart: MarkedFile | None = None
    json_path: Path | None = None  # the report's JSON too (the demo's bench.json)

    @property
    def title(self) -> str:
        mode = f"throughput on {','.join(map(str, self.job.streams))} streams" if self.job.streams else "latency"
        return f"time {len(self.artifacts)} artifact(s), {mode}, batch {','.join(map(str, self.job.batches))}"

    def inputs(self) -> tuple[Input, ...]:
        return inputs(*((a, "artifact") for a in self.artifacts))

    def outputs(self) -> tuple[Output, ...]:
        chart = (self.chart.output("chart"),) if self.chart else ()
        return chart + ((Output(self.json_path, "timings JSON"),) if self.json_path else ())

    def run(self, out: Messages, earlier: Sequence[Any]) -> BenchReport | ThroughputReport:
        job = self.job
        report: BenchReport | ThroughputReport
        with ExitStack() as stack:
            if job.streams is None:
                backends = self._open(out, stack, 1)
                iters = job.iters or LATENCY_ITERS
                report = bench.run_bench(
                    backends, list(job.batches), warmup=job.warmup, iters=iters, threads=job.threads
                )
            else:
                opener = functools.partial(self._open, out, stack)
                report = bench.run_throughput(
                    opener,
                    list(job.batches),
                    list(job.streams),
                    rounds=job.iters or THROUGHPUT_ROUNDS,
                    threads=job.threads,
                )
        if self.json_path:
            write_bytes_atomic(self.json_path, (json.dumps(report.to_dict(), indent=1) + "\n").encode())
        out.say(f"machine: {bench.machine_line(report.machine)}")
        out.say(report.table())
        for warning in report.warnings() if hasattr(report, "warnings") else []:
            out.warn(warning)
        if self.chart and job.streams is None:
            bench.plot(report, str(self.chart.path), self.chart.mark)  # type: ignore[arg-type]
            out.say(f"plot: {self.chart.path}")
        return report

    def _open(self, out: Messages, stack: ExitStack, count: int) -> list[Backend]:
        """Every artifact on each runtime asked for, with ``count`` streams (how each was chosen said once)."""
        job, opened = self.job, []
        first = count == (job.streams or (1,))[0]
        skip_engines = job.skip_failing_engines
        for path in self.artifacts:
            suffix = Path(path).suffix.lower()
            onnx = suffix in ONNX_SUFFIXES
            options: dict[str, Any] = (
                {"threads": job.threads} if job.threads and (onnx or suffix in TORCH_SUFFIXES) else {}
            )
            if count > 1:
                if not onnx:
                    raise BenchmarkError(
                        f"`streams` above 1 runs ONNX files (on ONNX Runtime or OpenVINO); {path} is not one",
                        field="streams",
                    )
                options["streams"] = count
            if skip_engines and not onnx and suffix not in TORCH_SUFFIXES:
                engines, skipped = validate.open_artifacts([path], stack, allow_none=True, skip_failing_engines=True)
                for item in skipped:
                    if first:
                        out.say(f"not timing {item.artifact}: {item.reason}")
                opened += engines
                continue
            for name in job.backends if onnx else ("auto",):
                backend = stack.enter_context(runtime.open_backend(path, backend=name, **options))
                if first:  # say how each was chosen once, not per streams
                    if name == "auto" and backend.chosen_because:
                        out.say(f"{backend.path.name}: {backend.chosen_because}")
                    for note in backend.notes:
                        out.warn(note)
                opened.append(backend)
        return opened
