"""ResNet-50 training images/s: our trainer's step against torchvision's reference training step, same device.

    python scripts/bench_train_step.py [--batch 256] [--size 224] [--blocks 7] [--steps 20] [--warmup 10]
                                       [--device auto|cuda|cpu] [--compile] [--ours-fast-cudnn]
                                       [--out scripts/results] [--no-save]
    python scripts/bench_train_step.py --render scripts/results/train-step-resnet50-nvidia-h100-80gb-hbm3.json

On a GPU the issue's measurement is ``python scripts/bench_train_step.py --compile`` (batch 256, 224x224).
On the CPU the GPU defaults would take hours: there, every size option left unset defaults to a small
setting (batch 8, 64x64, 5 blocks of 3 steps after 2 warm-up steps) and the report says which were.

What runs, in this one process, on one seeded synthetic batch resident on the device (normalised
N(0, 1) float32 images (N, 3, S, S), int64 labels in [0, 1000)), each variant's model seeded the same:

- ours: ``resnet_deploy.build_model(50)`` moved to the device and ``.to(memory_format=channels_last)``,
  ``SGD(lr 0.1, momentum 0.9, weight_decay 1e-4)`` as ``Trainer._loop`` makes it, stepped by the
  trainer's own ``training.trainer.train_step`` (channels_last input, bf16 autocast on CUDA, the loss
  in float32, ``zero_grad(set_to_none=True)``, backward, step, ``float(loss)``: a host sync per step),
  under the trainer's own backend settings (``trainer.make_deterministic``: on CUDA cuDNN deterministic,
  ``cudnn.benchmark`` off, ``use_deterministic_algorithms(True, warn_only=True)``, which also puts
  Inductor in its deterministic mode, without the NaN fill of new tensors it would add by default);
- reference: ``torchvision.models.resnet50()`` stepped as ``train_one_epoch`` in torchvision's
  ``references/classification/train.py`` (the main-branch form since torchvision 0.13, written from
  memory of it: the stored copies that could be read here were older ones, of 2019 and 2021, whose step
  is the same but for autocast: ``with torch.cuda.amp.autocast(enabled=scaler is not None)`` around
  forward + ``nn.CrossEntropyLoss()``, then ``optimizer.zero_grad()``, ``loss.backward()``,
  ``optimizer.step()``, and ``loss.item()`` for its metric logger: a host sync per step), the same SGD
  (the script's defaults: lr 0.1, momentum 0.9, weight decay 1e-4), under the script's backend settings
  (``cudnn.benchmark = True`` unless ``--use-deterministic-algorithms``). Two departures, both asked
  for by the issue and applied to both variants alike: the reference's ``--amp`` is float16 autocast
  with a GradScaler, here it is bfloat16 autocast (no scaler needed), as our trainer does; and the
  reference has no channels_last option, here its model and input are channels_last as ours are.
  Left out of both steps: the reference's per-step top-1/top-5 ``.item()`` calls and our trainer's
  per-step top-1 tally (metrics, not the step), and any data loading (the batch is resident);
- with ``--compile``: both again, each model wrapped by ``torch.compile(model)`` (default mode, as
  ``train --compile`` does); the optimizer step stays eager in both. Compilation happens in the
  warm-up, outside the timed blocks; its time is reported (the first step's wall time);
- with ``--ours-fast-cudnn`` (CUDA): ours once more under the reference's settings (cudnn.benchmark
  on, cuDNN and PyTorch not deterministic, so Inductor autotunes too), to tell what the model and step
  cost from what all the deterministic settings together do.

Timing: every variant warms up (``--warmup`` steps, its own settings), then ``--blocks`` rounds, each
running every variant for ``--steps`` steps, the order rotated every round (ours first, then the
reference first, ...), so drift hits all alike. A block's images/s = batch x steps / its wall time
(synchronised before and after). Reported per variant: the median over blocks, the spread (IQR /
median) and the range; the ratio ours / reference of the medians, and the median of the per-block
ratios (paired blocks, robust to drift). On CUDA, the peak ``torch.cuda.max_memory_allocated`` of
each variant's blocks, and that peak less what was already allocated (every model's weights,
gradients and momentum stay resident, ~0.3 GB a model). One process-wide setting is the trainer's:
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` is set (if unset) before any CUDA work, as the trainer does.

Writes OUT/train-step-resnet50-<kind>.{json,txt}, <kind> being the GPU's name slugged
(``nvidia-h100-80gb-hbm3``) or ``cpu-<machine.cpu_kind>`` (``cpu-avx512-vnni``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4  # the paper's ImageNet recipe, and torchvision's defaults
NUM_CLASSES = 1000
SEED = 0
GPU_DEFAULTS = {"batch": 256, "size": 224, "blocks": 7, "steps": 20, "warmup": 10}
CPU_DEFAULTS = {"batch": 8, "size": 64, "blocks": 5, "steps": 3, "warmup": 2}
REFERENCE_SOURCE = (
    "torchvision references/classification/train.py train_one_epoch (main-branch form, torchvision >= 0.13), "
    "bf16 autocast (CUDA) without GradScaler, channels_last added"
)
TORCHVISION_RESNET50_PARAMETERS = 25_557_032


# ---------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = "; on the CPU, when left unset, {cpu} (GPU default {gpu})"
    for name, kind, text in (
        ("batch", int, "images a step"),
        ("size", int, "image side, pixels"),
        ("blocks", int, "timed rounds; each runs every variant once, the order rotated"),
        ("steps", int, "timed steps per variant per block"),
        ("warmup", int, "untimed steps per variant first (compilation, cuDNN autotuning)"),
    ):
        help_text = text + sizes.format(cpu=CPU_DEFAULTS[name], gpu=GPU_DEFAULTS[name])
        parser.add_argument(f"--{name}", type=kind, default=None, help=help_text)
    parser.add_argument("--device", default="auto", help="auto (cuda when there is one), cuda, cuda:N or cpu")
    parser.add_argument("--compile", action="store_true", help="also time both with torch.compile(model)")
    parser.add_argument(
        "--ours-fast-cudnn",
        action="store_true",
        help="CUDA: also time ours under the reference's cuDNN settings (benchmark on, not deterministic)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true", help="print the report only")
    parser.add_argument("--render", type=Path, help="only rewrite the text report of a saved JSON result")
    args = parser.parse_args(argv)
    for name in GPU_DEFAULTS:
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            parser.error(f"--{name} must be {'>= 0' if name == 'warmup' else '>= 1'}")
    return args


def resolve_sizes(args: argparse.Namespace, device_type: str) -> tuple[dict[str, int], list[str]]:
    """batch, size, blocks, steps, warmup: the user's where given, else the device's defaults; and which
    were defaulted to the CPU's small settings (empty on a GPU)."""
    defaults = CPU_DEFAULTS if device_type == "cpu" else GPU_DEFAULTS
    sizes = {name: getattr(args, name) for name in GPU_DEFAULTS}
    small = [name for name, value in sizes.items() if value is None and device_type == "cpu"]
    return {name: defaults[name] if value is None else value for name, value in sizes.items()}, small


