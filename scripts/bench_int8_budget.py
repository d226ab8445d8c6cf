"""Seconds and peak memory of the INT8 accuracy budget (sensitivity scan, budget search) against calibrating once.

    .venv/bin/python scripts/bench_int8_budget.py [--depth 50] [--images 256] [--calib-images 256]
        [--max-top1-drop 0] [--gate estimate] [--phases calibrate,sensitivity,budget] [--out scripts/results]
        [--no-save]

Exports one seeded random-weight ResNet with a 10-class head fit to its features (see below) to a
temporary directory, then runs three phases, each in a fresh Python process so that its peak RSS
(``VmHWM``, the high-water mark of its own memory) is its own:

- calibrate: ``calibrate_onnx`` once, no budget, no cache: the baseline;
- sensitivity: ``model_sensitivity`` on ``--images`` held-out images: every layer scored alone in
  INT8 and left out of it (1 + 2 x layers variants);
- budget: ``calibrate_onnx`` with ``BudgetOptions(max_top1_drop, gate)``: the all-INT8 model is
  scored, and when it is over the budget every layer is scored left out on the held-out images INT8
  changes most (the scan: one variant a layer, on 1 in 8 of the images), the shortest prefix of that
  ranking that meets the budget is found by doubling and halving (the steps), and the layers kept out
  are tried back in INT8 in groups (the trials).

``--phases calibrate,budget`` leaves out the sensitivity phase (the full scan: the longest).

Every phase calibrates from scratch (no cache) on the same ``--calib-images`` images, so "vs
calibrate" includes the calibration the scan and the search need anyway. Each phase's time is
split into loading the calibration images, calibration ranges, loading the held-out images, the
FP32 reference run, building variants (copy + Q/DQ insertion) and scoring them in ONNX Runtime
(session + inference); ONNX Runtime uses its default threads (every core).

The model records the embedded digits as its dataset (its head is fit on them; a random head
records none, and then the budget phases refuse to judge it), so calibration and held-out images
both come from the digits set (training and test split), resized to the model's input. A random-weight ResNet-50
gives every image the same class, FP32 and INT8 alike, so no budget would ever start a search:
the fc layer is refit as a linear probe of the random features on ``--head-images`` digits
training images (``--head-images 0`` keeps it random). That head makes the fc layer the one INT8
cannot take (the digits differ by a small share of each feature's range), so the budget search runs
its course: the scan, the prefixes, then the trials of putting layers back. Writes
OUT/int8-budget-resnet<depth>.{json,txt} unless --no-save. On ResNet-50 with 256 + 256 images the
sensitivity phase takes most of an hour on 2 cores, nearly all of it ONNX Runtime scoring variants;
``--depth 18 --images 32 --calib-images 32 --head-images 64`` is a quick run.
``--render OUT/int8-budget-resnet50.json`` rewrites the text report of a saved result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
PHASES = ("calibrate", "sensitivity", "budget")
BUCKETS = ("calib_images", "ranges", "held_out_images", "fp32_reference", "build_variants", "score_variants")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--input-size", type=int, default=None, help="default: the family's (224; 32 for CIFAR)")
    parser.add_argument("--classes", type=int, default=10, help="classifier outputs of the random model")
    parser.add_argument(
        "--head-images", type=int, default=256, help="digits training images the fc head is fit on; 0: keep it random"
    )
    parser.add_argument("--images", type=int, default=256, help="held-out images the variants are scored on")
    parser.add_argument("--calib-images", type=int, default=256, help="calibration images, the same in every phase")
    parser.add_argument("--method", default="entropy", help="calibration method")
    parser.add_argument("--max-top1-drop", type=float, default=0.0, help="the budget phase's budget, pp")
    parser.add_argument("--gate", default="estimate", help="estimate or upper-bound")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="comma-separated: calibrate (always), sensitivity, budget"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true", help="print the table only")
    parser.add_argument("--render", type=Path, help="only rewrite the text report of a saved JSON result")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # run one phase (in a child)
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- one phase, in its own process ------------------------------------------------------------------


def _rss_mib() -> float:
    """Resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_average() -> float | None:
    """The 1-minute load average: other work on the machine slows the wall seconds (None: not on Linux)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_mib() -> float:
    """This process's peak resident memory: Linux's VmHWM, which starts afresh at exec (ru_maxrss carries the
    parent's peak over into a child), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux


class Timers:
    """Seconds and calls spent in a few library functions, by wrapping them where they are looked up."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(BUCKETS, 0.0)
        self.calls = dict.fromkeys(BUCKETS, 0)
        self.parts: dict[str, dict[str, Any]] = {}  # the budget search's parts (see ``search_parts``)

    def wrap(self, owner: Any, name: str, bucket: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[bucket] += time.perf_counter() - start
                self.calls[bucket] += 1

        setattr(owner, name, timed)

    def within(self, owner: Any, name: str, part: str) -> None:
        """Count the calls of ``owner.name``, and the variants scored and seconds spent inside them."""
        inner: Callable[..., Any] = getattr(owner, name)
        self.parts[part] = {"calls": 0, "variants": 0, "seconds": 0.0}

        def counted(*args: Any, **kwargs: Any) -> Any:
            start, scored = time.perf_counter(), self.calls["score_variants"]
            try:
                return inner(*args, **kwargs)
            finally:
                self.parts[part]["calls"] += 1
                self.parts[part]["variants"] += self.calls["score_variants"] - scored
                self.parts[part]["seconds"] += time.perf_counter() - start

        setattr(owner, name, counted)


def instrument() -> Timers:
    from resnet_deploy.quantize import budget, calib_data, calibrate, judge, measured, recover, sensitivity

    timers = Timers()
    for module in (measured, calibrate):  # calibrate imported the names; sensitivity imports them at call time
        timers.wrap(module, "calibration_images", "calib_images")
        timers.wrap(module, "measured_ranges", "ranges")
    for module in (calib_data, calibrate):
        timers.wrap(module, "load_held_out_set", "held_out_images")
    timers.wrap(judge.HeldOutJudge, "__init__", "fp32_reference")
    timers.wrap(judge.HeldOutJudge, "score", "score_variants")
    for module in (sensitivity, budget):
        timers.wrap(module, "variant", "build_variants")
    caller = next(module for module in (recover, calibrate, budget) if hasattr(module, "search"))
    timers.within(caller, "search", "search")  # where it is called from
    timers.within(budget, "scan", "scan")
    if hasattr(budget, "_prune"):  # putting back into INT8 the layers the budget holds without
        timers.within(budget, "_prune", "prune")
    return timers


def search_parts(parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The budget search's variants and seconds by part: the all-INT8 model (one per method searched),
    every layer left out (the scan), the prefixes of the ranking, and the trials of putting layers back."""
    search = parts["search"]
    scan = parts["scan"]
    prune = parts.get("prune", {"variants": 0, "seconds": 0.0})
    all_int8 = search["calls"]
    steps = search["variants"] - all_int8 - scan["variants"] - prune["variants"]
    return {
        "all_int8": {"variants": all_int8},
        "scan": {"variants": scan["variants"], "seconds": scan["seconds"]},
        "steps": {"variants": steps},
        "prune": {"variants": prune["variants"], "seconds": prune["seconds"]},
        "search_seconds": search["seconds"],
    }


def run_phase(args: argparse.Namespace) -> dict[str, Any]:
    """One phase on ``args.onnx``: its seconds, peak memory, variants scored and what it found."""
    import resnet_deploy.data  # noqa: F401  (torch, as every phase loads it: part of the baseline RSS)
    from resnet_deploy.artifacts.onnx_io import load_onnx
    from resnet_deploy.errors import QuantizationError
    from resnet_deploy.messages import Silent
    from resnet_deploy.quantize.budget import BudgetOptions
    from resnet_deploy.quantize.calibrate import calibrate_onnx
    from resnet_deploy.quantize.layers import quantizable_layers
    from resnet_deploy.quantize.options import CalibrationOptions
    from resnet_deploy.quantize.sensitivity import model_sensitivity

    layers = len(quantizable_layers(load_onnx(args.onnx)))
    options = CalibrationOptions(method=args.method, count=args.calib_images, cache_dir=None)
    timers = instrument()

    class Timed(Silent):
        """Each line the search says, with the seconds since the phase started (warnings dropped)."""

        def say(self, message: str = "") -> None:
            print(f"[{args.phase} {time.perf_counter() - start:7.1f}s] {message}", file=sys.stderr, flush=True)

    say = Timed()

    out: dict[str, Any] = {"phase": args.phase, "layers": layers, "rss_before_mib": _rss_mib()}
    out["load_average_before"] = _load_average()
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    if args.phase == "calibrate":
        result = calibrate_onnx(args.onnx, args.onnx.with_suffix(".int8.onnx"), options, out=say)
        out["seconds"] = time.perf_counter() - start
        out["calibrate_seconds"] = result.calibrate_seconds
        out["expected_variants"] = 0
    elif args.phase == "sensitivity":
        report = model_sensitivity(args.onnx, options, images=args.images, out=say)
        out["seconds"] = time.perf_counter() - start
        out["report_seconds"] = report.seconds  # the scan alone, without calibrating and loading images
        out["report_variants"] = report.variants
        out["expected_variants"] = 1 + 2 * layers
        out["all_int8"] = report.all_int8.to_dict()
        out["fp32_top1_error"] = report.fp32_top1_error
        out["most_sensitive"] = [item.to_dict(report.all_int8, report.images) for item in report.layers[:5]]
        out["table"] = report.table(top=10)
    else:
        budget = BudgetOptions(max_top1_drop=args.max_top1_drop, gate=args.gate, images=args.images)
        try:
            result = calibrate_onnx(
                args.onnx, args.onnx.with_suffix(".budget.int8.onnx"), options, budget=budget, out=say
            )
            out["budget"] = result.budget
            out["met"] = True
        except QuantizationError as exc:
            out["error"] = str(exc).splitlines()[0]
            out["met"] = False
        out["seconds"] = time.perf_counter() - start
        out["search_parts"] = search_parts(timers.parts)
    out["cpu_seconds"] = _cpu_seconds() - cpu_before  # user + system, every thread of this process
    out["load_average_after"] = _load_average()
    out["variants"] = timers.calls["score_variants"]
    out["breakdown_seconds"] = dict(timers.seconds)
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# --- the parent: export, the three children, the report -----------------------------------------------


def describe_machine() -> dict[str, Any]:
    import onnxruntime

    from resnet_deploy.runtime.machine import cpu_flags, cpu_name

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "cpu": cpu_name(),
        "isa": cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


def machine_line(machine: dict[str, Any]) -> str:
    from resnet_deploy.runtime.machine import ISA_NAMES

    isa = ", ".join(ISA_NAMES.get(flag, flag) for flag in machine["isa"]) or "no SIMD flags read"
    return (
        f"{machine['cpu']} ({isa}), {machine['usable_cores']} of {machine['cores']} cores; "
        f"onnxruntime {machine['onnxruntime']} (CPUExecutionProvider, default threads); Python {machine['python']}"
    )


def fit_head(model: Any, metadata: Any, images: int) -> dict[str, Any]:
    """Refit ``model.fc`` as a linear probe of its random features on ``images`` digits training images.

    A random-weight ResNet-50 gives every image the same class, and so does its INT8 form: no budget
    would ever start a search. Standardised features and an L2-regularised softmax (LBFGS), the
    standardisation folded into the layer: a classifier that INT8 can hurt, the convolutions untouched.
    """
    import torch

    from resnet_deploy import data
    from resnet_deploy.runtime.images import normalise

    split = data.open_dataset("digits").train
    size = metadata.config.input_size
    features, labels = [], []
    with torch.no_grad():
        for batch in split.batches(
            64, size=size, shuffle=True, seed=1, limit=images, preprocess=metadata.eval_preprocess
        ):
            x = torch.from_numpy(normalise(batch.images.numpy(), metadata))
            features.append(model.forward_head(model.forward_features(x), pre_logits=True))
            labels.append(batch.labels)
    x, y = torch.cat(features).double(), torch.cat(labels)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    weight = torch.zeros(model.fc.out_features, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(model.fc.out_features, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(z @ weight.T + bias, y) + 1e-3 * weight.pow(2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        accuracy = float(((z @ weight.T + bias).argmax(1) == y).double().mean())
        model.fc.weight.copy_((weight / std).float())
        model.fc.bias.copy_((bias - (weight * mean / std).sum(1)).float())
    return {"head": "linear probe", "head_images": len(y), "head_train_top1": accuracy}


def export(args: argparse.Namespace, directory: Path) -> tuple[Path, dict[str, Any]]:
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    torch.manual_seed(0)
    spec: dict[str, Any] = {"depth": args.depth, "num_classes": args.classes}
    if args.input_size:
        spec["input_size"] = args.input_size
    source = open_model(**spec)  # random weights, seeded
    config = source.metadata.config
    info: dict[str, Any] = {"depth": args.depth, "input_size": config.input_size, "classes": config.num_classes}
    start = time.perf_counter()
    info.update(fit_head(source.model, source.metadata, args.head_images) if args.head_images else {"head": "random"})
    info["head_seconds"] = time.perf_counter() - start
    path = directory / f"resnet{args.depth}.onnx"
    # a head fit on digits has seen their labels: recorded, so the budget may judge it there
    metadata = dataclasses.replace(source.metadata, dataset="digits") if args.head_images else source.metadata
    export_onnx(source.model, path, metadata, verify=False)
    return path, info


def child(args: argparse.Namespace, phase: str, onnx_path: Path, directory: Path) -> dict[str, Any]:
    result = directory / f"{phase}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--onnx", str(onnx_path)]
    command += ["--result", str(result), "--images", str(args.images), "--calib-images", str(args.calib_images)]
    command += ["--method", args.method, "--max-top1-drop", repr(args.max_top1_drop), "--gate", args.gate]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    out = json.loads(result.read_text())
    out["process_seconds"] = time.perf_counter() - start
    return out


def table(phases: dict[str, dict[str, Any]]) -> str:
    base = phases["calibrate"]
    head = ["phase", "seconds", "vs calibrate", "CPU s", "peak MiB", "vs calibrate", "MiB at start", "variants"]
    rows = [head, ["---"] * len(head)]
    for name, p in phases.items():
        rows.append(
            [
                name,
                f"{p['seconds']:.1f}",
                f"{p['seconds'] / base['seconds']:.1f}x",
                f"{p['cpu_seconds']:.0f}",
                f"{p['peak_rss_mib']:.0f}",
                f"{p['peak_rss_mib'] / base['peak_rss_mib']:.2f}x",
                f"{p['rss_before_mib']:.0f}",
                str(p["variants"]),
            ]
        )
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def breakdown(phases: dict[str, dict[str, Any]]) -> str:
    head = ["phase", *BUCKETS, "other", "s per variant"]
    rows = [head, ["---"] * len(head)]
    for name, p in phases.items():
        spent = p["breakdown_seconds"]
        each = (spent["build_variants"] + spent["score_variants"]) / p["variants"] if p["variants"] else None
        rows.append(
            [
                name,
                *(f"{spent[b]:.1f}" for b in BUCKETS),
                f"{p['seconds'] - sum(spent.values()):.1f}",
                f"{each:.2f}" if each is not None else "-",
            ]
        )
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def budget_line(p: dict[str, Any]) -> str:
    parts = p.get("search_parts")
    searched = ""
    if parts and parts["scan"]["variants"]:
        searched = (
            f"; the search scored the all-INT8 model ({parts['all_int8']['variants']}), every layer left out "
            f"on the telling images ({parts['scan']['variants']} variants, {parts['scan']['seconds']:.0f} s), "
            f"{parts['steps']['variants']} prefix{'es' if parts['steps']['variants'] != 1 else ''} of the ranking "
            f"and {parts['prune']['variants']} trial{'s' if parts['prune']['variants'] != 1 else ''} of putting "
            f"layers back ({parts['prune']['seconds']:.0f} s)"
        )
    elif parts:
        searched = "; the all-INT8 model was within the budget: no scan"
    if not p["met"]:
        return f"budget: not met: {p['error']}{searched}"
    b = p["budget"]
    change = b["top1_change"]
    return (
        f"budget: met, {len(b['kept_out'])} of {p['layers']} layers kept out of INT8 ({b['kept_out_precision']}), "
        f"{100 * b['int8_mac_share']:.1f}% of MACs in INT8, Δtop-1 {change['delta_pp']:+.2f} pp "
        f"[{change['low_pp']:+.2f}, {change['high_pp']:+.2f}]; all-INT8 Δtop-1 "
        f"{b['all_int8_top1_change']['delta_pp']:+.2f} pp{searched}"
    )


def report(result: dict[str, Any]) -> str:
    s, m = result["settings"], result["model"]
    phases = result["phases"]
    sens = phases.get("sensitivity")
    head = f"random weights (seed 0), {m['classes']} classes"
    if m["head"] != "random":
        head += (
            f", the fc layer fit as a linear probe of the random features on {m['head_images']} digits training "
            f"images ({100 * m['head_train_top1']:.1f}% right)"
        )
    lines = [
        f"ResNet-{m['depth']} at {m['input_size']}x{m['input_size']}, {head}, "
        f"{phases['calibrate']['layers']} quantizable layers; {s['calib_images']} calibration images ({s['method']}) "
        f"and {s['images']} held-out images of the embedded digits set; budget {s['max_top1_drop']:g} pp "
        f"({s['gate']})",
        f"machine: {machine_line(result['machine'])}",
        f"command: {result['command']}",
        "",
        "seconds: wall time of the library call in its own process (without interpreter start and imports); "
        "CPU s: its user + system time, all threads; peak MiB: the process's own peak RSS, VmHWM (MiB at start: "
        "its RSS after the imports, torch included)",
        "",
        table(phases),
        "",
        "where the seconds go (calib_images: loading them; ranges: calibration; build: copy + Q/DQ insertion; "
        "score: ONNX Runtime session + run; s per variant: build + score)",
        "",
        breakdown(phases),
        "",
    ]
    if sens:
        all_int8 = sens["all_int8"]
        lines.append(
            f"sensitivity: FP32 top-1 error {sens['fp32_top1_error']:.2f}%; all INT8: top-1 agreement "
            f"{100 * all_int8['top1_agreement']:.2f}%, KL {all_int8['kl']:.2e}, Δtop-1 "
            f"{all_int8['top1_change']['delta_pp']:+.2f} pp ({all_int8['top1_change']['worse']} worse, "
            f"{all_int8['top1_change']['better']} better)"
        )
    if "budget" in phases:
        lines.append(budget_line(phases["budget"]))
    lines.append(
        "1-minute load average before/after each phase (other work on the machine): "
        + ", ".join(f"{n} {p['load_average_before']}/{p['load_average_after']}" for n, p in phases.items())
    )
    if sens:
        lines += ["", "most sensitive layers (sensitivity phase):", "", sens["table"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        out = run_phase(args)
        args.result.write_text(json.dumps(out, indent=1) + "\n")
        return 0
    if args.render:
        text = report(json.loads(args.render.read_text()))
        print(text, end="")
        if not args.no_save:
            args.render.with_suffix(".txt").write_text(text)
        return 0
    command = "python scripts/bench_int8_budget.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-int8-budget-") as tmp:
        directory = Path(tmp)
        onnx_path, model = export(args, directory)
        phases = {}
        wanted = {"calibrate", *args.phases.split(",")}
        for phase in [phase for phase in PHASES if phase in wanted]:
            print(f"== {phase}", file=sys.stderr, flush=True)
            phases[phase] = child(args, phase, onnx_path, directory)
    result = {
        "what": "seconds and peak RSS of the INT8 sensitivity scan and budget search against calibrating once",
        "command": command.strip(),
        "machine": describe_machine(),
        "model": model,
        "settings": {
            "images": args.images,
            "calib_images": args.calib_images,
            "method": args.method,
            "max_top1_drop": args.max_top1_drop,
            "gate": args.gate,
            "cache": False,
            "phases": list(phases),
        },
        "phases": phases,
    }
    text = report(result)
    print(text, end="")
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"int8-budget-resnet{args.depth}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        stem.with_suffix(".txt").write_text(text)
        print(f"wrote {stem}.json and {stem}.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
