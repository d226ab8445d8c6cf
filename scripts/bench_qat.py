"""Quantization-aware training: the top-1 drop post-training INT8 leaves and QAT's, its epochs and wall time.

    .venv/bin/python scripts/bench_qat.py [--epochs 2] [--images 360] [--r50-train-images 256]
        [--r50-epochs 1] [--r50-batch-size 16] [--skip-r50] [--out scripts/results] [--no-save]

ResNet-20 on the embedded digits: a model trained 3 epochs (seeded, CPU), and its two INT8-hostile twins
with the same FP32 function (the tests' planted culprit, 10,000x on one channel of layer2.1, and a
cross-layer scaled one, 1,000x on one channel of layer3.0). ResNet-50 at 224: the random-weight model of
``bench_int8_budget.py`` with its 10-class head fit to its features on digits (its fc layer is what
post-training INT8 ruins). Each model is calibrated once (entropy, cached), post-training INT8 scored
against FP32 on ``--images`` held-out test images, then fine-tuned by ``qat_onnx`` three ways:

- fixed: the calibrated scales, fixed; weights fine-tuned (what pytorch-quantization and ModelOpt do);
- narrowed: scales lowered once where their readers' error is less, then fixed;
- learned: narrowed, then learned with the weights (the default).

Reports for each: Δtop-1 against FP32 and its 95% interval, the epochs, images per epoch and the
fine-tuning's wall seconds, and the peak RSS of this process. ResNet-50 fine-tunes 16 images a batch
(``--r50-batch-size``): the activations of a batch at 224 are kept for the backward pass, and 128 of them
outgrow a 24 GB machine. Writes OUT/qat.{json,txt} unless --no-save.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import bench_budget_vs_nncf  # noqa: E402  (the hostile ResNet-20s its comparison with NNCF runs on)
import bench_int8_budget  # noqa: E402  (the ResNet-50 its budget benchmark runs on; memory, machine)

WAYS = {
    "fixed": {"learn_scales": False, "narrow_scales": False},
    "narrowed": {"learn_scales": False, "narrow_scales": True},
    "learned": {"learn_scales": True, "narrow_scales": True},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="QAT epochs for the ResNet-20s")
    parser.add_argument("--images", type=int, default=360, help="held-out test images scored")
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--r50-epochs", type=int, default=1)
    parser.add_argument("--r50-train-images", type=int, default=256, help="ResNet-50 training images per epoch")
    parser.add_argument("--r50-batch-size", type=int, default=16)
    parser.add_argument("--skip-r50", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true")
    return parser.parse_args(argv)


def resnet20s(directory: Path) -> dict[str, Path]:
    return bench_budget_vs_nncf.make_models(directory, trained=True)


def resnet50(directory: Path) -> Path:
    path, _ = bench_int8_budget.export(bench_int8_budget.parse_args(["--depth", "50"]), directory)
    return path


def fine_tune_ways(
    path: Path, args: argparse.Namespace, epochs: int, images: int | None, cache: Path, batch_size: int = 128
) -> dict[str, dict[str, Any]]:
    from resnet_deploy.quantize.options import CalibrationOptions
    from resnet_deploy.quantize.qat_onnx import qat_onnx
    from resnet_deploy.quantize.qat_options import QatOptions

    calibration = CalibrationOptions(count=args.calib_images, cache_dir=cache)
    out = {}
    for way, fields in WAYS.items():
        print(f"== {path.stem}: {way}", file=sys.stderr, flush=True)
        options = QatOptions(epochs=epochs, images=images, batch_size=batch_size, device="cpu", **fields)
        output = path.with_name(f"{path.stem}.{way}.qat.int8.onnx")
        result = qat_onnx(path, output, calibration, options, held_out_images=args.images)
        out[way] = {
            "epochs": result.epochs,
            "images_per_epoch": result.images_per_epoch,
            "batch_size": batch_size,
            "seconds": result.fine_tune_seconds,
            "post_training": result.top1_change_before,
            "qat": result.top1_change_after,
        }
    return out


def describe_machine() -> str:
    import torch

    machine = bench_int8_budget.machine_line(bench_int8_budget.describe_machine())
    return f"{machine}; torch {torch.__version__}, on the CPU (no GPU used)"


def _change(c: dict[str, Any]) -> str:
    return f"{c['delta_pp']:+.2f} pp [{c['low_pp']:+.2f}, {c['high_pp']:+.2f}]"


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"QAT against post-training INT8 (entropy, {s['calib_images']} calibration images), Δtop-1 against FP32 on "
        f"{s['images']} held-out test images of the embedded digits; ResNet-20s trained 3 epochs, ResNet-50 random "
        "with a fitted head; fine-tuning on the CPU",
        f"machine: {result['machine']}",
        f"command: {result['command']}",
        "",
        "| model | post-training INT8 | scales | QAT | epochs | images/epoch | batch | QAT seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, ways in result["models"].items():
        for way, r in ways.items():
            lines.append(
                f"| {model} | {_change(r['post_training'])} | {way} | {_change(r['qat'])} | {r['epochs']} | "
                f"{r['images_per_epoch']} | {r.get('batch_size', 128)} | {r['seconds']:.1f} |"
            )
    lines += ["", f"peak RSS of the process: {result['peak_rss_mib']:.0f} MiB"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-qat-") as tmp:
        directory, cache = Path(tmp), Path(tmp) / "calibration"
        for name, path in resnet20s(directory).items():
            models[f"ResNet-20 {name}"] = fine_tune_ways(path, args, args.epochs, None, cache)
        if not args.skip_r50:
            models["ResNet-50 224"] = fine_tune_ways(
                resnet50(directory), args, args.r50_epochs, args.r50_train_images, cache, args.r50_batch_size
            )
    result = {
        "what": "post-training INT8 against quantization-aware training: top-1 change against FP32, epochs, seconds",
        "command": "python scripts/bench_qat.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine(),
        "settings": {"images": args.images, "calib_images": args.calib_images, "epochs": args.epochs},
        "models": models,
        "peak_rss_mib": bench_int8_budget.peak_rss_mib(),
    }
    text = report(result)
    print(text, end="")
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "qat.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "qat.txt").write_text(text)
        print(f"wrote {args.out / 'qat.json'} and {args.out / 'qat.txt'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
