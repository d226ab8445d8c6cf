"""A load test of any Triton server, through Triton's own client (``tritonclient``): what ``perf_analyzer``
reports, latency percentiles and throughput at each concurrency and batch size.

    from resnet_deploy.serve.load_test import LoadSettings, connect_model, run_load_test

    target = connect_model("localhost:8000", "http", "r50")        # one line when it cannot be reached
    report = run_load_test(target, LoadSettings(concurrency=(1, 4, 16), batches=(1, 8), requests=200))
    print(report.table())

The model's input (name, datatype, shape) and its ``max_batch_size`` come from the server's own model
metadata and configuration, so any classifier Triton serves works: float or uint8 tensors, or a BYTES
input of encoded images (random pixels as PNG, or the files of a folder).

*Concurrency* N: N threads, each with its own client, each sending its next synchronous request as soon
as the last one answered, so N requests are outstanding at once (``perf_analyzer``'s concurrency mode).
Each setting first sends ``warmup`` requests, untimed, then the measured window: ``requests`` requests
(shared by the threads) or as many as ``duration`` seconds take. Latency is each request's round trip
as the client sees it (the request built, sent, answered and its outputs read); throughput is the
measured requests over the window, from its start to the last answer.

The client is Python: at most about one core of work (the GIL), reported per row as ``client_cpu``
(the process's CPU seconds over the window's wall seconds). When the server runs on the same machine,
that CPU is taken from the server, which is said in the report's notes. Where the server allows
Triton's statistics API (NVIDIA's container does; PyTriton restricts it by default), each row also
carries the server's own count of the requests, its queue and compute time and the batch sizes it ran.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resnet_deploy.errors import RunnerError
from resnet_deploy.messages import SILENT, Messages
from resnet_deploy.serve.load_inputs import build_requests, folder_images, make_batches
from resnet_deploy.serve.load_report import (
    DEFAULT_DURATION_S,
    LoadReport,
    LoadRow,
    LoadSettings,
    ServerStats,
    machine,
    machine_line,
)
from resnet_deploy.serve.triton_target import (
    PROTOCOLS,
    Target,
    check_batches,
    connect_model,
    is_local,
    json_kw,
    make_client,
    one_line_message,
    parse_url,
)

MAX_CONCURRENCY = 1024
CLIENT_BOUND = 0.85  # client_cpu above this (cores): the Python client may be what limits the rate


class _Tickets:
    """Who sends the next request: ``count`` of them in all, or until ``deadline`` (perf_counter)."""

    def __init__(self, count: int | None, deadline: float | None = None) -> None:
        self.count, self.deadline = count, deadline
        self._next = itertools.count()

    def take(self) -> int | None:
        index = next(self._next)  # atomic under the GIL
        if self.count is not None:
            return index if index < self.count else None
        return index if self.deadline is not None and time.perf_counter() < self.deadline else None


@dataclass
class _Log:
    """One thread's record: each answered request's (start, end), and its errors."""

    times: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _drive(
    client: Any, target: Target, requests: list[list[Any]], outputs: list[Any], tickets: _Tickets, log: _Log
) -> None:
    name, m = target.model.model, target.model
    while (ticket := tickets.take()) is not None:
        inputs = requests[ticket % len(requests)]
        start = time.perf_counter()
        try:
            result = client.infer(name, inputs, outputs=outputs)
            for output in m.outputs:  # the answer read, as an application reads it
                result.as_numpy(output)
        except Exception as exc:  # an overloaded or failing server: counted, the load goes on
            log.errors.append(one_line_message(exc))
            continue
        log.times.append((start, time.perf_counter()))


class _Workers:
    """``count`` threads, each with its own client made in it (the HTTP client's gevent hub is per thread),
    each sending while the current phase's tickets last: the warm-up, then the measured window."""

    def __init__(self, target: Target, count: int, requests: list[list[Any]], outputs: list[Any]) -> None:
        self.target, self.requests, self.outputs = target, requests, outputs
        self.phases: list[_Tickets] = []
        self.logs: list[list[_Log]] = []
        self._go = [threading.Semaphore(0) for _ in range(count)]
        self._done = threading.Semaphore(0)
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()

    def _work(self, index: int) -> None:
        client = None
        try:
            client = self.target.client()
        except Exception as exc:  # counted as an error of every phase
            failure = f"cannot make a client: {one_line_message(exc)}"
        for phase in itertools.count():
            self._go[index].acquire()
            if phase >= len(self.phases):  # closed
                break
            log = self.logs[phase][index]
            try:
                if client is None:
                    log.errors.append(failure)
                else:
                    _drive(client, self.target, self.requests, self.outputs, self.phases[phase], log)
            finally:  # run() waits for every thread, whatever happened in this one
                self._done.release()
        if client is not None:
            client.close()

    def run(self, tickets: _Tickets) -> list[_Log]:
        """One phase on every thread; returns when every thread has sent its last request of it."""
        self.phases.append(tickets)
        self.logs.append([_Log() for _ in self._threads])
        for go in self._go:
            go.release()
        for _ in self._threads:
            self._done.acquire()
        return self.logs[-1]

    def close(self) -> None:
        for go in self._go:
            go.release()
        for thread in self._threads:
            thread.join()


def server_counts(client: Any, target: Target) -> dict[str, int] | None:
    """The server's cumulative statistics of the model (counts and nanoseconds); None where it does not
    give them (PyTriton restricts Triton's statistics API by default)."""
    try:
        stats = client.get_inference_statistics(target.model.model, **json_kw(target.protocol))
    except Exception:
        return None
    rows = stats.get("model_stats", [])
    if not rows:
        return None
    row = rows[0]
    inference = row.get("inference_stats", {})

    def part(name: str, key: str) -> int:
        return int(inference.get(name, {}).get(key, 0) or 0)

    return {
        "success": part("success", "count"),
        "failed": part("fail", "count"),
        "queue_ns": part("queue", "ns"),
        "compute_ns": sum(part(name, "ns") for name in ("compute_input", "compute_infer", "compute_output")),
        "executions": int(row.get("execution_count", 0) or 0),
        "inferences": int(row.get("inference_count", 0) or 0),
    }


def _server_window(before: dict[str, int] | None, after: dict[str, int] | None) -> ServerStats | None:
    if before is None or after is None:
        return None
    d = {key: after[key] - before[key] for key in after}
    per = max(d["success"], 1)
    return ServerStats(
        success=d["success"],
        failed=d["failed"],
        executions=d["executions"],
        inferences=d["inferences"],
        queue_ms=d["queue_ns"] / per / 1e6,
        compute_ms=d["compute_ns"] / per / 1e6,
    )


def _settle(client: Any, target: Target, expected: int, timeout_s: float = 2.0) -> dict[str, int] | None:
    """The server's counts once it has counted ``expected`` successes (it counts just after answering)."""
    deadline = time.monotonic() + timeout_s
    counts = server_counts(client, target)
    while counts is not None and counts["success"] < expected and time.monotonic() < deadline:
        time.sleep(0.02)
        counts = server_counts(client, target)
    return counts


def percentile(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q, method="higher")) if ms.size else 0.0


