"""A real Triton server for the serving tests: ``resnet-deploy serve`` started in the serving environment
(``.venv-serve``: PyTriton pins numpy<2, so it has its own; scripts/test.sh makes it), on 127.0.0.1 and
free ports, stopped at the end. The tests talk to it with tritonclient from this environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVE_PYTHON = Path(os.environ.get("RESNET_DEPLOY_SERVE_PYTHON", ROOT / ".venv-serve" / "bin" / "python"))
START_TIMEOUT_S = 180  # two cores shared with the rest of the suite: Triton, its stubs and the runners


def serving_environment() -> Path:
    """The serving environment's interpreter; the test is skipped when there is none."""
    if not SERVE_PYTHON.exists():
        pytest.skip(f"needs the serving environment {SERVE_PYTHON} (scripts/test.sh makes it)")
    return SERVE_PYTHON


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Served:
    """A running ``resnet-deploy serve``: its process, what it printed when ready, its addresses."""

    process: subprocess.Popen[str]
    ready: dict[str, Any]
    ports: tuple[int, int, int]
    stderr_lines: list[str] = field(default_factory=list)
    stdout_rest: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports[1]}"

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.ports[2]}/metrics"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
        """Send ``sig``; the exit code, the final JSON and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._readers_done()
        text = "".join(self.stdout_rest).strip()
        final = json.loads(text) if text.startswith("{") else {}
        return code, final, "".join(self.stderr_lines)

    def _readers_done(self) -> None:
        for thread in getattr(self, "_threads", []):
            thread.join(timeout=10)


def start_server(model: Path, *args: str) -> Served:
    """``resnet-deploy serve MODEL --json ARGS`` in the serving environment; returns once it is ready."""
    python = serving_environment()
    ports = free_ports(3)
    command = [
        str(python), "-m", "resnet_deploy", "serve", str(model), "--json",
        "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
        *(() if "--exit-timeout" in args else ("--exit-timeout", "2")),  # idle test clients hold no stop long
        *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )
    assert process.stdout is not None and process.stderr is not None
    served = Served(process, {}, (ports[0], ports[1], ports[2]))
    stderr_reader = threading.Thread(target=lambda: served.stderr_lines.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
    stderr_reader.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    ready_line: list[str] = []

    def read_ready() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            if not ready_line and line.startswith('{"ready"'):
                ready_line.append(line)
            else:
                served.stdout_rest.append(line)

    stdout_reader = threading.Thread(target=read_ready, daemon=True)
    stdout_reader.start()
    served._threads = [stderr_reader, stdout_reader]  # type: ignore[attr-defined]
    while not ready_line:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            stderr_reader.join(timeout=5)
            pytest.fail(
                f"serve did not become ready (exit {process.returncode}):\n{''.join(served.stderr_lines)[-3000:]}"
            )
        time.sleep(0.1)
    served.ready = json.loads(ready_line[0])
    return served


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(model, *args)`` starts a server; every server started is stopped after the test."""
    started: list[Served] = []

    def start(model: Path, *args: str) -> Served:
        served = start_server(model, *args)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()
