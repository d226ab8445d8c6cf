"""Where the CPU INT8 time goes: per-layer FP32 vs INT8 throughput in ONNX Runtime.

    python scripts/int8_cpu_layers.py FP32.onnx INT8.onnx [--threads N] [--iters N] [--json OUT]

Profiles both models with ONNX Runtime's node profiler at batch 1 and groups the convolutions by
kind (the 7x7 stem, 3x3, 1x1), reporting GMAC/s for each precision and their ratio, so the INT8
speed-up can be read per layer kind rather than end to end. When OpenVINO is installed (an optional
extra) the same two files are also timed end to end there, in FP32 compute, as a second INT8
runtime on the same CPU. Run by scripts/bench_resnet50_cpu.sh; the README's "Benchmarks" quotes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
from resnet_deploy.evaluate.bench import PAUSE_SECONDS, describe_machine  # noqa: E402


def _numel(shape: list[int]) -> int:
    return int(np.prod(shape)) if shape else 1


def _shapes(entries: list[dict[str, list[int]]]) -> list[list[int]]:
    return [next(iter(e.values())) for e in entries]


def _conv_kind(weight: list[int]) -> str:
    kh, kw = weight[2], weight[3]
    if kh == 7:
        return "stem 7x7"
    return f"{kh}x{kw} conv"


def batch_of_one(session: ort.InferenceSession) -> np.ndarray:
    """A random batch of one image in the session's input shape."""
    sample = session.get_inputs()[0].shape[1:]
    return np.random.default_rng(0).random((1, *sample), dtype=np.float32)


