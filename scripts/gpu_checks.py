"""The two Python parts of ``scripts/gpu_checks.sh``: the preflight, and the summary that ends the run.

    python scripts/gpu_checks.py preflight OUT_DIR [--dry-run]
    python scripts/gpu_checks.py summary OUT_DIR PARTS_DIR [--dry-run]

preflight: what the machine has (GPU, driver, compute mode; torch, torchvision, CUDA runtime and driver
API versions, cuDNN, NCCL, cuda-bindings, NVRTC) and one direct nvJPEG decode (``decode_jpeg(device=
"cuda")``, no fall back), compared with the CPU's decode of the same JPEG. Writes OUT_DIR/preflight.json
and .txt; exit 1 when the GPU, CUDA or nvJPEG does not work. Under --dry-run the same probes run on the
CPU (the decode on the CPU), and a missing GPU is reported, not a failure.

summary: every part's outcome (OUT_DIR/preflight.json, PARTS_DIR/<part>.xml from pytest's --junitxml,
PARTS_DIR/<part>.status with the part's exit code, the train-step benchmark's JSON) as
OUT_DIR/summary.json and .txt, printed last. Exit 0 only when no part failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not

# The parts gpu_checks.sh runs, in its order: (name, what it proves)
PARTS = (
    ("preflight", "GPU, driver, CUDA, cuDNN, NCCL, NVRTC versions; one direct nvJPEG decode"),
    (
        "pytest-gpu",
        "runner on real CUDA (graphs, torch streams, events, memory), nvJPEG training decode, "
        "validate and bench on CUDA",
    ),
    ("pytest-distributed", "1-GPU torchrun == plain run bit for bit; --sync-bn on the GPUs"),
    ("train-step", "scripts/bench_train_step.py: ours / torchvision reference images/s, eager and compiled"),
)
TIMED_OUT = (124, 137)  # timeout(1)'s exit codes: its TERM, then its KILL


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvidia_smi() -> dict[str, str] | str:
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi not found"
    fields = "name,driver_version,compute_mode,memory.total,compute_cap"
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    if done.returncode != 0:
        return f"nvidia-smi failed: {(done.stderr or done.stdout).strip()[:200]}"
    first = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    return dict(zip(fields.split(","), (v.strip() for v in first.split(",")), strict=False))


def _cuda_python() -> dict[str, Any]:
    """The CUDA runtime the bindings carry, the driver's CUDA version and NVRTC's, read through cuda-python."""
    found: dict[str, Any] = {"cuda_bindings": _version("cuda-bindings"), "nvrtc_wheel": _version("nvidia-cuda-nvrtc")}
    try:
        from cuda.bindings import nvrtc, runtime
    except ImportError as exc:
        found["error"] = f"cuda-python does not import: {exc}"
        return found
    error, version = runtime.cudaRuntimeGetVersion()
    found["runtime"] = int(version) if int(error) == 0 else f"error {int(error)}"
    error, version = runtime.cudaDriverGetVersion()
    found["driver_api"] = int(version) if int(error) == 0 else f"error {int(error)}"
    error, major, minor = nvrtc.nvrtcVersion()
    found["nvrtc"] = f"{major}.{minor}" if int(error) == 0 else f"error {int(error)}"
    return found


def _nvjpeg_decode(torch: Any, device: str) -> dict[str, Any]:
    """One JPEG decoded on ``device`` by ``decode_jpeg`` itself (no fall back), against the CPU's decode."""
    import numpy as np
    from PIL import Image
    from torchvision import io as tv_io

    rows = np.add.outer(np.arange(48), np.arange(64))
    grey = (rows * 2 % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey, grey[::-1], 255 - grey], -1)).save(buffer, format="JPEG", quality=90)
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    start = time.perf_counter()
    try:
        image = tv_io.decode_jpeg(data, mode=tv_io.ImageReadMode.RGB, device=device)
        if device != "cpu":
            torch.cuda.synchronize()
    except RuntimeError as exc:
        return {"ok": False, "device": device, "error": str(exc).strip().splitlines()[0]}
    seconds = time.perf_counter() - start
    reference = tv_io.decode_jpeg(data, mode=tv_io.ImageReadMode.RGB)
    difference = (image.cpu().int() - reference.int()).abs()
    return {
        "ok": tuple(image.shape) == (3, 48, 64) and image.device.type == torch.device(device).type,
        "device": str(image.device),
        "shape": list(image.shape),
        "mean_abs_levels_vs_cpu": round(float(difference.float().mean()), 3),
        "max_abs_levels_vs_cpu": int(difference.max()),
        "seconds": round(seconds, 3),
    }


