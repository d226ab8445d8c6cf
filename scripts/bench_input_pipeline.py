"""ResNet-50's training input pipeline on this CPU: decoded-and-augmented images/s per worker and for N workers.

    python scripts/bench_input_pipeline.py [--images 512] [--classes 8] [--batch 64] [--max-workers N]
                                           [--gpu-rate 2075=A100 ...] [--data DIR] [--out scripts/results] [--no-save]
    python scripts/bench_input_pipeline.py --render scripts/results/input-pipeline-avx2.json

Generates (in a temporary directory, or in ``--data DIR`` and reused from there the next time) an
ImageFolder tree ``train/<class>/*.jpg`` + ``val/<class>/*.jpg`` of photo-like JPEGs of ImageNet's
typical size: ImageNet-1k training images average about 400x350 px (469x387 by other counts; most
often 500x375 or 500x333) and ~110 KB; the sizes are drawn from 500x375, 500x333, 375x500,
400x300 and 500x500, the content is smooth low-frequency colour fields with a mid-frequency texture
and grain, so a file lands near 100-130 KB at quality 90 (the report prints the mean file size and
pixels). Seeded: repeatable. Then:

- stages, one process, one torch thread (as a DataLoader worker runs): over every training file,
  read (the file's bytes; the page cache is warm, the files were just written or read, so this is
  memory, not disk), decode (PIL, as the library does), the per-image seeding the library does
  (``fork_rng`` + ``manual_seed``), each transform of ``FolderSplit.transform(224, train=True)``
  timed on its own (PILToTensor and RandomResizedCrop are "resize", the rest "augment"), and the
  collate (``torch.stack`` of a batch); the fastest of ``--passes`` passes. ms/image per stage, its
  share, and the per-worker rate 1000 / total ms; for information, ``torchvision.io.decode_jpeg`` on
  the same bytes against PIL, and ``torch.default_generator.manual_seed`` against ``torch.manual_seed``;
- end to end through the library's own loader (``load_imagefolder(root, workers=n)``,
  ``train.batches(batch, size=224, train=True, seed=epoch)``) for n = 0 (the main process), 1, 2,
  ... ``--max-workers``: two epochs each; time to the first batch (worker start-up), the whole-epoch
  rate, and the steady rate (from the n-th batch on, when every worker has delivered its first);
  scaling efficiency = rate(n) / (n x rate(1)), and against this machine's parallel capacity (how
  many cores' worth n CPU-bound processes get done together: less than n on shared cores);
- workers needed to feed a GPU at each ``--gpu-rate``: ceil(rate / the 1-worker steady rate),
  assuming linear scaling (the measured efficiency is printed beside it).

Every measurement records the CPU other processes took meanwhile (from /proc/<pid>/stat); a figure
measured while they took more than 0.1 cores is marked [shared]: rerun it on a quiet machine.
A default run takes about 30 s on 2 cores. Writes OUT/input-pipeline-<kind>.{json,txt}, <kind> being
``machine.cpu_kind`` (amx, avx512-vnni, avx-vnni, avx2, ...), so each kind of CPU keeps its own result.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
CROP = 224
QUALITY = 90
# ImageNet-1k's common training-image sizes (w, h) and how often this benchmark draws each
SIZES = ((500, 375, 0.35), (500, 333, 0.25), (375, 500, 0.15), (400, 300, 0.15), (500, 500, 0.10))
# the photo-like content: amplitudes of the coarse, medium and fine colour fields, grain sigma (luma, chroma)
COARSE, MEDIUM, FINE, GRAIN, CHROMA_GRAIN = 0.8, 0.3, 0.5, 14.0, 5.0
GPU_RATES = (
    (2075.0, "A100 (1/8 of NVIDIA DeepLearningExamples' 8x A100 80GB ResNet-50 v1.5 AMP training, ~16,600 img/s)"),
    (3000.0, "H100 (a guess: no published per-GPU figure used here)"),
)
SHARED_CORES = 0.1  # other processes' average CPU above which a figure is flagged as having shared the machine
GROUPS = ("read", "decode", "resize", "augment", "other")
RESIZE_STEPS = {"PILToTensor", "ToImage", "ToTensor", "RandomResizedCrop", "Resize", "CenterCrop", "RandomCrop"}
SEED_STAGE = "seed (fork_rng + manual_seed)"
COLLATE_STAGE = "collate (torch.stack)"


# ---------------------------------------------------------------- arguments


def parse_size(text: str) -> tuple[int, int, float]:
    """``500x375`` or ``500x375:0.35`` -> (500, 375, weight); weight 1 when left out."""
    dims, _, weight = text.partition(":")
    w, _, h = dims.lower().partition("x")
    try:
        size = (int(w), int(h), float(weight) if weight else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH or WxH:WEIGHT (e.g. 500x375:0.35)") from None
    if size[0] < 1 or size[1] < 1 or size[2] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: sides and weight must be positive")
    return size


def parse_gpu_rate(text: str) -> tuple[float, str]:
    """``2075`` or ``2075=A100`` -> (2075.0, label); the label defaults to "<rate> img/s"."""
    rate, _, label = text.partition("=")
    try:
        value = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not RATE or RATE=LABEL (e.g. 2075=A100)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be positive")
    return value, label or f"{value:g} img/s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="ImageFolder root to reuse (generated there when it has no train/)")
    parser.add_argument("--images", type=int, default=512, help="training images to generate")
    parser.add_argument("--classes", type=int, default=8, help="class folders to generate")
    parser.add_argument("--val-per-class", type=int, default=2, help="validation images per class (unused, tiny)")
    parser.add_argument(
        "--sizes", type=parse_size, nargs="+", default=list(SIZES), help="image sizes WxH[:weight] to draw from"
    )
    parser.add_argument("--quality", type=int, default=QUALITY, help="JPEG quality of the generated files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--passes", type=int, default=2, help="passes of the stage timing (the fastest is kept)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs through the loader per worker count")
    parser.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--gpu-rate",
        type=parse_gpu_rate,
        action="append",
        help="a GPU's training rate to feed, RATE[=LABEL] img/s; repeat for several (default: A100 2075, H100 3000)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true", help="print the report only")
    parser.add_argument("--render", type=Path, help="only rewrite the text report of a saved JSON result")
    args = parser.parse_args(argv)
    args.gpu_rate = args.gpu_rate or list(GPU_RATES)
    return args


# ---------------------------------------------------------------- the image tree


def draw_sizes(count: int, sizes: Sequence[tuple[int, int, float]], seed: int) -> list[tuple[int, int]]:
    """``count`` (w, h) drawn from ``sizes`` by their weights, seeded."""
    weights = np.array([s[2] for s in sizes], dtype=np.float64)
    picks = np.random.default_rng(seed).choice(len(sizes), size=count, p=weights / weights.sum())
    return [(sizes[i][0], sizes[i][1]) for i in picks]


def photo_like(width: int, height: int, seed: int) -> Any:
    """An RGB PIL image that compresses like a photo: coarse and medium colour fields (bicubic
    upsampled random grids), a fine texture at a fifth of the resolution, and luma/chroma grain."""
    from PIL import Image

    rng = np.random.default_rng(seed)

    def field(grid_w: int, grid_h: int, amplitude: float) -> np.ndarray:
        grid = rng.integers(0, 256, (max(grid_h, 1), max(grid_w, 1), 3), dtype=np.uint8)
        up = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
        return (np.asarray(up, dtype=np.float32) - 128.0) * amplitude

    pixels = 128.0 + field(6, 5, COARSE) + field(24, 18, MEDIUM) + field(width // 5, height // 5, FINE)
    pixels += rng.normal(0.0, GRAIN, (height, width, 1)).astype(np.float32)
    pixels += rng.normal(0.0, CHROMA_GRAIN, (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def generate_tree(
    root: Path,
    *,
    images: int,
    classes: int,
    val_per_class: int,
    sizes: Sequence[tuple[int, int, float]],
    quality: int = QUALITY,
    seed: int = 0,
) -> None:
    """``root/train/class_NNN/img_NNNNN.jpg`` (``images`` of them, dealt round the classes) and
    ``root/val/class_NNN/`` (``val_per_class`` each), every image seeded by its number."""
    if classes < 2:
        raise ValueError("an ImageFolder classifier needs at least two classes")
    val = val_per_class * classes
    dims = draw_sizes(images + val, sizes, seed)
    for i, (w, h) in enumerate(dims):
        split, n = ("train", i) if i < images else ("val", i - images)
        folder = root / split / f"class_{n % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        photo_like(w, h, seed * 1_000_003 + i).save(folder / f"img_{n:05d}.jpg", "JPEG", quality=quality)


def describe_tree(root: Path) -> dict[str, Any]:
    """What the training split holds: files, classes, mean bytes and pixels, and how many of each size
    (from the JPEG headers, without decoding)."""
    from PIL import Image

    files = sorted((root / "train").glob("*/*.jpg"))
    counts: dict[str, int] = {}
    pixels = 0
    for path in files:
        with Image.open(path) as image:
            w, h = image.size
        counts[f"{w}x{h}"] = counts.get(f"{w}x{h}", 0) + 1
        pixels += w * h
    total_bytes = sum(p.stat().st_size for p in files)
    return {
        "root": str(root),
        "images": len(files),
        "classes": len({p.parent.name for p in files}),
        "val_images": len(list((root / "val").glob("*/*.jpg"))),
        "mean_kb": total_bytes / max(len(files), 1) / 1000,
        "mean_pixels": pixels / max(len(files), 1),
        "sizes": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
    }


# ---------------------------------------------------------------- stages, one worker


def stage_group(name: str) -> str:
    """Which of ``GROUPS`` a stage belongs to: a transform by its class name."""
    if name in ("read", "decode"):
        return name
    if name in (SEED_STAGE, COLLATE_STAGE):
        return "other"
    return "resize" if name in RESIZE_STEPS else "augment"


def transform_steps(transform: Any) -> list[tuple[str, Any]]:
    """(label, callable) for each step of a ``v2.Compose`` (a transform that is not one: itself), labelled
    by class name, a repeated name numbered."""
    steps = list(getattr(transform, "transforms", [transform]))
    labels = [type(s).__name__ for s in steps]
    out = []
    for i, (label, step) in enumerate(zip(labels, steps, strict=True)):
        out.append((f"{label} #{labels[: i + 1].count(label)}" if labels.count(label) > 1 else label, step))
    return out


def library_seed(seed: int, index: int) -> int:
    """The seed the library's loader gives the random transform of sample ``index`` in epoch ``seed``."""
    return (seed * 1_000_003 + index) % (2**63)


