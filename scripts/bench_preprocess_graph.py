"""What preprocessing inside the graph costs and saves, side by side in one process.

    python scripts/bench_preprocess_graph.py [--depth 50] [--frame 1280x720] [--batch 4] [--rounds 5]
                                             [--out scripts/results]

One model (random weights, exported here) in two forms: the plain FP32 ONNX, and the same model converted
with ``--frame-size`` (BGR frames, as OpenCV decodes them). On the same random frames, each round in turn:

- host preprocessing, CPU seconds per frame (``time.process_time``, all threads): the runner's
  ``preprocess`` of BGR frames for each form: Pillow's resize, crop and normalisation for the plain
  model; for the frames model, a check and a copy;
- inference, wall milliseconds per frame on ONNX Runtime (CPU): ``infer`` of each form's batch; the
  difference is what the in-graph preprocessing costs when the runtime runs on the CPU (on a GPU,
  TensorRT runs it there);
- the in-graph preprocessing alone (the graph cut after it), wall milliseconds per frame.

Reported: medians over the rounds, the ratios, and the machine. Writes
OUT/preprocess-graph-resnet<depth>-<frame>.json and .txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not


def machine() -> dict[str, Any]:
    import torch  # noqa: F401  (recorded by describe_machine once imported)

    from resnet_deploy.evaluate.bench import describe_machine

    return describe_machine(None)


def make_models(depth: int, width: int, height: int, work: Path) -> tuple[Path, Path]:
    import torch

    from resnet_deploy.artifacts.frame_input import FrameInput
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.convert.preprocess_graph import fuse_preprocessing
    from resnet_deploy.models.source import open_model

    torch.manual_seed(0)
    source = open_model(depth=depth)
    plain = export_onnx(source.model, work / "plain.onnx", source.metadata, verify=False).path
    fused = fuse_preprocessing(plain, work / "frames.onnx", FrameInput(width, height, "BGR")).path
    return plain, fused


def measure(plain: Path, fused: Path, frames: np.ndarray, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    from resnet_deploy.convert.preprocess_graph import preprocessing_only
    from resnet_deploy.runtime import Runner

    count = len(frames)
    prefix = ort.InferenceSession(preprocessing_only(fused), providers=["CPUExecutionProvider"])
    samples: dict[str, list[float]] = {
        k: [] for k in ("host_plain", "host_fused", "infer_plain", "infer_fused", "graph")
    }
    with Runner.load(plain, backend="onnxruntime") as a, Runner.load(fused, backend="onnxruntime") as b:
        for runner in (a, b):  # warm up
            runner.infer(runner.preprocess(list(frames), channel_order="BGR"))
        prefix.run(None, {"input": frames})
        for _ in range(rounds):
            for key, runner in (("plain", a), ("fused", b)):
                start = time.process_time()
                batch = runner.preprocess(list(frames), channel_order="BGR")
                samples[f"host_{key}"].append((time.process_time() - start) / count)
                start = time.perf_counter()
                runner.infer(batch)
                samples[f"infer_{key}"].append((time.perf_counter() - start) / count)
            start = time.perf_counter()
            prefix.run(None, {"input": frames})
            samples["graph"].append((time.perf_counter() - start) / count)
    return {key: 1000 * statistics.median(values) for key, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--frame", default="1280x720")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    args = parser.parse_args()
    width, height = (int(v) for v in args.frame.lower().split("x"))
    load_average = os.getloadavg()[0]  # other work on the machine slows both forms alike, not their ratio
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, height, width, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as work:
        plain, fused = make_models(args.depth, width, height, Path(work))
        ms = measure(plain, fused, frames, args.rounds)
    result = {
        "model": f"resnet{args.depth}",
        "frame": args.frame,
        "batch": args.batch,
        "rounds": args.rounds,
        "ms_per_frame": ms,
        "host_cpu_ratio_fused_over_pillow": ms["host_fused"] / ms["host_plain"],
        "infer_ratio_fused_over_plain": ms["infer_fused"] / ms["infer_plain"],
        "machine": machine(),
        "load_average": load_average,
    }
    from resnet_deploy._io import write_report
    from resnet_deploy.evaluate.bench import machine_line

    m = result["machine"]
    text = "\n".join(
        [
            f"ResNet-{args.depth}, {args.frame} BGR frames, batch {args.batch}, median of {args.rounds} rounds, "
            "ONNX Runtime on the CPU",
            f"Machine: {machine_line(m)}; Python {m['python']}; load average at start {result['load_average']:.2f}",
            f"host preprocessing, CPU ms per frame: Pillow path {ms['host_plain']:.2f}, frames model "
            f"{ms['host_fused']:.2f} ({result['host_cpu_ratio_fused_over_pillow']:.3f}x)",
            f"inference, wall ms per frame: plain {ms['infer_plain']:.1f}, frames model {ms['infer_fused']:.1f} "
            f"({result['infer_ratio_fused_over_plain']:.2f}x: the preprocessing runs inside the runtime)",
            f"the in-graph preprocessing alone: {ms['graph']:.1f} ms per frame",
        ]
    )
    written = write_report(args.out / f"preprocess-graph-resnet{args.depth}-{args.frame}", result, text)
    print(text)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
