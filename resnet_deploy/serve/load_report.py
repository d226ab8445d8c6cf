"""What a load test reports: its settings, one row per batch and concurrency (latency percentiles, rates,
errors, the client's CPU and the server's own counts), the machine, the table and the JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

from resnet_deploy.runtime.machine import describe_host, host_line
from resnet_deploy.serve.triton_target import ModelInput

DEFAULT_DURATION_S = 5.0  # the measured window when neither requests nor a duration is given


@dataclass(frozen=True)
class LoadSettings:
    """What to send: each of ``batches`` at each of ``concurrency``; ``warmup`` requests untimed, then
    ``requests`` requests or ``duration`` seconds measured (None for both: ``DEFAULT_DURATION_S``);
    ``images``: image files to send (None: random data)."""

    concurrency: tuple[int, ...] = (1, 4, 16)
    batches: tuple[int, ...] = (1,)
    requests: int | None = None
    duration: float | None = None
    warmup: int = 20
    images: tuple[str, ...] | None = None

    @property
    def window(self) -> str:
        if self.requests is not None:
            return f"{self.requests} requests"
        return f"{self.duration if self.duration is not None else DEFAULT_DURATION_S:g} s"


@dataclass(frozen=True)
class ServerStats:
    """The server's own account of a window (Triton's statistics API): requests it answered and failed, how
    long they waited in its queue and computed, and the batches it ran."""

    success: int
    failed: int
    executions: int
    inferences: int  # items: a request of batch 8 is 8
    queue_ms: float  # per request, mean
    compute_ms: float  # per request, mean (input, infer and output)

    @property
    def mean_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_batch": self.mean_batch}


@dataclass(frozen=True)
class LoadRow:
    """One setting: ``batch`` items per request, ``concurrency`` requests outstanding, over the measured window."""

    batch: int
    concurrency: int
    requests: int  # measured requests sent (errors included)
    errors: int
    first_error: str | None
    images: int  # items answered: successful requests x batch
    seconds: float  # the window: its start to the last answer
    requests_per_s: float
    images_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    client_cpu: float  # this process's CPU seconds per window second (1.0: one core busy)
    warmup: int  # warm-up requests sent before the window
    server: ServerStats | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["server"] = self.server.to_dict() if self.server else None
        return out


def machine() -> dict[str, Any]:
    """The client's machine (:func:`~resnet_deploy.runtime.machine.describe_host`) and its tritonclient."""
    info = describe_host()
    try:
        info["tritonclient"] = metadata.version("tritonclient")
    except metadata.PackageNotFoundError:
        pass
    return info


def machine_line(m: dict[str, Any]) -> str:
    client = f", tritonclient {m['tritonclient']}" if m.get("tritonclient") else ""
    return host_line(m) + client


@dataclass(frozen=True)
class LoadReport:
    """A load test: where, what, the machine of the client, and one row per batch and concurrency."""

    url: str
    protocol: str
    model: ModelInput
    settings: LoadSettings
    source: str  # "random" or the image folder
    machine: dict[str, Any]
    local: bool  # the server is on this machine: the client's CPU is taken from it
    rows: tuple[LoadRow, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "url": self.url,
            "protocol": self.protocol,
            "model": self.model.model,
            "input": self.model.to_dict(),
            "source": self.source,
            "window": {"requests": s.requests, "duration_s": None if s.requests else s.duration or DEFAULT_DURATION_S},
            "warmup": s.warmup,
            "concurrency": list(s.concurrency),
            "batches": list(s.batches),
            "machine": self.machine,
            "server_on_this_machine": self.local,
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    def headline(self) -> str:
        m = self.model
        return (
            f"{m.model} at {self.url} ({self.protocol.upper()}): input {m.name} {m.datatype} {list(m.shape)}, "
            f"max batch {m.max_batch_size}; {self.source} data; per setting {self.settings.warmup} warm-up "
            f"requests, then {self.settings.window} measured"
        )

    def table(self) -> str:
        server = any(r.server for r in self.rows)
        head = (
            f"{'batch':>5} {'conc':>5} {'requests':>8} {'errors':>6} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
            f"{'mean ms':>9} {'max ms':>9} {'req/s':>8} {'img/s':>8} {'client CPU':>10}"
        )
        if server:
            head += f" {'srv queue ms':>12} {'srv compute ms':>14} {'srv batch':>9}"
        lines = [head]
        for r in self.rows:
            line = (
                f"{r.batch:>5} {r.concurrency:>5} {r.requests:>8} {r.errors:>6} {r.p50_ms:>9.2f} {r.p90_ms:>9.2f} "
                f"{r.p99_ms:>9.2f} {r.mean_ms:>9.2f} {r.max_ms:>9.2f} {r.requests_per_s:>8.1f} "
                f"{r.images_per_s:>8.1f} {r.client_cpu:>10.2f}"
            )
            if r.server:
                s = r.server
                line += f" {s.queue_ms:>12.2f} {s.compute_ms:>14.2f} {s.mean_batch:>9.2f}"
            lines.append(line)
        lines.append(
            "client CPU: the cores this process kept busy (1.00: one); p99 of fewer than 100 requests: the slowest"
        )
        return "\n".join(lines)

    def errors(self) -> list[str]:
        return [
            f"batch {r.batch}, concurrency {r.concurrency}: {r.errors} of {r.requests} requests failed; the first: "
            f"{r.first_error}"
            for r in self.rows
            if r.errors
        ]