def _stage_pass(paths: Sequence[str], transform: Any, *, batch: int, seed: int) -> dict[str, Any]:
    """One timed pass over ``paths``: ns per stage (summed), the alternatives' ns, the last output."""
    import torch
    from PIL import Image
    from torchvision.io import decode_jpeg

    steps = transform_steps(transform)
    ns = dict.fromkeys(["read", "decode", SEED_STAGE, *(label for label, _ in steps), COLLATE_STAGE], 0)
    alt = {"decode_jpeg": 0, "torch_manual_seed": 0}
    clock = time.perf_counter_ns
    pending: list[Any] = []
    x: Any = None
    for index, path in enumerate(paths):
        t0 = clock()
        with open(path, "rb") as fh:
            data = fh.read()
        t1 = clock()
        x = Image.open(io.BytesIO(data)).convert("RGB")
        t2 = clock()
        fork = torch.random.fork_rng(devices=[])  # as the library seeds each image's augmentation
        fork.__enter__()
        torch.default_generator.manual_seed(library_seed(seed, index))
        t3 = clock()
        ns["read"] += t1 - t0
        ns["decode"] += t2 - t1
        for label, step in steps:
            t4 = clock()
            x = step(x)
            ns[label] += clock() - t4
        t5 = clock()
        fork.__exit__(None, None, None)
        ns[SEED_STAGE] += (t3 - t2) + (clock() - t5)
        pending.append(x)
        if len(pending) == batch or index == len(paths) - 1:
            t6 = clock()
            torch.stack(pending)
            ns[COLLATE_STAGE] += clock() - t6
            pending = []
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        t7 = clock()
        decode_jpeg(encoded)
        t8 = clock()
        torch.manual_seed(library_seed(seed, index))
        t9 = clock()
        alt["decode_jpeg"] += t8 - t7
        alt["torch_manual_seed"] += t9 - t8
    return {"ns": ns, "alternatives_ns": alt, "output": x}