# ---------------------------------------------------------------- arithmetic (pure)


def summarize_rates(rates: Sequence[float]) -> dict[str, Any]:
    """images/s of the blocks -> median, spread (IQR / median), min, max and the blocks themselves."""
    if not rates:
        raise ValueError("no blocks were timed")
    q25, median, q75 = (float(v) for v in np.percentile(np.asarray(rates, dtype=float), [25, 50, 75]))
    return {
        "images_per_second": median,
        "spread": (q75 - q25) / median if median > 0 else 0.0,
        "min": float(min(rates)),
        "max": float(max(rates)),
        "blocks": [float(r) for r in rates],
    }


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; nan when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else float("nan")


def compare(ours: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """ours / reference: of the medians, and the per-block ratios (block k of one against block k of the other,
    which ran next to each other) with their median and range."""
    paired = [ratio(a, b) for a, b in zip(ours["blocks"], reference["blocks"], strict=True)]
    return {
        "ratio_of_medians": ratio(ours["images_per_second"], reference["images_per_second"]),
        "per_block": paired,
        "per_block_median": float(np.median(paired)),
        "per_block_min": float(min(paired)),
        "per_block_max": float(max(paired)),
    }


def comparisons(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The pairs the report compares: each of ours against the reference compiled alike."""
    pairs = [("ours", "reference"), ("ours-compiled", "reference-compiled"), ("ours-fast-cudnn", "reference")]
    return [{"ours": a, "reference": b, **compare(rows[a], rows[b])} for a, b in pairs if a in rows and b in rows]


def slug(text: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_kind(machine: dict[str, Any]) -> str:
    """What the result file is named by: the GPU's name slugged, or ``cpu-`` and the kind of CPU."""
    from resnet_deploy.runtime.machine import cpu_kind

    if machine.get("device") == "cuda" and machine.get("gpu"):
        return slug(machine["gpu"])
    return f"cpu-{cpu_kind(machine.get('isa', []))}"


def result_stem(out: Path, machine: dict[str, Any]) -> Path:
    return out / f"train-step-resnet50-{device_kind(machine)}"


# ---------------------------------------------------------------- the machine


def nvidia_driver_version() -> str | None:
    """The NVIDIA kernel driver's version (``550.54.15``) from /proc; None where it is not listed there."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \w+)?\s+([\d.]+)", text)
    return match.group(1) if match else None


def describe_machine(device: Any) -> dict[str, Any]:
    import torch
    import torchvision

    from resnet_deploy.runtime.machine import (
        cpu_flags,
        cpu_kind,
        cpu_name,
        cuda_version_text,
        describe_isa,
        driver_cuda_version,
    )

    isa = cpu_flags()
    info: dict[str, Any] = {
        "device": device.type,
        "cpu": cpu_name(),
        "isa": isa,
        "instruction_sets": describe_isa(isa),
        "cpu_kind": cpu_kind(isa),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        driver_cuda = driver_cuda_version()
        info |= {
            "gpu": props.name,
            "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "driver": nvidia_driver_version(),
            "driver_cuda": cuda_version_text(driver_cuda) if driver_cuda else None,
        }
    return info


# ---------------------------------------------------------------- the variants


class Variant(NamedTuple):  # not a dataclass: tests load this file without registering it in sys.modules
    name: str  # ours, reference, ours-compiled, reference-compiled, ours-fast-cudnn
    label: str
    model: Any  # the module itself (its parameters are counted)
    step: Callable[[], float]  # one training step; returns the loss (a host sync, as each trainer does)
    settings: str  # "trainer" or "reference": whose backend settings it runs under
    compiled: bool


@contextmanager
def backend_settings(kind: str, device: Any) -> Iterator[None]:
    """The cuDNN / determinism settings each trainer runs under, restored afterwards: ours calls the trainer's
    own ``make_deterministic`` (on CUDA: cuDNN deterministic and no benchmark, PyTorch's deterministic
    algorithms with Inductor's deterministic mode, no NaN fill of new tensors), the reference sets
    ``cudnn.benchmark = True`` as its main() does. On the CPU neither changes anything."""
    import torch

    from resnet_deploy.training.trainer import make_deterministic

    if device.type != "cuda":
        yield  # the trainer sets nothing on the CPU (and toggling determinism there imports torch._inductor)
        return
    cudnn = torch.backends.cudnn
    saved = (
        cudnn.benchmark,
        cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    try:
        if kind == "trainer":
            make_deterministic(device)
        else:
            cudnn.benchmark, cudnn.deterministic = True, False
            torch.use_deterministic_algorithms(False)
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        torch.utils.deterministic.fill_uninitialized_memory = saved[4]


def synthetic_batch(batch: int, size: int, device: Any) -> tuple[Any, Any]:
    """Seeded normalised images (N(0, 1), as after mean/std normalisation) and labels, on the device."""
    import torch

    generator = torch.Generator().manual_seed(SEED)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator, dtype=torch.int64)
    return images.to(device), labels.to(device)


def _sgd(model: Any) -> Any:
    import torch

    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def make_ours(device: Any, images: Any, labels: Any, *, compiled: bool, settings: str = "trainer") -> Variant:
    """Our model and optimizer as ``Trainer._loop`` makes them, stepped by the trainer's ``train_step``."""
    import torch

    from resnet_deploy import build_model
    from resnet_deploy.training.trainer import train_step

    torch.manual_seed(SEED)
    model = build_model(50, num_classes=NUM_CLASSES).to(device).to(memory_format=torch.channels_last)
    optimizer = _sgd(model)
    net: torch.nn.Module = torch.compile(model) if compiled else model  # type: ignore[assignment]
    autocast = device.type == "cuda"

    def step() -> float:
        loss, _ = train_step(net, optimizer, images, labels, lr=LR, autocast=autocast)
        return loss

    name = "ours-compiled" if compiled else ("ours" if settings == "trainer" else "ours-fast-cudnn")
    label = "ours (trainer.train_step)" + (", torch.compile" if compiled else "")
    if settings != "trainer":
        label += ", reference's cuDNN settings"
    return Variant(name, label, model, step, settings, compiled)


def reference_step(model: Any, criterion: Any, optimizer: Any, images: Any, labels: Any, autocast: bool) -> float:
    """torchvision's ``train_one_epoch`` step (no GradScaler: bf16), channels_last input as ours has."""
    import torch

    x = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
        output = model(x)
        loss = criterion(output, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def make_reference(device: Any, images: Any, labels: Any, *, compiled: bool) -> Variant:
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(SEED)
    model = torchvision.models.resnet50(num_classes=NUM_CLASSES).to(device).to(memory_format=torch.channels_last)
    optimizer = _sgd(model)
    criterion = nn.CrossEntropyLoss()
    net = torch.compile(model) if compiled else model
    autocast = device.type == "cuda"

    def step() -> float:
        return reference_step(net, criterion, optimizer, images, labels, autocast)

    label = "torchvision reference" + (", torch.compile" if compiled else "")
    return Variant("reference-compiled" if compiled else "reference", label, model, step, "reference", compiled)


def make_variants(device: Any, images: Any, labels: Any, *, compiled: bool, fast_cudnn: bool) -> list[Variant]:
    variants = [
        make_ours(device, images, labels, compiled=False),
        make_reference(device, images, labels, compiled=False),
    ]
    if compiled:
        variants += [
            make_ours(device, images, labels, compiled=True),
            make_reference(device, images, labels, compiled=True),
        ]
    if fast_cudnn and device.type == "cuda":
        variants.append(make_ours(device, images, labels, compiled=False, settings="reference"))
    return variants


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- timing


def rotated(items: Sequence[Any], k: int) -> list[Any]:
    """The k-th block's order: ``items`` rotated left by k (AB, BA, AB ... for two)."""
    k %= max(len(items), 1)
    return [*items[k:], *items[:k]]


def measure(variants: list[Variant], device: Any, *, batch: int, blocks: int, steps: int, warmup: int) -> dict:
    """Warm every variant up, then time the rotated blocks: per variant, its rows for the report."""
    import torch

    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    rows: dict[str, dict[str, Any]] = {}
    for v in variants:
        print(f"warming up {v.label} ...", file=sys.stderr)
        with backend_settings(v.settings, device):
            sync()
            start = time.perf_counter()
            losses = [v.step()] if warmup else []
            sync()
            first = time.perf_counter() - start
            losses += [v.step() for _ in range(max(warmup - 1, 0))]
            sync()
        rows[v.name] = {
            "label": v.label,
            "compiled": v.compiled,
            "settings": v.settings,
            "parameters": parameter_count(v.model),
            "first_step_seconds": first if warmup else None,
            "warmup_seconds": time.perf_counter() - start,
            "warmup_losses": losses,
        }
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    peaks: dict[str, list[tuple[int, int]]] = {v.name: [] for v in variants}
    for k in range(blocks):
        print(f"block {k + 1}/{blocks} ...", file=sys.stderr)
        for v in rotated(variants, k):
            with backend_settings(v.settings, device):
                sync()
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                    resident = torch.cuda.memory_allocated(device)
                start = time.perf_counter()
                for _ in range(steps):
                    v.step()
                sync()
                seconds = time.perf_counter() - start
            rates[v.name].append(batch * steps / seconds)
            if cuda:
                peaks[v.name].append((torch.cuda.max_memory_allocated(device), resident))
    for v in variants:
        rows[v.name] |= summarize_rates(rates[v.name])
        if peaks[v.name]:
            peak = max(p for p, _ in peaks[v.name])
            rows[v.name]["peak_memory_gb"] = peak / 2**30
            rows[v.name]["peak_above_resident_gb"] = max(p - r for p, r in peaks[v.name]) / 2**30
    return rows


# ---------------------------------------------------------------- the report


def render(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["setup"]
    if m["device"] == "cuda":
        driver = f"driver {m.get('driver') or '?'} (CUDA {m.get('driver_cuda') or '?'})"
        where = (
            f"{m['gpu']} ({m.get('gpu_memory_gb')} GB, sm {m.get('compute_capability')}), torch CUDA {m.get('cuda')}, "
            f"cuDNN {m.get('cudnn')}, {driver}; host CPU {m['cpu']} ({m['instruction_sets']}), {m['cores']} cores"
        )
    else:
        where = (
            f"CPU {m['cpu']} ({m['instruction_sets'] or 'no listed instruction sets'}; kind {m['cpu_kind']}), "
            f"{m['cores']} cores, {m['torch_threads']} torch threads"
        )
    precision = "bf16 autocast" if m["device"] == "cuda" else "float32 (autocast is CUDA-only in the trainer)"
    lines = [
        "ResNet-50 training step, images/s: ours (resnet_deploy trainer.train_step) vs the torchvision reference step",
        f"Machine: {where}",
        f"Software: torch {m['torch']}, torchvision {m['torchvision']}, Python {m['python']}, {m['os']}",
        f"Setup: batch {s['batch']}, {s['size']}x{s['size']}, {precision}, channels_last, SGD(lr {LR:g}, momentum "
        f"{MOMENTUM:g}, weight decay {WEIGHT_DECAY:g}); one synthetic batch resident on {m['device']}; "
        f"{s['warmup']} warm-up steps, then {s['blocks']} blocks x {s['steps']} steps per variant, order rotated",
        f"Reference step: {s['reference']}",
    ]
    if s.get("cpu_small_defaults"):
        defaulted = ", ".join(f"{name} {s[name]}" for name in s["cpu_small_defaults"])
        lines.append(f"CPU run: small settings by default ({defaulted}); not comparable with a GPU's batch 256 at 224")
    lines += [
        "",
        f"{'variant':<58} {'img/s':>9} {'IQR/med':>8} {'min-max':>17} {'1st step s':>10} {'peak GB':>8}",
    ]
    for r in result["variants"].values():
        first = "-" if r.get("first_step_seconds") is None else f"{r['first_step_seconds']:.2f}"
        peak = "-" if r.get("peak_memory_gb") is None else f"{r['peak_memory_gb']:.2f}"
        span = f"{r['min']:.1f}-{r['max']:.1f}"
        lines.append(
            f"{r['label']:<58} {r['images_per_second']:>9.1f} {r['spread']:>8.1%} {span:>17} {first:>10} {peak:>8}"
        )
    lines.append("")
    for c in result["comparisons"]:
        a, b = result["variants"][c["ours"]], result["variants"][c["reference"]]
        lines.append(
            f"{a['label']} / {b['label']}: {c['ratio_of_medians']:.3f}x (of medians); per block "
            f"{c['per_block_median']:.3f}x [{c['per_block_min']:.3f}, {c['per_block_max']:.3f}]"
        )
    compiled = [r for r in result["variants"].values() if r["compiled"] and r.get("first_step_seconds") is not None]
    if compiled:
        lines.append(
            "Compile time (first warm-up step, not timed in the blocks): "
            + "; ".join(f"{r['label']} {r['first_step_seconds']:.1f} s" for r in compiled)
            + " (the first compiled also pays torch._inductor's one-off start-up; the next reuses its caches)"
        )
    if m["device"] == "cuda":
        lines.append(
            "Peak GB: torch.cuda.max_memory_allocated over the variant's blocks, every model's weights, gradients and "
            "momentum resident; above that: "
            + "; ".join(
                f"{r['label']} {r['peak_above_resident_gb']:.2f} GB"
                for r in result["variants"].values()
                if r.get("peak_above_resident_gb") is not None
            )
        )
        lines.append(
            "Settings: ours as the trainer runs (make_deterministic: cuDNN deterministic, no benchmark, deterministic "
            "algorithms incl. Inductor's), the reference as its main() does (cudnn.benchmark on)"
        )
    counts = {r["parameters"] for r in result["variants"].values()}
    lines.append(
        f"Parameters: {', '.join(f'{n:,}' for n in sorted(counts))}"
        + (" (the same model size)" if len(counts) == 1 else " (DIFFERENT model sizes: not the same network)")
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from resnet_deploy.training.trainer import pick_device

    device = pick_device(args.device)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # as the trainer (on its import): before CUDA
    sizes, small = resolve_sizes(args, device.type)
    # warn_only determinism (ours on CUDA) warns of any op without a deterministic kernel; none is expected
    # in this model's step (max_pool2d's backward is a gather, the average pool a mean), and none is news
    warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")
    machine = describe_machine(device)
    images, labels = synthetic_batch(sizes["batch"], sizes["size"], device)
    variants = make_variants(device, images, labels, compiled=args.compile, fast_cudnn=args.ours_fast_cudnn)
    rows = measure(
        variants,
        device,
        batch=sizes["batch"],
        blocks=sizes["blocks"],
        steps=sizes["steps"],
        warmup=sizes["warmup"],
    )
    del variants, images, labels
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "machine": machine,
        "setup": {
            **sizes,
            "cpu_small_defaults": small,
            "compile": args.compile,
            "lr": LR,
            "momentum": MOMENTUM,
            "weight_decay": WEIGHT_DECAY,
            "autocast": "bfloat16" if device.type == "cuda" else None,
            "channels_last": True,
            "reference": REFERENCE_SOURCE,
        },
        "variants": rows,
        "comparisons": comparisons(rows),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from resnet_deploy.errors import ResnetDeployError

    args = parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        text = render(result)
        args.render.with_suffix(".txt").write_text(text + "\n")
        print(text)
        return 0
    try:
        result = run(args)
    except ResnetDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render(result)
    print(text)
    if not args.no_save:
        from resnet_deploy._io import write_report

        written = write_report(result_stem(args.out, result["machine"]), result, text)
        print(f"wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