def measure(target: Target, batch: int, concurrency: int, settings: LoadSettings) -> LoadRow:
    """One setting: warm-up, then the measured window."""
    requests, outputs = build_requests(target, make_batches(target.model, batch, settings.images))
    workers = _Workers(target, concurrency, requests, outputs)
    stats_client = target.client()
    try:
        start_counts = server_counts(stats_client, target)
        warm = workers.run(_Tickets(settings.warmup))
        warm_ok = sum(len(log.times) for log in warm)
        before = _settle(stats_client, target, start_counts["success"] + warm_ok) if start_counts else None
        duration = settings.duration if settings.duration is not None else DEFAULT_DURATION_S
        cpu0, start = time.process_time(), time.perf_counter()
        deadline = None if settings.requests is not None else start + duration
        logs = workers.run(_Tickets(settings.requests, deadline))
        end_cpu = time.process_time()
        times = [t for log in logs for t in log.times]
        errors = [e for log in logs for e in log.errors]
        end = max((t[1] for t in times), default=time.perf_counter())
        after = _settle(stats_client, target, before["success"] + len(times)) if before else None
    finally:
        workers.close()
        stats_client.close()
    seconds = max(end - start, 1e-9)
    ms = np.array([(b - a) * 1000 for a, b in times], dtype=np.float64)
    return LoadRow(
        batch=batch,
        concurrency=concurrency,
        requests=len(times) + len(errors),
        errors=len(errors),
        first_error=errors[0] if errors else None,
        images=len(times) * batch,
        seconds=seconds,
        requests_per_s=len(times) / seconds,
        images_per_s=len(times) * batch / seconds,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=float(ms.mean()) if ms.size else 0.0,
        max_ms=float(ms.max()) if ms.size else 0.0,
        client_cpu=(end_cpu - cpu0) / seconds,
        warmup=settings.warmup,
        server=_server_window(before, after),
    )


