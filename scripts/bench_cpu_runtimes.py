"""ONNX Runtime vs OpenVINO on this CPU: ResNet-50 FP32, FP16 and both INT8 forms, batch 1 and 8.

    python scripts/bench_cpu_runtimes.py [--threads N] [--iters 24] [--out scripts/results] [--no-save]
    python scripts/bench_cpu_runtimes.py --render scripts/results/cpu-runtimes-resnet50-avx512-vnni.json

Makes a random-weight ResNet-50 (seed 0) in a temporary directory and its four ONNX artifacts with
the CLI (export; convert --fp16; calibrate --target cpu and --target tensorrt, minmax on 32
images). Then, in this one process:

- latency: every file on ONNX Runtime, on OpenVINO (FP32 precision, as the backend always asks)
  and on ``--backend auto``, plus the FP32 file on OpenVINO in bfloat16 (OpenVINO's own default on
  CPUs with AVX-512 BF16 or AMX), side by side through ``bench.run_bench`` at batch 1 and 8;
- agreement: the largest logit difference and top-1 agreement of OpenVINO (and of OpenVINO in
  bfloat16, for the FP32 file) against ONNX Runtime on the same 8 random images per file;
- throughput: each file on both runtimes at batch 1 and 8 on 1 and 2 streams (``bench.run_throughput``).

It checks the issue's goals and writes them with the numbers: the default path (auto) within noise
of the faster runtime on each file and batch (auto's p50 <= the best p50 x (1 + the larger IQR/p50
of the two rows, at least 5%)), and INT8 (the faster of the two INT8 files on auto) at >= 3x ONNX
Runtime FP32 when the CPU has VNNI. Writes OUT/cpu-runtimes-resnet50-<kind>.{json,txt}, <kind>
being ``machine.cpu_kind`` (amx, avx512-vnni, avx-vnni, avx2, ...), so each kind of CPU keeps its
own result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
FORMS = (  # file, what it is
    ("r50.onnx", "FP32"),
    ("r50.fp16.onnx", "FP16"),
    ("r50.cpu.int8.onnx", "INT8, CPU form (QLinear, u8s8)"),
    ("r50.int8.onnx", "INT8, TensorRT form (Q/DQ, s8s8)"),
)
BATCHES = (1, 8)
MIN_NOISE = 0.05  # "within noise" is never tighter than 5%


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--iters", type=int, default=24, help="timed calls per backend and batch size")
    parser.add_argument("--rounds", type=int, default=5, help="timed throughput rounds per configuration")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true", help="print the report only")
    parser.add_argument("--render", type=Path, help="only rewrite the text report of a saved JSON result")
    return parser.parse_args(argv)


def make_artifacts(work: Path) -> None:
    import torch

    from resnet_deploy import build_model, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(build_model(50), work / "r50.pt", {})
    cli = [sys.executable, "-m", "resnet_deploy"]
    calibrate = ["calibrate", "r50.onnx", "--method", "minmax", "--calib-images", "32", "--no-cache"]
    steps = [
        ["export", "--checkpoint", "r50.pt", "-o", "r50.onnx"],
        ["convert", "r50.onnx", "--fp16", "-o", "r50.fp16.onnx"],
        [*calibrate, "--target", "cpu", "-o", "r50.cpu.int8.onnx"],
        [*calibrate, "--target", "tensorrt", "-o", "r50.int8.onnx"],
    ]
    for step in steps:
        subprocess.run([*cli, *step], cwd=work, check=True, stdout=subprocess.DEVNULL)


def agreement(work: Path, threads: int) -> list[dict[str, Any]]:
    """OpenVINO against ONNX Runtime on the same 8 random images, per file; bfloat16 against FP32."""
    from resnet_deploy.runtime import open_backend

    x = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    rows = []
    for name, _ in FORMS:
        with open_backend(work / name, backend="onnxruntime", threads=threads) as ort_backend:
            reference = ort_backend.infer(x)
        pairs = [("openvino", {})] + (
            [("openvino bf16", {"inference_precision": "bf16"})] if name == "r50.onnx" else []
        )
        for label, options in pairs:
            with open_backend(work / name, backend="openvino", threads=threads, **options) as ov_backend:
                logits = ov_backend.infer(x)
            rows.append(
                {
                    "file": name,
                    "runtime": label,
                    "max_abs_logit_difference": float(np.abs(logits - reference).max()),
                    "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
                }
            )
    return rows


def latency(work: Path, threads: int, iters: int) -> tuple[dict[str, Any], dict[str, str]]:
    from contextlib import ExitStack

    from resnet_deploy.evaluate.bench import run_bench
    from resnet_deploy.runtime import open_backend

    chosen: dict[str, str] = {}
    with ExitStack() as stack:
        backends = []
        for name, _ in FORMS:
            for runtime in ("onnxruntime", "openvino", "auto"):
                backend = stack.enter_context(open_backend(work / name, backend=runtime, threads=threads))
                backends.append(backend)
                if runtime == "auto":
                    chosen[name] = backend.chosen_because
            if name == "r50.onnx":
                backends.append(
                    stack.enter_context(
                        open_backend(work / name, backend="openvino", threads=threads, inference_precision="bf16")
                    )
                )
        report = run_bench(backends, list(BATCHES), warmup=3, iters=iters, threads=threads)
    return report.to_dict(), chosen


def throughput(work: Path, threads: int, rounds: int) -> dict[str, Any]:
    from resnet_deploy.evaluate.bench import run_throughput
    from resnet_deploy.runtime import Backend, open_backend

    def open_all(streams: int) -> list[Backend]:
        return [
            open_backend(work / name, backend=runtime, threads=threads, streams=streams)
            for name, _ in FORMS
            for runtime in ("onnxruntime", "openvino")
        ]

    return run_throughput(open_all, list(BATCHES), [1, 2], rounds=rounds, threads=threads).to_dict()


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's two goals, from the latency rows."""
    rows = {(r["label"], r["batch"]): r for r in result["latency"]["rows"]}
    auto_rows = []
    for name, _ in FORMS:
        for batch in BATCHES:
            auto = rows[(f"{name} (auto)", batch)]
            pair = [rows[(f"{name} (onnxruntime)", batch)], rows[(f"{name} (openvino)", batch)]]
            best = min(pair, key=lambda r: r["p50_ms"])
            noise = max(MIN_NOISE, *(r["spread"] for r in (auto, best)))
            ratio = auto["p50_ms"] / best["p50_ms"]
            auto_rows.append(
                {
                    "file": name,
                    "batch": batch,
                    "auto_runtime": auto["backend"],
                    "auto_p50_ms": auto["p50_ms"],
                    "best_runtime": best["backend"],
                    "best_p50_ms": best["p50_ms"],
                    "auto_over_best": ratio,
                    "noise": noise,
                    "met": ratio <= 1 + noise,
                }
            )
    int8_rows = []
    for batch in BATCHES:
        fp32 = rows[("r50.onnx (onnxruntime)", batch)]["p50_ms"]
        int8 = min(
            (rows[(f"{name} (auto)", batch)] for name in ("r50.cpu.int8.onnx", "r50.int8.onnx")),
            key=lambda r: r["p50_ms"],
        )
        int8_rows.append(
            {
                "batch": batch,
                "int8_file": int8["artifact"],
                "int8_runtime": int8["backend"],
                "int8_p50_ms": int8["p50_ms"],
            }
            | {"ort_fp32_p50_ms": fp32, "speedup": fp32 / int8["p50_ms"]}
        )
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(result["machine"]["isa"]))
    return {
        "auto_never_slower": {"met": all(r["met"] for r in auto_rows), "rows": auto_rows},
        "int8_vs_ort_fp32": {
            "goal": 3.0 if vnni else None,
            "met": all(r["speedup"] >= 3.0 for r in int8_rows) if vnni else None,
            "rows": int8_rows,
        },
    }


