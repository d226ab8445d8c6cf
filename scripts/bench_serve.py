"""A ResNet-50 served by ``resnet-deploy serve`` (Triton through PyTriton, dynamic batching on) against the same
ONNX in-process, on the CPU: images/s at the same batch and threads, and the server's latency percentiles.

    python scripts/bench_serve.py [--model r50.onnx] [--batch 8] [--threads N] [--seconds 12]
                                  [--concurrency 1,4,16] [--protocol grpc] [--out scripts/results] [--no-save]
    python scripts/bench_serve.py --quick --model tiny.onnx --no-save      # the script checked in seconds
    python scripts/bench_serve.py --render scripts/results/serve-resnet50-avx512-vnni.json

Without ``--model``, exports a random-weight ResNet-50 with ``resnet-deploy export --depth 50`` into a
temporary directory. Then, in one run:

1. the in-process runner (``Runner.load(model, backend="onnxruntime", threads=N)``): ``infer`` on a random
   batch, back to back for ``--seconds``, at batch 1 and at ``--batch``: images/s and latency;
2. ``resnet-deploy serve MODEL --backend onnxruntime --threads N --max-batch B`` started in the serving
   environment (``.venv-serve``: PyTriton pins numpy<2), one instance, dynamic batching on (its
   defaults: 500 us queue delay); then the load generator of ``resnet-deploy load-test``
   (:mod:`resnet_deploy.serve.load_test`) over ``--protocol`` at each ``--concurrency``, with requests of
   ``--batch`` images and of 1 image (Triton then forms the batches), ``--seconds`` measured per setting
   after one request per thread of warm-up. Beside each setting: the server's own counters (Triton's
   Prometheus metrics: requests, executions, mean batch run, queue and compute time per request) and
   the CPU the server's processes and this client used (from /proc);
3. the in-process runner again (the machine drifts: the reference is the mean of both).

The claim: served images/s at batch B reach at least ``RATIO_GOAL`` (0.8) of the in-process runner's at
batch B (the median over the concurrencies). On a machine with few cores the client (this process) and the
server share them, which the report shows. Writes OUT/serve-<arch>-<kind>.{json,txt}, <kind> being
``machine.cpu_kind`` (amx, avx512-vnni, avx-vnni, avx2, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
SERVE_PYTHON = Path(os.environ.get("RESNET_DEPLOY_SERVE_PYTHON", ROOT / ".venv-serve" / "bin" / "python"))
RATIO_GOAL = 0.8
PAUSE_S = 0.5
COUNTERS = {
    "success": "nv_inference_request_success",
    "inferences": "nv_inference_count",
    "executions": "nv_inference_exec_count",
    "queue_us": "nv_inference_queue_duration_us",
    "input_us": "nv_inference_compute_input_duration_us",
    "infer_us": "nv_inference_compute_infer_duration_us",
    "output_us": "nv_inference_compute_output_duration_us",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an ONNX classifier (default: a random-weight ResNet-50, exported)")
    parser.add_argument("--batch", type=int, default=8, help="images per request, and the server's max batch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime threads, both sides")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per setting")
    parser.add_argument("--concurrency", default="1,4,16", help="requests outstanding, comma-separated")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="grpc")
    parser.add_argument("--quick", action="store_true", help="1 s per setting, concurrency 1,4")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true", help="print the report only")
    parser.add_argument("--render", type=Path, help="only judge and rewrite the text report of a saved JSON result")
    args = parser.parse_args(argv)
    args.concurrency = tuple(int(c) for c in args.concurrency.split(","))
    if args.quick:
        args.seconds, args.concurrency = 1.0, (1, 4)
    if args.batch < 1 or args.threads < 1 or args.seconds <= 0 or min(args.concurrency) < 1:
        parser.error("--batch, --threads, --seconds and --concurrency must be positive")
    return args


# ---------------------------------------------------------------- the model, the runner


def export_resnet50(work: Path) -> Path:
    """A random-weight ResNet-50 ONNX, made by the CLI as a user would."""
    path = work / "r50.onnx"
    command = [sys.executable, "-m", "resnet_deploy", "export", "--depth", "50", "-o", str(path)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    return path


def time_runner(runner: Any, batch: int, seconds: float) -> dict[str, Any]:
    """The runner's ``infer`` back to back on one random batch for ``seconds``: images/s and latency."""
    shape = (batch, *(int(d) for d in runner.backend.input_shape))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    runner.infer(x)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        runner.infer(x)
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    time.sleep(PAUSE_S)  # ONNX Runtime's threads spin a moment after a call: let them park before the server works
    ms = np.array(times) * 1000
    return {
        "batch": batch,
        "calls": len(times),
        "seconds": wall,
        "images_per_s": len(times) * batch / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "max_ms": float(ms.max()),
    }


