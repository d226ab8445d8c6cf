"""The INT8 budget search against NNCF's ``quantize_with_accuracy_control``: same models, same images.

    .venv/bin/python scripts/bench_budget_vs_nncf.py --nncf-python /path/to/nncf-venv/bin/python
        [--images 360] [--calib-images 256] [--max-top1-drop 0.5] [--out scripts/results] [--no-save]

Trains a ResNet-20 for 3 epochs on the embedded digits (seeded, on the CPU) and makes two INT8-hostile
twins of it with the same FP32 function: the tests' planted culprit (channel 3 of layer2.1's first
BatchNorm scaled up 10,000x, the weights reading it in layer2.1.conv2 down 10,000x) and a cross-layer
scaled one (channel 5 of layer3.0, 1,000x). For each, both tools get the same ``--calib-images``
training images to calibrate on and the same ``--images`` held-out test images to measure the top-1
drop on, each in its own process (wall seconds and peak RSS its own, calibration included, no cache):

- ours: ``calibrate_onnx`` with ``BudgetOptions(max_top1_drop)`` (entropy, TensorRT placement);
- NNCF: ``nncf.quantize_with_accuracy_control`` on the ONNX model with ``max_drop`` the same budget
  (absolute), its validation function top-1 accuracy in ONNX Runtime on the held-out images.

Both results are then scored here on the held-out images against the FP32 model (top-1 change and its
95% interval) and their layers read from the graphs: a Conv/Gemm is INT8 when its weights come through
a DequantizeLinear. NNCF runs from its own environment (``--nncf-python``: a Python with nncf, onnx
and onnxruntime), since it pins other versions of what this one has; without it only ours runs.
Writes OUT/budget-vs-nncf-resnet20.{json,txt} unless --no-save.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import bench_int8_budget  # noqa: E402  (its peak memory and machine description; stdlib-only at import)

MODELS = {"culprit": ("layer2", 1, 3, 10_000.0), "cross-layer-scaled": ("layer3", 0, 5, 1_000.0)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nncf-python", type=Path, default=None, help="a Python that imports nncf")
    parser.add_argument("--images", type=int, default=360, help="held-out test images the drop is measured on")
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--max-top1-drop", type=float, default=0.5, help="pp")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--side", choices=("ours", "nncf"), help=argparse.SUPPRESS)  # one run, in a child
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- the two sides, each in its own process -----------------------------------------------------------


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    import resnet_deploy.data  # noqa: F401  (torch: loaded by every calibration, part of its memory)
    from resnet_deploy.quantize.budget import BudgetOptions
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    start = time.perf_counter()
    budget = BudgetOptions(args.max_top1_drop, images=args.images)
    result = calibrate_onnx(args.onnx, args.output, budget=budget, count=args.calib_images, cache_dir=None)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mib": bench_int8_budget.peak_rss_mib(), "steps": result.budget}


def run_nncf(args: argparse.Namespace) -> dict[str, Any]:
    import nncf  # type: ignore[import-not-found]
    import numpy as np
    import onnx
    import onnxruntime as ort

    data = np.load(args.data)
    calib, images, labels = data["calib"], data["held_out"], data["labels"]
    model = onnx.load(str(args.onnx))
    name = model.graph.input[0].name

    def validate(candidate: Any, items: Any) -> float:
        session = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        right = 0
        for batch, truth in items:
            right += int((session.run(None, {name: batch})[0].argmax(1) == truth).sum())
        return right / len(labels)

    batches = [(images[i : i + 64], labels[i : i + 64]) for i in range(0, len(labels), 64)]
    start = time.perf_counter()
    quantized = nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset([{name: calib[i : i + 1]} for i in range(len(calib))]),
        nncf.Dataset(batches, lambda item: {name: item[0]}),
        validation_fn=lambda candidate, items: validate(candidate, batches),
        max_drop=args.max_top1_drop / 100,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(calib),
    )
    seconds = time.perf_counter() - start
    onnx.save(quantized, str(args.output))
    return {"seconds": seconds, "peak_rss_mib": bench_int8_budget.peak_rss_mib(), "nncf": nncf.__version__}


# --- the parent: models, images, the two children, the scoring ---------------------------------------


def make_models(directory: Path, *, trained: bool = False) -> dict[str, Path]:
    """The hostile twins' ONNX files (and, with ``trained``, the trained model's own first)."""
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model
    from resnet_deploy.training.trainer import Trainer, TrainOptions

    result = Trainer(TrainOptions.of(depth=20, epochs=3, device="cpu"), directory / "run").run()
    paths = {}
    if trained:
        source = open_model(result.checkpoint)
        paths["trained"] = directory / "trained.onnx"
        export_onnx(source.model, paths["trained"], source.metadata)
    for name, (stage, block_index, channel, factor) in MODELS.items():
        source = open_model(result.checkpoint)
        block = getattr(source.model, stage)[block_index]
        with torch.no_grad():
            block.bn1.weight[channel] *= factor
            block.bn1.bias[channel] *= factor
            block.conv2.weight[:, channel] /= factor
        paths[name] = directory / f"{name}.onnx"
        export_onnx(source.model, paths[name], source.metadata)  # verified: the same FP32 function
    return paths


def dump_images(onnx_path: Path, args: argparse.Namespace, path: Path) -> None:
    """The calibration and held-out images our calibration takes, for NNCF to take the same."""
    import numpy as np

    from resnet_deploy.artifacts.onnx_io import read_onnx_metadata
    from resnet_deploy.messages import SILENT
    from resnet_deploy.quantize.calib_data import load_held_out_set
    from resnet_deploy.quantize.measured import calibration_images
    from resnet_deploy.quantize.options import CalibrationOptions

    metadata = read_onnx_metadata(onnx_path)
    calib = calibration_images(metadata, onnx_path, CalibrationOptions(count=args.calib_images), SILENT)
    held_out = load_held_out_set(metadata, None, args.images)
    np.savez(path, calib=np.concatenate(calib.batches), held_out=held_out.images, labels=held_out.labels)


def child(python: str, side: str, onnx_path: Path, output: Path, data: Path, args: argparse.Namespace) -> dict:
    result = output.with_suffix(".json")
    command = [python, str(Path(__file__).resolve()), "--side", side, "--onnx", str(onnx_path)]
    command += ["--output", str(output), "--data", str(data), "--result", str(result)]
    command += ["--images", str(args.images), "--calib-images", str(args.calib_images)]
    command += ["--max-top1-drop", repr(args.max_top1_drop)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if side == "ours" else dict(os.environ)
    subprocess.run(command, check=True, env=env)
    return json.loads(result.read_text())


def score(fp32: Path, quantized: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Top-1 change on the held-out images against FP32, and which layers are INT8 (weights behind a DQ)."""
    import onnx

    from resnet_deploy.artifacts.onnx_io import read_onnx_metadata
    from resnet_deploy.quantize.calib_data import load_held_out_set
    from resnet_deploy.quantize.judge import HeldOutJudge
    from resnet_deploy.quantize.layers import mac_share, quantizable_layers

    reference = onnx.load(str(fp32))
    judge = HeldOutJudge(reference, load_held_out_set(read_onnx_metadata(fp32), None, args.images))
    model = onnx.load(str(quantized))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    weights = {n.name: n.input[1] for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    layers = [layer for layer in quantizable_layers(reference) if layer.op in ("Conv", "Gemm")]
    kept_out = {layer.node for layer in layers if weights.get(layer.node) not in dequantized}
    change = judge.score(model).change
    return {
        "top1_change": change.to_dict(),
        "kept_out": sorted(layer.module or layer.node for layer in layers if layer.node in kept_out),
        "int8_mac_share": mac_share(layers, kept_out),
    }


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"ResNet-20 trained 3 epochs on the embedded digits, two INT8-hostile twins; {s['calib_images']} calibration "
        f"images, {s['images']} held-out test images, budget {s['max_top1_drop']:g} pp (point estimate); "
        "seconds and peak MiB of each tool's own process, calibration included",
        f"machine: {result['machine']}",
        f"NNCF: {result.get('nncf_version') or 'not run (no --nncf-python)'}",
        "",
        "| model | tool | seconds | peak MiB | Δtop-1 [95% CI] | INT8 MAC share | kept out of INT8 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, sides in result["models"].items():
        for tool, r in sides.items():
            c = r["top1_change"]
            lines.append(
                f"| {model} | {tool} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | {c['delta_pp']:+.2f} pp "
                f"[{c['low_pp']:+.2f}, {c['high_pp']:+.2f}] | {100 * r['int8_mac_share']:.1f}% | "
                f"{', '.join(r['kept_out']) or 'none'} |"
            )
        if "nncf" in sides:
            ratio = sides["nncf"]["seconds"] / sides["ours"]["seconds"]
            lines.append(f"| {model} | NNCF / ours | {ratio:.2f}x | | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        out = run_ours(args) if args.side == "ours" else run_nncf(args)
        args.result.write_text(json.dumps(out, indent=1) + "\n")
        return 0
    models: dict[str, dict[str, Any]] = {}
    nncf_version = None
    with tempfile.TemporaryDirectory(prefix="bench-budget-nncf-") as tmp:
        directory = Path(tmp)
        for name, path in make_models(directory).items():
            data = directory / f"{name}.npz"
            dump_images(path, args, data)
            models[name] = {}
            sides = [("ours", sys.executable)] + ([("nncf", str(args.nncf_python))] if args.nncf_python else [])
            for side, python in sides:
                print(f"== {name}: {side}", file=sys.stderr, flush=True)
                output = directory / f"{name}.{side}.int8.onnx"
                ran = child(python, side, path, output, data, args)
                nncf_version = ran.get("nncf", nncf_version)
                models[name][side] = {"seconds": ran["seconds"], "peak_rss_mib": ran["peak_rss_mib"]}
                models[name][side] |= score(path, output, args)
    result = {
        "what": "the INT8 budget search against NNCF's quantize_with_accuracy_control on the same models and images",
        "command": "python scripts/bench_budget_vs_nncf.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": bench_int8_budget.machine_line(bench_int8_budget.describe_machine()),
        "nncf_version": nncf_version,
        "settings": {"images": args.images, "calib_images": args.calib_images, "max_top1_drop": args.max_top1_drop},
        "models": models,
    }
    text = report(result)
    print(text, end="")
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / "budget-vs-nncf-resnet20"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        stem.with_suffix(".txt").write_text(text)
        print(f"wrote {stem}.json and {stem}.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