def run_load_test(target: Target, settings: LoadSettings, out: Messages = SILENT, source: str = "random") -> LoadReport:
    """Every batch at every concurrency, in that order; one line when every request of a setting failed."""
    check_batches(target, settings.batches)
    local = is_local(target.address)
    rows: list[LoadRow] = []
    for batch in settings.batches:
        for concurrency in settings.concurrency:
            row = measure(target, batch, concurrency, settings)
            if row.errors == row.requests:
                raise RunnerError(
                    f"every request to {target.model.model} at {target.address} failed (batch {batch}, concurrency "
                    f"{concurrency}); the first: {row.first_error}"
                )
            rows.append(row)
            out.say(
                f"batch {batch}, concurrency {concurrency}: {row.images_per_s:.1f} images/s, p50 {row.p50_ms:.2f} ms, "
                f"p99 {row.p99_ms:.2f} ms ({row.requests} requests, {row.errors} errors)"
            )
    notes = []
    cores = os.cpu_count() or 1
    busiest = max((r.client_cpu for r in rows), default=0.0)
    if local:
        notes.append(
            f"the server runs on this machine: client and server share its {cores} cores, and the client's CPU "
            f"(up to {busiest:.2f} cores here) is taken from the server"
        )
    if busiest > CLIENT_BOUND:
        notes.append(
            f"the client kept {busiest:.2f} cores busy: near what one Python process does (its GIL); the highest "
            "rates may be the client's limit, not the server's: run the load from another machine or several "
            "processes to tell"
        )
    if not any(r.server for r in rows):
        notes.append("the server gave no statistics (Triton's statistics API is restricted or absent)")
    return LoadReport(
        url=target.url,
        protocol=target.protocol,
        model=target.model,
        settings=settings,
        source=source,
        machine=machine(),
        local=local,
        rows=tuple(rows),
        notes=tuple(notes),
    )


def check_settings(settings: LoadSettings) -> None:
    """One line for a setting that cannot run, naming the parameter."""
    for name, values in (("concurrency", settings.concurrency), ("batch", settings.batches)):
        if not values:
            raise RunnerError(f"`{name}` is empty: give one or more whole numbers, e.g. 1,4,16", field=name)
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if bad:
            raise RunnerError(f"`{name}` must be whole numbers of at least 1, got {list(values)}", field=name)
    if max(settings.concurrency) > MAX_CONCURRENCY:
        raise RunnerError(
            f"`concurrency` {max(settings.concurrency)} is over {MAX_CONCURRENCY}: one thread per request outstanding",
            field="concurrency",
        )
    if settings.requests is not None and settings.duration is not None:
        raise RunnerError("give `requests` or `duration`, not both", field="requests")
    if settings.requests is not None and (isinstance(settings.requests, bool) or settings.requests < 1):
        raise RunnerError(f"`requests` must be at least 1, got {settings.requests}", field="requests")
    if settings.duration is not None and not settings.duration > 0:
        raise RunnerError(f"`duration` must be above 0 seconds, got {settings.duration}", field="duration")
    if isinstance(settings.warmup, bool) or not isinstance(settings.warmup, int) or settings.warmup < 0:
        raise RunnerError(f"`warmup` must be a whole number of at least 0, got {settings.warmup!r}", field="warmup")


__all__ = [  # what the load test's callers use, wherever it lives
    "PROTOCOLS",
    "LoadReport",
    "LoadRow",
    "LoadSettings",
    "ServerStats",
    "Target",
    "check_batches",
    "check_settings",
    "connect_model",
    "folder_images",
    "machine_line",
    "make_client",
    "parse_url",
    "run_load_test",
]