def time_stages(
    paths: Sequence[str], *, batch: int, size: int = CROP, seed: int = 0, passes: int = 2
) -> dict[str, Any]:
    """ms/image of each stage over ``paths``, in this process on one torch thread (as in a DataLoader
    worker), from the fastest of ``passes`` passes (a shared machine's noise only ever adds time); the
    decode and seeding alternatives timed on the same images."""
    import torch

    from resnet_deploy.data.imagefolder import FolderSplit

    transform = FolderSplit.transform(size, train=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _stage_pass(paths[: min(4, len(paths))], transform, batch=batch, seed=seed)  # load codecs and kernels
        runs = [_stage_pass(paths, transform, batch=batch, seed=seed) for _ in range(max(passes, 1))]
    finally:
        torch.set_num_threads(threads)
    n = max(len(paths), 1)
    best = min(runs, key=lambda r: sum(r["ns"].values()))
    ms = {name: v / n / 1e6 for name, v in best["ns"].items()}
    out = best["output"]
    return {
        "images": len(paths),
        "passes": len(runs),
        "pass_totals_ms": [sum(r["ns"].values()) / n / 1e6 for r in runs],
        "torch_threads": 1,
        "page_cache": "warm (the files were just written or read): read is memory, not disk",
        "stages": [{"name": name, "group": stage_group(name), "ms": v} for name, v in ms.items()],
        "decode_alternative": {
            "name": "torchvision.io.decode_jpeg (CPU)",
            "ms": best["alternatives_ns"]["decode_jpeg"] / n / 1e6,
            "pil_ms": ms["decode"],
        },
        "seed_alternative": {
            "name": "torch.manual_seed (it also queues CUDA, XPU and MTIA seeding, each with a traceback.format_stack)",
            "ms": best["alternatives_ns"]["torch_manual_seed"] / n / 1e6,
            "library_ms": ms[SEED_STAGE],
        },
        "sample": {"shape": list(out.shape), "dtype": str(out.dtype)} if out is not None else None,
    }


def _spin(count: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(count):
        total += i
    return time.perf_counter() - start


def parallel_capacity(processes: int, count: int = 4_000_000, repeats: int = 5) -> dict[str, Any]:
    """How many cores' worth of work ``processes`` CPU-bound processes get done at once: the same pure
    Python loop alone and in ``processes`` processes together (best of ``repeats``, interleaved), capacity =
    processes x alone / together. Less than ``processes``: the cores are shared (SMT siblings, a busy
    or oversubscribed host), and no loader scales past it."""
    import multiprocessing

    alone, together = math.inf, math.inf
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_spin, [1000] * processes, chunksize=1)  # the workers started
        for _ in range(repeats):  # interleaved, so a drifting clock or neighbour touches both alike
            start = time.perf_counter()
            pool.apply(_spin, (count,))
            alone = min(alone, time.perf_counter() - start)
            start = time.perf_counter()  # wall time: two loops queued on one worker take twice as long
            pool.map(_spin, [count] * processes, chunksize=1)
            together = min(together, time.perf_counter() - start)
    return {
        "processes": processes,
        "alone_s": alone,
        "together_s": together,
        "capacity_cores": capacity(processes, alone, together),
    }


def capacity(processes: int, alone_s: float, together_s: float) -> float:
    """Cores' worth of throughput: ``processes`` loops done in ``together_s`` where one takes ``alone_s``."""
    return processes * alone_s / together_s if together_s > 0 else 0.0


def stage_shares(stages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each stage's and each group's share of the total ms/image, and the per-worker rate 1000 / total."""
    total = sum(s["ms"] for s in stages)
    groups = {g: sum(s["ms"] for s in stages if s["group"] == g) for g in GROUPS}
    return {
        "total_ms": total,
        "images_per_second": 1000.0 / total if total > 0 else 0.0,
        "stages": [s | {"share": s["ms"] / total if total else 0.0} for s in stages],
        "groups": [
            {"group": g, "ms": ms, "share": ms / total if total else 0.0}
            for g, ms in groups.items()
            if ms or g != "other"
        ],
    }


# ---------------------------------------------------------------- the library's loader, N workers


def epoch_summary(arrivals: Sequence[float], counts: Sequence[int], workers: int) -> dict[str, Any]:
    """One epoch from its batches' arrival times (s since the epoch's first ``next``) and sizes.

    Steady rate: the images after batch k = max(workers, 1) - 1 over the time from batch k's arrival
    to the last one's; by batch k every worker has delivered its first batch, so start-up is out."""
    if not arrivals:
        raise ValueError("an epoch with no batches")
    images = sum(counts)
    k = max(workers, 1) - 1
    if len(arrivals) - 1 <= k:  # too few batches to leave start-up out: the whole epoch
        steady = images / arrivals[-1] if arrivals[-1] > 0 else 0.0
    else:
        steady = sum(counts[k + 1 :]) / (arrivals[-1] - arrivals[k]) if arrivals[-1] > arrivals[k] else 0.0
    return {
        "images": images,
        "batches": len(arrivals),
        "first_batch_s": arrivals[0],
        "epoch_s": arrivals[-1],
        "epoch_images_per_second": images / arrivals[-1] if arrivals[-1] > 0 else 0.0,
        "steady_images_per_second": steady,
    }


def run_loader(root: Path, workers: int, *, batch: int, epochs: int, size: int = CROP) -> dict[str, Any]:
    """``epochs`` epochs of the training split through ``load_imagefolder(root, workers=workers)``."""
    from resnet_deploy.data.imagefolder import load_imagefolder

    dataset = load_imagefolder(root, workers=workers)
    runs = []
    dtype, skipped = None, 0
    for epoch in range(epochs):
        arrivals, counts = [], []
        start = time.perf_counter()
        for got in dataset.train.batches(batch, size=size, train=True, seed=epoch):
            arrivals.append(time.perf_counter() - start)
            counts.append(int(got.images.shape[0]))
            dtype, skipped = str(got.images.dtype), skipped + got.skipped
        runs.append(epoch_summary(arrivals, counts, workers) | {"batch_arrivals_s": arrivals, "batch_images": counts})
    del dataset  # persistent workers end with their loader: reaped now, their CPU time counted in this measurement
    gc.collect()
    return {"workers": workers, "epochs": runs, "batch_dtype": dtype, "skipped": skipped}


def scaling(rows: Sequence[dict[str, Any]], capacity: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """Each worker count's rate (the last epoch's steady rate), its efficiency against n x the 1-worker
    rate (None for n = 0, or without a 1-worker row) and, where the machine's parallel capacity for n
    processes was measured, the speed-up over 1 worker as a share of that capacity: the loader's own
    scaling, the machine's sharing of its cores taken out."""
    rate = {r["workers"]: r["epochs"][-1]["steady_images_per_second"] for r in rows}
    one = rate.get(1)
    capacity = capacity or {}
    out = []
    for r in rows:
        n = r["workers"]
        speedup = rate[n] / one if n >= 1 and one else None
        out.append(
            {
                "workers": n,
                "images_per_second": rate[n],
                "first_epoch_images_per_second": r["epochs"][0]["epoch_images_per_second"],
                "first_batch_s": [e["first_batch_s"] for e in r["epochs"]],
                "efficiency": speedup / n if speedup is not None else None,
                "machine_capacity": capacity.get(n),
                "of_capacity": speedup / capacity[n] if speedup is not None and capacity.get(n) else None,
            }
        )
    return out


def workers_needed(gpu_rate: float, per_worker: float) -> int:
    """Workers that feed ``gpu_rate`` img/s at ``per_worker`` img/s each, scaling linearly."""
    if per_worker <= 0:
        raise ValueError("the per-worker rate must be positive")
    return math.ceil(gpu_rate / per_worker - 1e-9)  # 2075 / 207.5 is 10 workers, not 11


def feeding(gpu_rates: Iterable[tuple[float, str]], per_worker: float) -> list[dict[str, Any]]:
    """Workers, and cores (one per worker, plus one for the training process), per GPU rate."""
    rows = []
    for rate, label in gpu_rates:
        n = workers_needed(rate, per_worker)
        rows.append({"gpu": label, "gpu_images_per_second": rate, "workers": n, "cores": n + 1})
    return rows


# ---------------------------------------------------------------- machine, report


def machine() -> dict[str, Any]:
    import PIL
    import torch
    import torchvision
    from PIL import features

    from resnet_deploy.runtime.machine import cpu_flags, cpu_name

    return {
        "cpu": cpu_name(),
        "isa": cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "pillow_simd": ".post" in PIL.__version__,  # Pillow-SIMD releases carry a .postN suffix
        "libjpeg_turbo": features.version_feature("libjpeg_turbo"),
    }


def cpu_seconds_by_process() -> dict[int, float] | None:
    """CPU-seconds each process other than this one and its children has used so far, its reaped
    children's included (user + system, from /proc/<pid>/stat: /proc/stat's idle count is not
    trustworthy under every hypervisor); None without /proc."""
    me = os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as fh:
                rest = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone since the listing
        pid, ppid = int(entry), int(rest[1])
        if me not in (pid, ppid):
            found[pid] = sum(int(v) for v in rest[11:15]) / tick  # utime, stime, cutime, cstime
    return found


def other_processes(
    before: dict[int, float] | None, after: dict[int, float] | None, seconds: float
) -> dict[str, Any] | None:
    """Cores' worth of CPU that other processes took on average over ``seconds`` between two
    ``cpu_seconds_by_process`` readings, and the busiest of them. A process that ended in between
    has its time in its parent's reaped-children count: what it had before is taken off."""
    if before is None or after is None or seconds <= 0:
        return None
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    gone = sum(t for pid, t in before.items() if pid not in after)
    busiest = max(used, key=lambda pid: used[pid], default=None)
    return {
        "seconds": seconds,
        "cores": max(sum(used.values()) - gone, 0.0) / seconds,
        "busiest": {"pid": busiest, "cores": used[busiest] / seconds, "name": _process_name(busiest)}
        if busiest is not None
        else None,
    }


def watched(measure: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``measure(*args, **kwargs)``, a dict, with ``other_processes``: what other processes took meanwhile."""
    before, start = cpu_seconds_by_process(), time.monotonic()
    result = measure(*args, **kwargs)
    return result | {"other_processes": other_processes(before, cpu_seconds_by_process(), time.monotonic() - start)}


def shared(section: dict[str, Any], threshold: float = SHARED_CORES) -> str:
    """`` [shared: other processes took 0.56 cores]`` when they took more than ``threshold`` during a
    measurement; empty otherwise, and for results saved without the record."""
    busy = section.get("other_processes")
    return f" [shared: other processes took {busy['cores']:.2f} cores]" if busy and busy["cores"] > threshold else ""


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The derived sections (shares, scaling, workers needed) from the measured ones."""
    shares = stage_shares(result["stages"]["stages"])
    capacity = {p["processes"]: p["capacity_cores"] for p in result["machine"].get("parallel") or []}
    scaled = scaling(result["loader"], capacity)
    one = next((r for r in scaled if r["workers"] == 1), None)
    per_worker, source = (
        (one["images_per_second"], "the library's loader, 1 worker, steady")
        if one and one["images_per_second"] > 0
        else (shares["images_per_second"], "the stage timings (no 1-worker loader run)")
    )
    widest = max(
        (r for r in scaled if r["efficiency"] is not None and r["workers"] > 1),
        key=lambda r: r["workers"],
        default=None,
    )
    return {
        "shares": shares,
        "scaling": scaled,
        "per_worker_images_per_second": per_worker,
        "per_worker_source": source,
        "measured_efficiency": {k: widest[k] for k in ("workers", "efficiency", "machine_capacity", "of_capacity")}
        if widest
        else None,
        "workers_needed": feeding([(float(g[0]), str(g[1])) for g in result["gpu_rates"]], per_worker),
    }


def render(result: dict[str, Any]) -> str:
    from resnet_deploy.runtime.machine import cpu_kind, describe_isa

    m, d, s = result["machine"], result["data"], result["summary"]
    where = f"{m['cpu']} ({describe_isa(m['isa']) or 'no listed instruction sets'}; {cpu_kind(m['isa'])})"
    jpeg = f"libjpeg-turbo {m['libjpeg_turbo']}" if m.get("libjpeg_turbo") else "libjpeg (not turbo)"
    load = m.get("load_average")
    lines = [
        f"ResNet-50 training input pipeline on {where}, {m['cores']} cores ({m['usable_cores']} usable); "
        f"torch {m['torch']}, torchvision {m['torchvision']}, Pillow {m['pillow']}"
        f" ({'Pillow-SIMD' if m['pillow_simd'] else 'not Pillow-SIMD'}, {jpeg})"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        f"Data: {d['images']} train JPEGs in {d['classes']} classes ({d['source']}), quality {d['quality']}, "
        f"mean {d['mean_kb']:.0f} KB and {d['mean_pixels'] / 1000:.0f}k pixels "
        f"(ImageNet-1k train: ~110 KB; 400x350 to 469x387 on average, by the source: 140k-180k); sizes "
        + ", ".join(f"{k} x{v}" for k, v in d["sizes"].items()),
        "",
        f"Per worker, one process, 1 torch thread, {result['stages']['images']} images, crop {result['crop']} "
        f"(on {m['cpu']}; page cache {result['stages']['page_cache']}):",
        f"  {'stage':<32} {'group':<8} {'ms/image':>9} {'share':>7}",
    ]
    sh = s["shares"]
    lines += [f"  {r['name']:<32} {r['group']:<8} {r['ms']:>9.3f} {r['share']:>7.1%}" for r in sh["stages"]]
    lines.append(f"  {'total':<32} {'':<8} {sh['total_ms']:>9.3f} {1:>7.0%}")
    lines.append("  by group: " + ", ".join(f"{g['group']} {g['ms']:.3f} ms ({g['share']:.0%})" for g in sh["groups"]))
    lines.append(
        f"  per-worker rate: {sh['images_per_second']:.0f} images/s (1000 / {sh['total_ms']:.3f} ms)"
        + shared(result["stages"])
    )
    alt = result["stages"]["decode_alternative"]
    if alt["ms"] > 0:
        lines.append(
            f"  decode alternative: {alt['name']} {alt['ms']:.3f} ms/image vs PIL {alt['pil_ms']:.3f} ms "
            f"(PIL takes {alt['pil_ms'] / alt['ms']:.2f}x as long)"
        )
    seed_alt = result["stages"].get("seed_alternative")
    if seed_alt:
        lines.append(
            f"  seed alternative: {seed_alt['name']} {seed_alt['ms']:.3f} ms/image (the library's seed stage above, "
            f"torch.default_generator.manual_seed: {seed_alt['library_ms']:.3f} ms, fork_rng included)"
        )
    sample = result["stages"].get("sample")
    batch_dtype = next((r["batch_dtype"] for r in result["loader"] if r["batch_dtype"]), "?")
    if sample:
        lines.append(f"  the transform's output: {sample['dtype']} {tuple(sample['shape'])}")
        if sample["dtype"] != batch_dtype:
            lines.append(
                f"  the loader turns the workers' {sample['dtype']} batches into {batch_dtype} after them: on the "
                "device when given one; here (no device) on the main process's CPU, inside the times below"
            )
    lines += [
        "",
        f"End to end, the library's loader (load_imagefolder(..., workers=n).train.batches({result['batch']}, "
        f"size={result['crop']}, train=True)), {result['epochs']} epochs each, {batch_dtype} batches (on {m['cpu']}, "
        f"{m['cores']} cores):",
        f"  {'workers':>8} {'first batch s, by epoch':>24} {'epoch 1 img/s':>14} {'steady img/s':>13} "
        f"{'efficiency':>11} {'of capacity':>12}",
    ]
    measured = {r["workers"]: r for r in result["loader"]}
    for r in s["scaling"]:
        first = ", ".join(f"{t:.2f}" for t in r["first_batch_s"])
        eff = f"{r['efficiency']:.0%}" if r["efficiency"] is not None else "-"
        cap = f"{r['of_capacity']:.0%} of {r['machine_capacity']:.2f}" if r.get("of_capacity") is not None else "-"
        label = f"{r['workers']}" + (" (main)" if r["workers"] == 0 else "")
        lines.append(
            f"  {label:>8} {first:>24} {r['first_epoch_images_per_second']:>14.0f} {r['images_per_second']:>13.0f} "
            f"{eff:>11} {cap:>12}" + shared(measured[r["workers"]])
        )
    lines += [
        "  first batch: worker start-up (epoch 1) and, with persistent workers, the refill (later epochs); "
        "steady: from the n-th batch of the last epoch on;",
        "  efficiency: rate(n) / (n x rate(1)); of capacity: rate(n) / rate(1) over the cores' worth n CPU-bound "
        "processes get done together here (below);",
        "  n = 0 decodes in the main process, with torch's intra-op threads (all cores)",
    ]
    par = m.get("parallel") or []
    for c in par:
        lines.append(
            f"  parallel capacity: {c['processes']} CPU-bound processes together get {c['capacity_cores']:.2f} cores' "
            f"worth done (a pure-Python loop {c['alone_s'] * 1000:.0f} ms alone, {c['processes']} of them "
            f"{c['together_s'] * 1000:.0f} ms together); below {c['processes']}, the cores are shared (SMT "
            "siblings, a busy or oversubscribed host) and no loader scales past it" + shared(c)
        )
    eff = s["measured_efficiency"]
    eff_text = "no multi-worker run"
    if eff:
        eff_text = f"measured here: {eff['efficiency']:.0%} at {eff['workers']} workers on {m['cores']} cores"
        if eff.get("of_capacity") is not None:
            eff_text += f", {eff['of_capacity']:.0%} of the {eff['machine_capacity']:.2f} cores' worth they get"
    lines += [
        "",
        f"Workers needed to feed a GPU, on {where}: ceil(GPU img/s / {s['per_worker_images_per_second']:.0f} img/s "
        f"per worker, from {s['per_worker_source']}); assumes linear scaling ({eff_text}):",
    ]
    for r in s["workers_needed"]:
        lines.append(
            f"  {r['gpu_images_per_second']:>7.0f} img/s, {r['gpu']}: {r['workers']} workers, {r['cores']} cores "
            "(one per worker, +1 for the training process)"
        )
    busy = m.get("other_processes")
    if busy:
        top = busy["busiest"]
        lines += [
            "",
            f"Other processes took {busy['cores']:.2f} cores on average during the {busy['seconds']:.0f} s run"
            + (f" (busiest: {top['name']}, {top['cores']:.2f})" if top else "")
            + f"; a figure marked [shared] had other processes take more than {SHARED_CORES} cores while it was "
            "measured",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from resnet_deploy.runtime.machine import cpu_kind

    args = parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".txt").write_text(render(result) + "\n")
        print(render(result))
        return 0
    host = machine()
    before, started = cpu_seconds_by_process(), time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "imagefolder"
        source = f"reused from {root}"
        if not (root / "train").is_dir():
            print(f"generating {args.images} JPEGs in {root} ...", file=sys.stderr)
            generate_tree(
                root,
                images=args.images,
                classes=args.classes,
                val_per_class=args.val_per_class,
                sizes=args.sizes,
                quality=args.quality,
                seed=args.seed,
            )
            source = f"generated, seed {args.seed}"
        data = describe_tree(root) | {"source": source, "quality": args.quality}
        paths = [str(p) for p in sorted((root / "train").glob("*/*.jpg"))]
        print("stages ...", file=sys.stderr)
        stages = watched(time_stages, paths, batch=args.batch, seed=args.seed, passes=args.passes)
        print("parallel capacity ...", file=sys.stderr)
        host["parallel"] = [watched(parallel_capacity, n) for n in range(2, args.max_workers + 1)]
        loader = []
        for n in range(args.max_workers + 1):
            print(f"loader, {n} workers ...", file=sys.stderr)
            loader.append(watched(run_loader, root, n, batch=args.batch, epochs=args.epochs))
    host["other_processes"] = other_processes(before, cpu_seconds_by_process(), time.monotonic() - started)
    result: dict[str, Any] = {
        "machine": host,
        "data": data,
        "crop": CROP,
        "batch": args.batch,
        "epochs": args.epochs,
        "gpu_rates": [list(g) for g in args.gpu_rate],
        "stages": stages,
        "loader": loader,
    }
    result["summary"] = summarize(result)
    text = render(result)
    print(text)
    if not args.no_save:
        from resnet_deploy._io import write_report

        written = write_report(args.out / f"input-pipeline-{cpu_kind(result['machine']['isa'])}", result, text)
        print(f"wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