def weight_shapes(path: str) -> dict[str, list[int]]:
    """Weight shape of every Conv/Gemm node of the source model, by node name.

    ONNX Runtime prepacks quantized weights and leaves them out of its profile, so the int8
    nodes' kernel sizes are read here; a Q/DQ weight is followed back through its
    DequantizeLinear to the initializer.
    """
    model = onnx.load(path, load_external_data=False)
    initializers = {t.name: list(t.dims) for t in model.graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    shapes = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            weight = dequantized.get(node.input[1], node.input[1])
            if weight in initializers:
                shapes[node.name] = initializers[weight]
    return shapes


def _classify(op: str, weight: list[int] | None, outputs: list[list[int]]) -> tuple[str, int]:
    """(layer kind, multiply-accumulates) of one profiled node."""
    if weight is None or not outputs:
        return ("residual add" if op == "QLinearAdd" else "other"), 0
    if op in ("Conv", "QLinearConv", "FusedConv"):
        return _conv_kind(weight), _numel(outputs[0]) * _numel(weight) // weight[0]
    if op in ("Gemm", "QGemm"):
        return "fc", _numel(weight) * outputs[0][0]
    return "other", 0


def profile_layers(path: str, threads: int, iters: int) -> dict[str, dict[str, float]]:
    """Median per-node kernel time over ``iters`` runs, summed per layer kind."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "prof")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        x = batch_of_one(session)
        for _ in range(iters + 3):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    weights = weight_shapes(path)
    per_node: dict[str, list[float]] = defaultdict(list)
    info: dict[str, tuple[str, int]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        args = event["args"]
        node = event["name"].removesuffix("_kernel_time")
        per_node[node].append(event["dur"])
        inputs = _shapes(args["input_type_shape"])
        # FP32 nodes keep their weights in the profile; fused/renamed int8 nodes keep the
        # source node's name with a "_token_N" suffix.
        weight = weights.get(node.split("_token_")[0])
        if weight is None and args["op_name"] in ("Conv", "FusedConv", "Gemm") and len(inputs) > 1:
            weight = inputs[1]
        info[node] = _classify(args["op_name"], weight, _shapes(args["output_type_shape"]))
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"nodes": 0, "gmac": 0.0, "ms": 0.0})
    for node, durations in per_node.items():
        kind, macs = info[node]
        row = kinds[kind]
        row["nodes"] += 1
        row["gmac"] += macs / 1e9
        # Drop the warm-up runs, then take the median of the steady state.
        row["ms"] += statistics.median(durations[3:] or durations) / 1e3
    return dict(kinds)


def _ort_session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _ort_runner(session: ort.InferenceSession, x: np.ndarray) -> Callable[[], Any]:
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def _openvino_runner(path: str, threads: int, x: np.ndarray) -> Callable[[], Any]:
    """OpenVINO through the runner's backend, which asks for FP32 compute: OpenVINO's own default on a
    CPU with AVX-512 BF16 or AMX is bfloat16, which an earlier copy of this function timed as "fp32"."""
    from resnet_deploy.runtime.openvino_backend import OpenVinoBackend, openvino_installed

    if not openvino_installed():
        raise ImportError("openvino")
    backend = OpenVinoBackend(path, threads=threads)
    return lambda: backend.infer(x)


def end_to_end(runs: dict[str, Callable[[], Any]], rounds: int, per_round: int) -> dict[str, float]:
    """p50 ms per run, timed in alternating blocks with a pause between them, as `resnet-deploy bench`
    times them (ONNX Runtime here runs the profiled sessions themselves, hence this small copy of the loop)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(PAUSE_SECONDS)  # let the previous runtime's spinning threads park
            for _ in range(3):
                run()
            for _ in range(per_round):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def _rate(gmac: float, ms: float) -> str:
    return f"{gmac / ms * 1e3:11.1f}" if gmac and ms else f"{'':11s}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32")
    parser.add_argument("int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    fp32 = profile_layers(args.fp32, args.threads, args.iters)
    int8 = profile_layers(args.int8, args.threads, args.iters)
    rows = []
    print(
        f"{'layers':14s} {'nodes':>5s} {'GMAC':>6s} {'fp32 ms':>8s} {'int8 ms':>8s} "
        f"{'fp32 GMAC/s':>11s} {'int8 GMAC/s':>11s} {'int8 speed-up':>13s}"
    )
    for kind in sorted(set(fp32) | set(int8)):
        a, b = fp32.get(kind), int8.get(kind)
        fp32_ms = a["ms"] if a else 0.0
        int8_ms = b["ms"] if b else 0.0
        gmac = (a or b or {"gmac": 0.0})["gmac"]
        row = {
            "layers": kind,
            "nodes": int((b or a or {"nodes": 0})["nodes"]),
            "gmac": gmac,
            "fp32_ms": fp32_ms,
            "int8_ms": int8_ms,
            "speedup": fp32_ms / int8_ms if fp32_ms and int8_ms else None,
        }
        rows.append(row)
        speedup = f"{row['speedup']:12.2f}x" if row["speedup"] else f"{'':13s}"
        print(
            f"{kind:14s} {row['nodes']:5d} {gmac:6.2f} {fp32_ms:8.2f} {int8_ms:8.2f} "
            f"{_rate(gmac, fp32_ms)} {_rate(gmac, int8_ms)} {speedup}"
        )
    total_fp32 = sum(r["fp32_ms"] for r in rows)
    total_int8 = sum(r["int8_ms"] for r in rows)
    print(
        f"{'all kernels':14s} {'':5s} {'':6s} {total_fp32:8.2f} {total_int8:8.2f} "
        f"{'':11s} {'':11s} {total_fp32 / total_int8:12.2f}x"
    )

    fp32_session = _ort_session(args.fp32, args.threads)
    x = batch_of_one(fp32_session)
    runs = {
        "onnxruntime fp32": _ort_runner(fp32_session, x),
        "onnxruntime int8": _ort_runner(_ort_session(args.int8, args.threads), x),
    }
    try:
        runs["openvino fp32"] = _openvino_runner(args.fp32, args.threads, x)
        runs["openvino int8"] = _openvino_runner(args.int8, args.threads, x)
    except ImportError:
        print("(openvino not installed: only ONNX Runtime timed end to end)")
    p50 = end_to_end(runs, rounds=6, per_round=8)
    baseline = p50["onnxruntime fp32"]
    print("\nend to end, batch 1, p50:")
    for name, ms in p50.items():
        print(f"  {name:18s} {ms:7.1f} ms   {baseline / ms:5.2f}x of onnxruntime fp32")

    if args.json:
        result = {
            "machine": describe_machine(args.threads),
            "layers": rows,
            "kernels_fp32_ms": total_fp32,
            "kernels_int8_ms": total_int8,
            "end_to_end_p50_ms": p50,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
