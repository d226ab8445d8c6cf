#!/usr/bin/env python3
"""The paper's degradation experiment (He et al. 2015, Figure 6), on digits or CIFAR-10.

Trains plain-20, plain-56, ResNet-20 and ResNet-56 with the same recipe, budget and seed, then
plots training error (dashed) and test error (solid) per epoch: plain nets on the left, ResNets on
the right. The paper's finding: the deeper plain net has *higher* training error than the shallower
one (degradation), while the deeper ResNet has lower error than the shallower one.

    python scripts/degradation.py                                  # embedded digits, ~40 min on 2 cores
    python scripts/degradation.py --data cifar10:~/data/cifar-10-batches-py --epochs 164

Writes OUT/degradation.png, OUT/degradation.json and one run directory per model.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not

MODELS = (("plain", 20), ("plain", 56), ("resnet", 20), ("resnet", 56))
# The paper's curves span 64k iterations; digits has 12 iterations per epoch, and at the training
# command's 20 epochs (240 iterations) the 56-layer nets have barely started. 60 epochs = 720.
DIGITS_EPOCHS = 60


def train_all(data: str, epochs: int | None, seed: int, out: Path, device: str) -> dict[str, Any]:
    from resnet_deploy.messages import Printed
    from resnet_deploy.training.trainer import Trainer, TrainOptions

    results: dict[str, Any] = {}
    for kind, depth in MODELS:
        name = f"{kind}{depth}"
        run_dir = out / name
        options = TrainOptions.of(
            depth=depth, plain=kind == "plain", data=data, epochs=epochs, seed=seed, device=device
        )
        # An interrupted sweep continues; the full options go along, so a finished or interrupted run
        # with other settings (say another --epochs) is refused rather than reported as this sweep.
        resume = run_dir if (run_dir / "train_state.pt").exists() else None
        trainer = Trainer(options, run_dir, resume=resume, out=Printed(bars=False))  # its start line names it
        result = trainer.run()
        results[name] = {
            "epochs": result.epochs,
            "train_top1_error": [r.train_top1_error for r in result.history],
            "test_top1_error": [r.test_top1_error for r in result.history],
            "final_train_top1_error": result.history[-1].train_top1_error,
            "final_test_top1_error": result.history[-1].test_top1_error,
            "seconds": round(sum(r["epoch_seconds"] for r in result.history), 1),
        }
    return results


def plot(results: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = {20: "tab:orange", 56: "tab:red"}
    for ax, kind, label in ((axes[0], "plain", "plain"), (axes[1], "resnet", "ResNet")):
        for depth in (20, 56):
            r = results[f"{kind}{depth}"]
            epochs = range(1, len(r["test_top1_error"]) + 1)
            ax.plot(epochs, r["train_top1_error"], "--", color=colours[depth], lw=1)
            ax.plot(epochs, r["test_top1_error"], "-", color=colours[depth], lw=2, label=f"{label}-{depth}")
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="dashed: train, solid: test")
    axes[0].set_ylabel("top-1 error (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", help="digits (default) or cifar10:PATH")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs per model (default: {DIGITS_EPOCHS} on digits, the recipe's 164 on CIFAR)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("-o", "--out", type=Path, default=Path("degradation-out"))
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401  # checked first: the plot comes after the whole sweep
    except ImportError:
        parser.exit(2, 'error: the plot needs matplotlib: pip install "resnet-deploy[plot]"\n')

    from resnet_deploy.errors import ResnetDeployError

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    epochs = args.epochs or (DIGITS_EPOCHS if args.data == "digits" else None)
    try:
        results = train_all(args.data, epochs, args.seed, args.out, args.device)
    except ResnetDeployError as exc:
        parser.exit(exc.exit_code, f"error: {exc}\n")
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    summary = {
        "data": args.data,
        "seed": args.seed,
        "machine": machine,
        "models": results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (args.out / "degradation.json").write_text(json.dumps(summary, indent=1))
    epochs = results["plain20"]["epochs"]
    plot(
        results,
        args.out / "degradation.png",
        f"{args.data}: {epochs} epochs each, paper-cifar recipe, seed {args.seed}",
    )
    print(f"\n{'model':<10} {'train err %':>12} {'test err %':>11} {'seconds':>8}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['final_train_top1_error']:>12.2f} {r['final_test_top1_error']:>11.2f} {r['seconds']:>8.0f}"
        )
    p20, p56 = results["plain20"], results["plain56"]
    r20, r56 = results["resnet20"], results["resnet56"]
    print(
        f"degradation (plain-56 trains worse than plain-20): "
        f"{'yes' if p56['final_train_top1_error'] > p20['final_train_top1_error'] else 'no'}; "
        f"ResNet-56 better than ResNet-20 (test): "
        f"{'yes' if r56['final_test_top1_error'] <= r20['final_test_top1_error'] else 'no'}"
    )
    print(f"plot: {args.out / 'degradation.png'}  numbers: {args.out / 'degradation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