def preflight(dry_run: bool) -> dict[str, Any]:
    import torch
    import torchvision

    from resnet_deploy.runtime.machine import cpu_flags, cpu_name, describe_isa

    isa_flags = cpu_flags()
    result: dict[str, Any] = {
        "dry_run": dry_run,
        "machine": {
            "cpu": cpu_name(),
            "instruction_sets": describe_isa(isa_flags),
            "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
        },
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torchvision": torchvision.__version__,
        "nvidia_smi": _nvidia_smi(),
        "cuda_python": _cuda_python(),
        "problems": [],
    }
    result["cudnn"] = torch.backends.cudnn.version()  # the libraries torch loads, GPU or not
    result["nccl"] = ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.nccl.is_available([]) else None
    result["gpu"] = None
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            result["gpu"] = {
                "name": props.name,
                "count": torch.cuda.device_count(),
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1),
            }
        elif not dry_run:
            result["problems"].append("PyTorch sees no CUDA GPU")
    except Exception as exc:  # CUDA that starts and then fails (a driver mismatch, a GPU in a bad state)
        result["problems"].append(f"CUDA: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
    # the same probe on torchvision's CPU decoder where there is no GPU
    result["nvjpeg"] = _nvjpeg_decode(torch, "cuda" if result["gpu"] else "cpu")
    if not result["nvjpeg"]["ok"]:
        result["problems"].append(f"decode_jpeg: {result['nvjpeg'].get('error', 'a wrong image')}")
    if "error" in result["cuda_python"] and not dry_run:
        result["problems"].append(result["cuda_python"]["error"])
    return result


def render_preflight(result: dict[str, Any]) -> str:
    m = result["machine"]
    gpu = result["gpu"]
    cuda = result["cuda_python"]
    on_gpu = (
        f"; GPU {gpu['name']} x{gpu['count']} (CC {gpu['compute_capability']}, {gpu['memory_gb']} GiB)"
        if gpu
        else "; no GPU"
    )
    lines = [
        f"Machine: {m['cpu']} ({m['instruction_sets']}), {m['cores']} cores, {m['os']}, Python {m['python']}{on_gpu}",
        f"nvidia-smi: {result['nvidia_smi']}",
        f"torch {result['torch']} (CUDA {result['torch_cuda']}), torchvision {result['torchvision']}, "
        f"cuDNN {result.get('cudnn')}, NCCL {result.get('nccl')}",
        f"cuda-bindings {cuda.get('cuda_bindings')}: runtime {cuda.get('runtime')}, "
        f"driver API {cuda.get('driver_api')}, NVRTC {cuda.get('nvrtc')} (wheel {cuda.get('nvrtc_wheel')})"
        + (f"; {cuda['error']}" if "error" in cuda else ""),
    ]
    jpeg = result["nvjpeg"]
    if jpeg["ok"]:
        lines.append(
            f"decode_jpeg on {jpeg['device']}: OK, {jpeg['shape']}, vs the CPU's decode mean "
            f"{jpeg['mean_abs_levels_vs_cpu']} / max {jpeg['max_abs_levels_vs_cpu']} levels"
        )
    else:
        lines.append(f"decode_jpeg on {jpeg['device']}: FAILED: {jpeg.get('error', jpeg)}")
    lines.append("Preflight: " + ("; ".join(result["problems"]) if result["problems"] else "OK"))
    return "\n".join(lines)


# ---------------------------------------------------------------- the summary


def _pytest_counts(xml: Path) -> dict[str, int] | None:
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    return {
        "passed": total["tests"] - total["failures"] - total["errors"] - total["skipped"],
        "failed": total["failures"],
        "errors": total["errors"],
        "skipped": total["skipped"],
    }


def _status(parts: Path, name: str) -> int | None:
    try:
        return int((parts / f"{name}.status").read_text().strip())
    except (OSError, ValueError):
        return None


def summarize(out: Path, parts: Path, dry_run: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for name, proves in PARTS:
        code = _status(parts, name)
        row: dict[str, Any] = {"part": name, "proves": proves, "exit_code": code}
        if code is None:
            row["outcome"] = "not run"
        elif code in TIMED_OUT:
            row["outcome"] = "timed out"
        if name.startswith("pytest-"):
            counts = _pytest_counts(parts / f"{name}.xml")
            row["tests"] = counts
            if "outcome" not in row:
                bad = counts is None or counts["failed"] or counts["errors"] or code not in (0, 5)
                row["outcome"] = "failed" if bad else ("skipped" if counts and not counts["passed"] else "passed")
        elif name == "preflight":
            try:
                found = json.loads((out / "preflight.json").read_text())
            except (OSError, ValueError):
                found = None
            row["problems"] = found["problems"] if found else ["no preflight.json"]
            row.setdefault("outcome", "passed" if code == 0 and found and not found["problems"] else "failed")
        else:
            benches = sorted(out.glob("train-step-resnet50-*.json"))
            result = json.loads(benches[-1].read_text()) if benches else None
            row["ratios"] = (
                {f"{c['ours']} / {c['reference']}": round(c["ratio_of_medians"], 3) for c in result["comparisons"]}
                if result
                else None
            )
            row["device"] = result["machine"].get("gpu") or result["machine"].get("cpu") if result else None
            row.setdefault("outcome", "passed" if code == 0 and result else "failed")
        rows.append(row)
    failed = [r["part"] for r in rows if r["outcome"] in ("failed", "timed out", "not run")]
    return {"dry_run": dry_run, "parts": rows, "failed": failed, "ok": not failed}


def render_summary(summary: dict[str, Any], machine_line: str) -> str:
    lines = [f"GPU checks{' (dry run on the CPU: GPU tests skip)' if summary['dry_run'] else ''}", machine_line, ""]
    for row in summary["parts"]:
        detail = ""
        if row.get("tests"):
            t = row["tests"]
            detail = f"{t['passed']} passed, {t['failed']} failed, {t['errors']} errors, {t['skipped']} skipped"
        elif row.get("ratios"):
            detail = ", ".join(f"{k} {v:.3f}x" for k, v in row["ratios"].items()) + f" ({row['device']})"
        elif row.get("problems"):
            detail = "; ".join(row["problems"])
        lines.append(f"{row['part']:<20} {row['outcome'].upper():<10} {detail}".rstrip())
    lines += ["", "All parts passed." if summary["ok"] else f"FAILED: {', '.join(summary['failed'])}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("preflight", "summary"))
    parser.add_argument("out", type=Path)
    parser.add_argument("parts", type=Path, nargs="?")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    from resnet_deploy._io import write_report

    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "preflight":
        result = preflight(args.dry_run)
        text = render_preflight(result)
        write_report(args.out / "preflight", result, text)
        print(text)
        return 1 if result["problems"] else 0
    if args.parts is None:
        parser.error("summary needs PARTS_DIR")
    summary = summarize(args.out, args.parts, args.dry_run)
    try:
        machine = render_preflight(json.loads((args.out / "preflight.json").read_text())).splitlines()[0]
    except (OSError, ValueError, KeyError):
        machine = "Machine: unknown (no preflight)"
    text = render_summary(summary, machine)
    write_report(args.out / "summary", summary, text)
    print(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