# ---------------------------------------------------------------- the server


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Server:
    """``resnet-deploy serve`` in the serving environment, on free loopback ports, until ``stop``."""

    def __init__(self, model: Path, batch: int, threads: int) -> None:
        if not SERVE_PYTHON.exists():
            raise SystemExit(f"needs the serving environment {SERVE_PYTHON}: RESNET_DEPLOY_VENV=.venv-serve bash -c "
                             "'source scripts/_venv.sh serve'")  # fmt: skip
        self.ports = free_ports(3)
        command = [
            str(SERVE_PYTHON), "-m", "resnet_deploy", "serve", str(model), "--json", "--backend", "onnxruntime",
            "--threads", str(threads), "--max-batch", str(batch), "--instances", "1",
            "--http-port", str(self.ports[0]), "--grpc-port", str(self.ports[1]), "--metrics-port", str(self.ports[2]),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()  # type: ignore[arg-type]
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the ready line, or nothing when it failed
        if not line.startswith('{"ready"'):
            self.process.wait(timeout=30)
            raise SystemExit(f"serve did not start:\n{''.join(self.stderr)[-3000:]}")
        self.ready = json.loads(line)

    def url(self, protocol: str) -> str:
        return f"127.0.0.1:{self.ports[0] if protocol == 'http' else self.ports[1]}"

    def counters(self, model: str) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[2]}/metrics") as answer:
            text = answer.read().decode()
        out = dict.fromkeys(COUNTERS, 0.0)
        for line in text.splitlines():
            for key, metric in COUNTERS.items():
                if line.startswith(f'{metric}{{model="{model}"'):
                    out[key] = float(line.rsplit(" ", 1)[1])
        return out

    def cpu_seconds(self) -> float:
        """User and system CPU seconds of the server and every process under it (Triton, its stubs)."""
        ticks = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        used: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks

        def under(pid: int) -> bool:
            while pid > 1:
                if pid == self.process.pid:
                    return True
                pid = parents.get(pid, 0)
            return False

        return sum(seconds for pid, seconds in used.items() if under(pid))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def load(server: Server, protocol: str, batch: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """One setting through the load generator, with the server's counters and both sides' CPU around it."""
    from resnet_deploy.serve.load_test import LoadSettings, connect_model, run_load_test

    name = server.ready["model"]
    target = connect_model(server.url(protocol), protocol, name)
    settings = LoadSettings(concurrency=(concurrency,), batches=(batch,), duration=seconds, warmup=concurrency)
    before, server_cpu0, client_cpu0, wall0 = (
        server.counters(name), server.cpu_seconds(), time.process_time(), time.perf_counter()
    )  # fmt: skip
    report = run_load_test(target, settings)
    time.sleep(0.2)  # the server counts just after it answers
    after, server_cpu1, client_cpu1, wall1 = (
        server.counters(name), server.cpu_seconds(), time.process_time(), time.perf_counter()
    )  # fmt: skip
    (row,) = report.rows
    d = {key: after[key] - before[key] for key in COUNTERS}
    per = max(d["success"], 1)
    wall = wall1 - wall0
    return {
        **row.to_dict(),
        "server_counted": int(d["success"]),  # warm-up included
        "server_mean_batch": d["inferences"] / d["executions"] if d["executions"] else 0.0,
        "server_queue_ms": d["queue_us"] / per / 1000,
        "server_compute_ms": (d["input_us"] + d["infer_us"] + d["output_us"]) / per / 1000,
        "server_infer_ms": d["infer_us"] / per / 1000,
        "server_cpu": (server_cpu1 - server_cpu0) / wall,  # cores, over warm-up and window
        "client_cpu_setting": (client_cpu1 - client_cpu0) / wall,
        "report_notes": list(report.notes),
    }


# ---------------------------------------------------------------- the report


def machine(threads: int) -> dict[str, Any]:
    from importlib import metadata

    from resnet_deploy.runtime.machine import describe_host

    versions = (
        "import importlib.metadata as m; print(*(m.version(n) for n in ('nvidia-pytriton', 'onnxruntime', 'numpy')))"
    )
    serving = subprocess.run(
        [str(SERVE_PYTHON), "-c", versions],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        **describe_host(),
        "threads": threads,
        "onnxruntime": metadata.version("onnxruntime"),
        "tritonclient": metadata.version("tritonclient"),
        "numpy": np.__version__,
        "serving": {"pytriton": serving[0], "onnxruntime": serving[1], "numpy": serving[2]},
    }


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The ratios: served images/s over the in-process runner's at the same batch, timed just before and just
    after that setting (their mean). The claim is judged on the median over the concurrencies at batch B, so
    that one setting caught in a quiet (or busy) moment of a shared machine does not decide it."""
    batch = result["batch"]
    for row in result["served"]:
        row["ratio"] = row["images_per_s"] / row["runner_images_per_s"]
    rows = [r for r in result["served"] if r["batch"] == batch]
    ratios = [r["ratio"] for r in rows]
    return {
        "ratios": {str(r["concurrency"]): r["ratio"] for r in rows},
        "median": float(np.median(ratios)),
        "min": min(ratios),
        "max": max(ratios),
        "goal": RATIO_GOAL,
        "met": float(np.median(ratios)) >= RATIO_GOAL,
    }


def render(result: dict[str, Any]) -> str:
    m, v, batch = result["machine"], result["verdict"], result["batch"]
    s = m["serving"]
    lines = [
        f"{m['cpu']} ({m['instruction_sets']}), {m['cores']} cores, {m['threads']} ONNX Runtime threads on both "
        f"sides; {m['os']}, Python {m['python']}; client: onnxruntime {m['onnxruntime']}, tritonclient "
        f"{m['tritonclient']}, numpy {m['numpy']}; server: PyTriton {s['pytriton']} (Triton "
        f"{result['triton_version']}), onnxruntime {s['onnxruntime']}, numpy {s['numpy']}",
        f"model: {result['model']}; server: resnet-deploy serve --backend onnxruntime --threads {m['threads']} "
        f"--max-batch {batch} (one instance, dynamic batching, 500 us queue delay); load: {result['protocol']}, "
        f"{result['seconds']:g} s measured per setting after one warm-up request per thread",
        "",
        "in-process runner (ONNX Runtime), in blocks between the served settings (block 0 before the first):",
        f"{'batch':>5} {'block':>5} {'images/s':>9} {'p50 ms':>9} {'p90 ms':>9} {'calls':>6}",
    ]
    for r in result["runner"]:
        lines.append(
            f"{r['batch']:>5} {r['block']:>5} {r['images_per_s']:>9.2f} {r['p50_ms']:>9.1f} {r['p90_ms']:>9.1f} "
            f"{r['calls']:>6}"
        )
    lines += [
        "",
        "served (load-test), requests of `batch` images with `conc` outstanding:",
        f"{'batch':>5} {'conc':>5} {'reqs':>5} {'err':>4} {'images/s':>9} {'runner':>7} {'vs runner':>9} "
        f"{'p50 ms':>9} "
        f"{'p90 ms':>9} {'p99 ms':>9} {'srv batch':>9} {'srv queue':>9} {'srv compute':>11} {'srv CPU':>7} "
        f"{'client CPU':>10}",
    ]
    for r in result["served"]:
        lines.append(
            f"{r['batch']:>5} {r['concurrency']:>5} {r['requests']:>5} {r['errors']:>4} {r['images_per_s']:>9.2f} "
            f"{r['runner_images_per_s']:>7.2f} {r['ratio']:>8.2f}x {r['p50_ms']:>9.1f} {r['p90_ms']:>9.1f} "
            f"{r['p99_ms']:>9.1f} "
            f"{r['server_mean_batch']:>9.2f} {r['server_queue_ms']:>9.1f} {r['server_compute_ms']:>11.1f} "
            f"{r['server_cpu']:>7.2f} {r['client_cpu_setting']:>10.2f}"
        )
    lines += [
        "",
        "runner: the runner's images/s at the same batch in the blocks just before and after the setting (their "
        "mean); vs runner: served over it; srv batch: "
        "the mean batch Triton ran; srv queue, srv compute: ms per request in Triton's queue and in the model "
        "(Triton's metrics, warm-up included); srv CPU, client CPU: cores the server's processes and this client "
        "kept busy; p99 of fewer than 100 requests: the slowest",
        f"batch {batch}: served over in-process images/s at concurrency "
        + ", ".join(f"{c}: {r:.2f}x" for c, r in v["ratios"].items())
        + f"; median {v['median']:.2f}x (goal {v['goal']}x: {'met' if v['met'] else 'NOT met'})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        from resnet_deploy._io import write_report

        result = json.loads(args.render.read_text())
        result["verdict"] = verdict(result)
        text = render(result)
        print(text)
        if not args.no_save:
            write_report(args.render.with_suffix(""), result, text)
        return 0
    started = time.perf_counter()
    from resnet_deploy.runtime import Runner
    from resnet_deploy.serve.load_test import make_client

    runner_rows: list[dict[str, Any]] = []
    served: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_resnet50(Path(tmp))
        server = Server(model, args.batch, args.threads)
        try:
            triton_version = make_client(server.url("http"), "http").get_server_metadata()["version"]
            with Runner.load(model, backend="onnxruntime", threads=args.threads) as runner:
                # runner, setting, runner, setting, ..., runner: each setting between two runner blocks of its
                # batch, so the machine's drift (other load, heat) hits both sides alike
                for batch in sorted({1, args.batch}, reverse=True):
                    runner_rows.append({**time_runner(runner, batch, args.seconds), "block": 0})
                    for block, concurrency in enumerate(args.concurrency, 1):
                        row = load(server, args.protocol, batch, concurrency, args.seconds)
                        runner_rows.append({**time_runner(runner, batch, args.seconds), "block": block})
                        around = runner_rows[-2:]
                        row["runner_images_per_s"] = float(np.mean([r["images_per_s"] for r in around]))
                        served.append(row)
                        print(
                            f"batch {batch}, concurrency {concurrency}: served {row['images_per_s']:.2f} images/s "
                            f"(p50 {row['p50_ms']:.1f} ms); runner before and after: "
                            f"{around[0]['images_per_s']:.2f}, {around[1]['images_per_s']:.2f}",
                            flush=True,
                        )
        finally:
            server.stop()
    result: dict[str, Any] = {
        "model": "random-weight ResNet-50 (resnet-deploy export --depth 50)" if args.model is None else str(args.model),
        "batch": args.batch,
        "protocol": args.protocol,
        "seconds": args.seconds,
        "concurrency": list(args.concurrency),
        "triton_version": triton_version,
        "machine": machine(args.threads),
        "runner": runner_rows,
        "served": served,
        "wall_s": 0.0,
    }
    result["verdict"] = verdict(result)
    result["wall_s"] = time.perf_counter() - started
    text = render(result)
    print(text)
    if not args.no_save:
        from resnet_deploy._io import write_report

        arch = "resnet50" if args.model is None else args.model.name.split(".")[0]
        for path in write_report(args.out / f"serve-{arch}-{result['machine']['kind']}", result, text):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
