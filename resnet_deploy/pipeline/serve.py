"""``ServeJob``: an artifact served over Triton's HTTP and gRPC protocol (KServe v2) by a real Triton
server (PyTriton), our runner behind it, until Ctrl-C or SIGTERM.

    from resnet_deploy.pipeline import ServeJob, plan, run

    run(plan(ServeJob("r50.onnx", http_port=8000, instances=2)))      # blocks; Ctrl-C stops it

``on_ready`` is called with the served model's description (names, input, URLs) once both models
answer; stopping lets requests in flight finish and returns the report.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_deploy.edge.stream import check_whole
from resnet_deploy.errors import RunnerError, Terminated
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.job import Job, runnable_model
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, inputs, last
from resnet_deploy.serve import server  # light: PyTriton and the runtimes load when serving starts
from resnet_deploy.serve.server import ServedModel, ServeSettings


@dataclass(frozen=True)
class ServeReport:
    """What was served, and how it stopped ("interrupted", "terminated" or "stopped")."""

    served: ServedModel
    ended: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.served.to_dict(), "ended": self.ended}


@dataclass(frozen=True)
class ServeJob(Job[ServeReport]):
    """Serve ``model`` (an engine, an ONNX on ``backend``, a checkpoint) as Triton models ``name`` and
    ``name``_images on ``host`` (loopback by default; ``0.0.0.0`` for every interface).

    ``instances`` runners answer in parallel; Triton batches requests up to ``max_batch``, waiting
    ``max_queue_delay_us`` for a batch to fill, aiming for ``preferred_batch`` sizes. ``threads``: CPU
    threads of each ONNX runner. ``topk``: the classes the images model returns per image. Stopping waits up
    to ``exit_timeout_s`` for requests in flight (and for clients' idle connections to close)."""

    command = "serve"

    # the library's defaults are ServeSettings' own
    model: str | Path | None = None
    host: str = ServeSettings.host
    http_port: int = ServeSettings.http_port
    grpc_port: int = ServeSettings.grpc_port
    metrics_port: int = ServeSettings.metrics_port
    name: str | None = None
    backend: str = ServeSettings.backend
    instances: int = ServeSettings.instances
    max_batch: int = ServeSettings.max_batch
    max_queue_delay_us: int = ServeSettings.max_queue_delay_us
    preferred_batch: tuple[int, ...] = ()
    threads: int | None = None
    topk: int = ServeSettings.topk
    exit_timeout_s: int = ServeSettings.exit_timeout_s
    log_file: str | Path | None = None
    overwrite: bool = False
    on_ready: Callable[[ServedModel], None] | None = field(default=None, compare=False, repr=False)

    def plan(self) -> Plan[ServeReport]:
        model = runnable_model(self.model, self.backend, "to serve")
        for name in ("instances", "max_batch", "topk"):
            check_whole(name, getattr(self, name), 1)
        check_whole("max_queue_delay_us", self.max_queue_delay_us, 0)
        check_whole("exit_timeout_s", self.exit_timeout_s, 0)
        check_whole("threads", self.threads, 1, optional=True)
        for size in self.preferred_batch:
            check_whole("preferred_batch", size, 1)
        if any(size > self.max_batch for size in self.preferred_batch):
            raise RunnerError(
                f"`preferred_batch` {list(self.preferred_batch)} has a size over `max_batch` {self.max_batch}",
                field="preferred_batch",
            )
        _check_host(self.host)
        ports = {"http_port": self.http_port, "grpc_port": self.grpc_port, "metrics_port": self.metrics_port}
        for name, port in ports.items():
            check_whole(name, port, 1)
            if port > 65535:
                raise RunnerError(f"`{name}` {port} is not a port (1 to 65535)", field=name)
        if len(set(ports.values())) < len(ports):
            raise RunnerError("`http_port`, `grpc_port` and `metrics_port` must differ", field="http_port")
        server.model_name(model, self.name)  # a name Triton refuses: one line now
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(ServeSettings) if hasattr(self, f.name)}
        given.update(
            preferred_batch=tuple(self.preferred_batch), log_file=Path(self.log_file) if self.log_file else None
        )
        settings = ServeSettings(**given)
        return checked(self.command, [Serve(model, settings, self.on_ready)], last, overwrite=self.overwrite)


def _anything_ours(path: Path) -> bool:
    """The processes' log beside a Triton log that is ours: its name says whose it is."""
    return server.is_triton_log(path.with_name(path.name.removesuffix(server.PROCESSES_SUFFIX)))


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise RunnerError(
                f"`host` {host!r} is not an IP address: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
                field="host",
            ) from None


def check_port_free(host: str, port: int, field: str) -> None:
    """One line when ``port`` on ``host`` is taken (Triton's own message is a page of log)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise RunnerError(f"port {port} on {host} {why}: choose another `{field}`", field=field) from None


@dataclass(frozen=True)
class Serve(Step):
    """Start Triton with the runners behind it; serve until Ctrl-C or SIGTERM; stop cleanly."""

    model: Path
    settings: ServeSettings
    on_ready: Callable[[ServedModel], None] | None = field(default=None, compare=False, repr=False)

    @property
    def title(self) -> str:
        s = self.settings
        name = server.model_name(self.model, s.name)
        return (
            f"serve {self.model.name} as Triton models {name} and {name}{server.IMAGES_SUFFIX} on {s.host} "
            f"(HTTP {s.http_port}, gRPC {s.grpc_port}, metrics {s.metrics_port}), {s.instances} instance"
            f"{'s' if s.instances != 1 else ''}, batches up to {s.max_batch}"
        )

    def inputs(self) -> tuple[Input, ...]:
        return inputs((self.model, "model"))

    def outputs(self) -> tuple[Output, ...]:
        """Triton's log and, beside it, what its processes print: Triton's own logs are replaced, nothing else."""
        log = self.settings.log_file
        if log is None:
            return ()
        return (
            Output(log, "Triton log", ours=server.is_triton_log, with_companion=False, field="log_file"),
            Output(server.processes_log(log), "Triton processes' log", ours=_anything_ours, with_companion=False,
                   field="log_file"),
        )  # fmt: skip

    def run(self, out: Messages, earlier: Sequence[Any]) -> ServeReport:
        s = self.settings
        for name in ("http_port", "grpc_port", "metrics_port"):
            check_port_free(s.host, getattr(s, name), name)
        ended = "stopped"
        with server.TritonServer(self.model, s) as triton:
            served = server.served_model(triton)
            described = triton.runners[0].describe()
            urls = served.urls
            out.say(f"{self.model.name} runs on {described.get('backend')} ({s.instances} instance(s))")
            out.say(
                f"serving {served.name} (input {served.input_name} {served.input_dtype} {list(served.input_shape)}) "
                f"and {served.name}{server.IMAGES_SUFFIX} (encoded images) at {urls['http']} (HTTP) and "
                f"{urls['grpc']} (gRPC); metrics at {urls['metrics']}; Ctrl-C stops"
            )
            if self.on_ready is not None:
                self.on_ready(served)
            try:
                triton.wait()
            except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the normal way to stop a server
                ended = "terminated" if isinstance(exc, Terminated) else "interrupted"
                out.say(f"{ended}: stopping Triton; requests in flight finish first")
        out.say("stopped")
        return ServeReport(served, ended)