def render(result: dict[str, Any]) -> str:
    from resnet_deploy.runtime.machine import describe_isa

    m = result["machine"]
    lines = [
        f"ResNet-50 (random weights) on {m['cpu']} ({describe_isa(m['isa'])}), {m['cores']} cores, "
        f"{result['threads']} threads; onnxruntime {m.get('onnxruntime')}, openvino {m.get('openvino')}",
        "",
        "Latency, p50 ms (one process, alternating blocks; IQR/p50 in brackets):",
    ]
    rows = {(r["label"], r["batch"]): r for r in result["latency"]["rows"]}
    lines.append(f"{'file':<20} {'runtime':<16}" + "".join(f" {'batch ' + str(b):>16}" for b in BATCHES))
    for label in dict.fromkeys(r["label"] for r in result["latency"]["rows"]):
        first = rows[(label, BATCHES[0])]
        runtime = label.split(" (", 1)[1].rstrip(")")
        runtime = f"auto -> {first['backend']}" if runtime == "auto" else runtime
        cells = "".join(f" {rows[(label, b)]['p50_ms']:>8.1f} ({rows[(label, b)]['spread']:>4.0%})" for b in BATCHES)
        lines.append(f"{first['artifact']:<20} {runtime:<16}{cells}")
    lines += ["", "How auto chose (timed at load, batch 1):"]
    lines += [f"  {name}: {why}" for name, why in result["auto_chosen_because"].items()]
    lines += ["", "OpenVINO against ONNX Runtime, same 8 random images:"]
    for r in result["agreement"]:
        lines.append(
            f"  {r['file']:<20} {r['runtime']:<14} max |logit difference| {r['max_abs_logit_difference']:.3g}, "
            f"top-1 agreement {r['top1_agreement']:.0%}"
        )
    g = result["goals"]
    lines += ["", "Goal: the default path (auto) within noise of the faster runtime on the same file"]
    for r in g["auto_never_slower"]["rows"]:
        lines.append(
            f"  {r['file']:<20} batch {r['batch']}: auto ({r['auto_runtime']}) {r['auto_p50_ms']:.1f} ms, best "
            f"({r['best_runtime']}) {r['best_p50_ms']:.1f} ms: {r['auto_over_best']:.2f}x, noise {r['noise']:.0%}: "
            + ("met" if r["met"] else "NOT met")
        )
    i8 = g["int8_vs_ort_fp32"]
    goal = f">= {i8['goal']:g}x" if i8["goal"] else "no goal without VNNI"
    lines.append(f"Goal: INT8 vs ONNX Runtime FP32 ({goal})")
    for r in i8["rows"]:
        lines.append(
            f"  batch {r['batch']}: {r['int8_file']} on {r['int8_runtime']} {r['int8_p50_ms']:.1f} ms vs "
            f"{r['ort_fp32_p50_ms']:.1f} ms: {r['speedup']:.2f}x"
            + ("" if i8["met"] is None else (" met" if r["speedup"] >= 3.0 else " NOT met"))
        )
    lines += ["", "Throughput, images/s (median of rounds; * the best configuration of the file on its runtime):"]
    for r in result["throughput"]["rows"]:
        lines.append(
            f"  {r['artifact']:<20} {r['backend']:<12} batch {r['batch']:>2}, {r['streams']} stream"
            f"{'s' if r['streams'] > 1 else ' '}: {r['images_per_second']:>7.1f}" + (" *" if r["best"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from resnet_deploy.runtime.machine import cpu_kind

    args = parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".txt").write_text(render(result) + "\n")
        print(render(result))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("making the four ResNet-50 artifacts ...", file=sys.stderr)
        make_artifacts(work)
        print("agreement ...", file=sys.stderr)
        agreed = agreement(work, args.threads)
        print("latency ...", file=sys.stderr)
        timed, chosen = latency(work, args.threads, args.iters)
        print("throughput ...", file=sys.stderr)
        served = throughput(work, args.threads, args.rounds)
    result: dict[str, Any] = {
        "machine": timed["machine"],
        "threads": args.threads,
        "latency": timed,
        "auto_chosen_because": chosen,
        "agreement": agreed,
        "throughput": served,
    }
    result["goals"] = goals(result)
    text = render(result)
    print(text)
    if not args.no_save:
        from resnet_deploy._io import write_report

        written = write_report(args.out / f"cpu-runtimes-resnet50-{cpu_kind(result['machine']['isa'])}", result, text)
        print(f"wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
