"""``LoadTestJob``: latency percentiles and throughput of a model on any Triton server (``resnet-deploy serve``'s,
or NVIDIA's container), at each concurrency and batch size, through Triton's own client.

    from resnet_deploy.pipeline import plan, run
    from resnet_deploy.pipeline.load_test import LoadTestJob

    report = run(plan(LoadTestJob("localhost:8000", model="r50", concurrency=(1, 4, 16), batch=(1, 8))))
    print(report.table())                                   # p50/p90/p99, requests/s, images/s per setting

``output``: the report as JSON (with the client's machine); ``plot``: a PNG chart of latency and
throughput against concurrency. Neither is written over a file another command (or a person) made,
unless ``overwrite``; a load test's own earlier report of the same server and model is replaced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import write_bytes_atomic
from resnet_deploy._lazy import lazy_module
from resnet_deploy.errors import RunnerError
from resnet_deploy.files.provenance import inputs_digest, png_of, report_mark
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, output_path
from resnet_deploy.pipeline.plan import Output, Plan, Step, checked, last

if TYPE_CHECKING:
    from resnet_deploy.serve import load_plot, load_test
    from resnet_deploy.serve.load_test import LoadReport, LoadSettings
else:
    load_test = lazy_module("resnet_deploy.serve.load_test")
    load_plot = lazy_module("resnet_deploy.serve.load_plot")


def _ints(value: int | Sequence[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


@dataclass(frozen=True)
class LoadTestJob(Job["LoadReport"]):
    """Load ``model`` on the Triton server at ``url`` (host:port) over ``protocol`` (http or grpc): each of
    ``batch`` sizes at each ``concurrency`` (requests outstanding at once), ``warmup`` requests untimed,
    then ``requests`` requests or ``duration`` seconds measured (neither: 5 s). ``model`` None: the
    server's only model. ``input``: ``random`` data, or a folder of images (sent encoded to a BYTES
    input, decoded and resized for a tensor input). ``output``: the report (.json); ``plot``: a chart (.png)."""

    command = "load-test"

    url: str | None = None
    model: str | None = None
    protocol: str = "http"
    concurrency: tuple[int, ...] = (1, 4, 16)
    batch: tuple[int, ...] = (1,)
    requests: int | None = None
    duration: float | None = None
    warmup: int = 20
    input: str | Path = "random"
    output: str | Path | None = None
    plot: str | Path | None = None
    overwrite: bool = False

    def settings(self, images: tuple[str, ...] | None = None) -> LoadSettings:
        return load_test.LoadSettings(
            concurrency=_ints(self.concurrency),
            batches=_ints(self.batch),
            requests=self.requests,
            duration=self.duration,
            warmup=self.warmup,
            images=images,
        )

    def plan(self) -> Plan[LoadReport]:
        if not self.url:
            raise RunnerError("no server to load: give its address, host:port (e.g. localhost:8000)", field="url")
        load_test.parse_url(self.url)
        if self.protocol not in load_test.PROTOCOLS:
            raise RunnerError(f"`protocol` is http or grpc, not {self.protocol!r}", field="protocol")
        load_test.check_settings(self.settings())
        folder = None if str(self.input) == "random" else Path(self.input)
        images = tuple(load_test.folder_images(folder)) if folder is not None else None
        report = output_path(self.output, (".json",), "the load-test report is JSON")
        chart = output_path(self.plot, (".png",), "the chart is a PNG", field="plot")
        if chart is not None:
            load_plot.check_plot(chart)
        if report is not None and chart is not None and report.resolve() == chart.resolve():
            raise RunnerError("`output` and `plot` name the same file", field="plot")
        digest = inputs_digest([], extra=f"{self.url}|{self.protocol}|{self.model}")
        step = LoadTest(self, images, str(folder) if folder else "random", report, chart, digest)
        return checked(self.command, [step], last, overwrite=self.overwrite)


def _json_of(mark: str) -> Any:
    """An existing JSON report of ours: a load test of the same server, protocol and model."""

    def ours(path: Path) -> bool:
        try:
            return bool(json.loads(path.read_text()).get("written_by") == mark)
        except (OSError, ValueError, AttributeError):
            return False

    return ours


@dataclass(frozen=True)
class LoadTest(Step):
    """Connect, describe the model, send the load setting by setting, say the table; write the report and chart."""

    job: LoadTestJob
    images: tuple[str, ...] | None
    source: str
    report: Path | None
    chart: Path | None
    digest: str  # of the server, protocol and model: a rerun replaces its own report and chart

    @property
    def mark(self) -> str:
        return report_mark(self.job.command, self.digest)

    @property
    def title(self) -> str:
        job, s = self.job, self.job.settings()
        model = job.model or "the server's only model"
        return (
            f"load {model} at {job.url} over {job.protocol.upper()} with {self.source} data: batch "
            f"{','.join(map(str, s.batches))} at concurrency {','.join(map(str, s.concurrency))}, {s.window} each"
        )

    def outputs(self) -> tuple[Output, ...]:
        out = []
        if self.report is not None:
            out.append(Output(self.report, "load-test report", ours=_json_of(self.mark), with_companion=False))
        if self.chart is not None:
            ours = png_of(self.job.command, self.digest)
            out.append(Output(self.chart, "chart", ours=ours, with_companion=False, field="plot"))
        return tuple(out)

    def run(self, out: Messages, earlier: Sequence[Any]) -> LoadReport:
        job = self.job
        assert job.url is not None
        target = load_test.connect_model(job.url, job.protocol, job.model)
        settings = job.settings(self.images)
        load_test.check_batches(target, settings.batches)
        m = target.model
        out.say(
            f"{m.model} at {target.address}: input {m.name} {m.datatype} {list(m.shape)}, max batch {m.max_batch_size}"
        )
        report = load_test.run_load_test(target, settings, out, self.source)
        out.say(report.headline())
        out.say(f"client: {load_test.machine_line(report.machine)}")
        out.say(report.table())
        for note in report.notes:
            out.say(f"note: {note}")
        for error in report.errors():
            out.warn(error)
        if self.report is not None:
            payload = {"written_by": self.mark, **report.to_dict()}
            write_bytes_atomic(self.report, (json.dumps(payload, indent=1) + "\n").encode())
            out.say(f"report: {self.report}")
        if self.chart is not None:
            load_plot.plot(report, self.chart, self.mark)
            out.say(f"plot: {self.chart}")
        return report
