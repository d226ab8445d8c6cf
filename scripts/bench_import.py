"""Import of an outside ResNet ONNX against `export` of the same model, side by side in one process.

    python scripts/bench_import.py [--depth 50] [--size 224] [--rounds 3] [--out scripts/results]

What is timed, each round in turn (the order alternates between rounds):

- export: ``ExportJob`` of a ``depth`` model with random weights: torch.onnx export, verification in
  ONNX Runtime against PyTorch, the file written;
- import: ``ImportJob`` of torchvision's ResNet of that depth exported by a plain ``torch.onnx.export``
  (made once, before the timing): load, recognise, normalise, verification in ONNX Runtime against the
  original graph, the file written.

Reported: each one's median wall time over the rounds and the ratio import / export, with the machine
(CPU, instruction sets, cores). Writes OUT/import-vs-export-resnet<depth>.json and .txt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not

DEPTHS = (18, 34, 50, 101, 152)


def machine() -> dict[str, Any]:
    """The machine, as every benchmark of the project records it (torch is imported by then)."""
    import torch  # noqa: F401  (recorded by describe_machine once imported)

    from resnet_deploy.evaluate.bench import describe_machine

    return describe_machine(None)


def outside_onnx(depth: int, size: int, path: Path) -> Path:
    """torchvision's ResNet of ``depth`` through a plain torch.onnx.export, as a user would make it."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, f"resnet{depth}")().eval()
    with warnings.catch_warnings():  # the TorchScript exporter, deliberately: what most users' files come from
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, torch.randn(1, 3, size, size), path, dynamo=False)
    return path


def time_once(kind: str, depth: int, size: int, source: Path, work: Path) -> float:
    from resnet_deploy.pipeline import ExportJob, ImportJob, plan, run

    out = work / f"{kind}.onnx"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    if kind == "export":
        run(plan(ExportJob.of(depth=depth, input_size=size, output=out)))
    else:
        run(plan(ImportJob(source, out)))
    return time.perf_counter() - start


def measure(depth: int, size: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = outside_onnx(depth, size, work / "outside.onnx")
        times: dict[str, list[float]] = {"export": [], "import": []}
        for i in range(rounds):
            for kind in ("export", "import") if i % 2 == 0 else ("import", "export"):
                times[kind].append(time_once(kind, depth, size, source, work))
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    return {
        "model": f"resnet{depth}",
        "input_size": size,
        "rounds": rounds,
        "seconds": times,
        "median_seconds": medians,
        "ratio_import_over_export": medians["import"] / medians["export"],
        "machine": machine(),
    }


def render(result: dict[str, Any]) -> str:
    from resnet_deploy.evaluate.bench import machine_line

    m = result["machine"]
    medians = result["median_seconds"]
    return "\n".join(
        [
            f"import of a torch.onnx {result['model']} ({result['input_size']}x{result['input_size']}) against "
            f"`export --depth {result['model'][6:]}`, {result['rounds']} alternating rounds in one process",
            f"Machine: {machine_line(m)}; torch {m.get('torch')}, Python {m['python']}",
            f"export (torch.onnx + verify vs PyTorch + write): median {medians['export']:.2f} s",
            f"import (load + recognise + normalise + verify vs the original + write): median {medians['import']:.2f} s",
            f"import / export: {result['ratio_import_over_export']:.2f}x",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, choices=DEPTHS, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    args = parser.parse_args(argv)
    from resnet_deploy._io import write_report

    result = measure(args.depth, args.size, args.rounds)
    text = render(result)
    written = write_report(args.out / f"import-vs-export-resnet{args.depth}", result, text)
    print(text)
    print(f"wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
