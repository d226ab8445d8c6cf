"""What TensorRT-RTX fuses in our INT8 ResNets: the evidence behind docs/benchmarks.md's residual-add figures.

    .venv/bin/python scripts/rtx_int8_fusion.py [--depth 20] [--out scripts/results]

Builds one seeded random-weight ResNet ahead of time for SM89 (no GPU needed) with a VERBOSE logger
and DETAILED profiling, in four forms, and reads the engine's own layer list, which TensorRT-RTX
prints at the end of the build ("Layers:": each kernel, its input/output types and the ONNX nodes
it holds):

- fp32: the export;
- int8: the Q/DQ graph `calibrate --target tensorrt` writes (the shortcut input of each residual
  Add quantized, per-channel weights);
- int8-float-shortcut: the same, with every residual Add reading its shortcut in float;
- int8-per-tensor-weights: the same as int8, with one scale per weight tensor.

For each: kernels, convolutions reading INT8, adds fused into a convolution, adds in kernels of
their own, and the activation bytes the kernels read and write at batch 8. Writes
OUT/rtx-int8-fusion-resnet<depth>.{txt,json}. About a minute for ResNet-20 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
BATCH = 8  # the profile's opt batch: dynamic dimensions are counted at this size
BYTES = {"Float": 4, "Half": 2, "Int8": 1, "Int32": 4, "Int64": 8, "Bool": 1}


def build_log(onnx_path: Path) -> list[str]:
    """Every message TensorRT-RTX logs while building ``onnx_path`` for SM89 (batch 1:8:32)."""
    import tensorrt_rtx as trt

    lines: list[str] = []

    class Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            lines.extend(msg.splitlines())

    logger = Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        sys.exit(f"{onnx_path}: {parser.get_error(0).desc()}")
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM89, 0)
    tensor = network.get_input(0)
    shape = [int(d) for d in tensor.shape[1:]]
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, trt.Dims([1, *shape]), trt.Dims([BATCH, *shape]), trt.Dims([32, *shape]))
    config.add_optimization_profile(profile)
    if builder.build_serialized_network(network, config) is None:
        sys.exit(f"{onnx_path}: the build failed")
    return lines


def _nbytes(text: str) -> int:
    total = 0
    for dims, dtype in re.findall(r"Dimensions: \[([^\]]*)\][^}]*?Datatype: (\w+)", text):
        count = 1
        for d in (int(x) for x in dims.split(",") if x.strip()):
            count *= BATCH if d < 0 else d
        total += count * BYTES.get(dtype, 4)
    return total


def engine_layers(log: list[str]) -> list[dict[str, Any]]:
    """The "Layers:" list printed at the end of a DETAILED build: one entry per kernel."""
    start = next(i for i, line in enumerate(log) if line.startswith("Layers:")) + 1
    layers = []
    for line in log[start:]:
        if not line.startswith("Name: "):
            break
        inputs = line.split("Inputs: [", 1)[1].split("], Constants:", 1)[0] if "Inputs: [" in line else ""
        outputs = line.split("Outputs: [", 1)[1].split("], TacticName", 1)[0] if "Outputs: [" in line else ""
        layers.append(
            {
                "type": re.search(r"LayerType: ([^,]+),", line).group(1),  # type: ignore[union-attr]
                "in": re.findall(r"Datatype: (\w+)", inputs),
                "onnx": re.findall(r"\[ONNX Layer: ([^\]]+)\]", line),
                "bytes": _nbytes(inputs) + _nbytes(outputs),
            }
        )
    return layers


def summarise(layers: list[dict[str, Any]]) -> dict[str, Any]:
    convs = [layer for layer in layers if layer["type"] == "correlation"]

    def adds(layer: dict[str, Any]) -> int:
        return sum(node.startswith("node_add") for node in layer["onnx"])

    return {
        "kernels": sum(layer["type"] not in ("shape_call", "signal", "wait") for layer in layers),
        "convs": len(convs),
        "convs_reading_int8": sum(bool(c["in"]) and c["in"][0] == "Int8" for c in convs),
        "adds_fused_into_convs": sum(adds(c) for c in convs),
        "add_kernels": sum(1 for layer in layers if layer["type"] != "correlation" and adds(layer)),
        "activation_mb_at_batch_8": round(sum(layer["bytes"] for layer in layers) / 1e6, 2),
    }


def variants(depth: int, directory: Path) -> dict[str, Path]:
    """The four ONNX forms of one seeded random-weight ResNet."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model
    from resnet_deploy.quantize.calibrate import calibrate_onnx

    torch.manual_seed(0)
    source = open_model(depth=depth)
    fp32 = directory / "fp32.onnx"
    export_onnx(source.model, fp32, source.metadata, verify=False)
    int8 = calibrate_onnx(fp32, directory / "int8.onnx", target="tensorrt", method="minmax", count=64, cache_dir=None)

    model = onnx.load(int8.path)  # each residual Add reads its shortcut in float (the convs keep their Q/DQ)
    for node in model.graph.node:
        if node.op_type == "Add":
            for i, name in enumerate(node.input):
                if name.endswith("_dq"):  # only shortcut inputs carry a Q/DQ pair: conv outputs stay float
                    node.input[i] = name[: -len("_dq")]
    float_shortcut = directory / "int8-float-shortcut.onnx"
    onnx.save(model, float_shortcut)

    float_weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(fp32).graph.initializer}
    model = onnx.load(int8.path)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0].endswith("_int8"):
            weight = float_weights[node.input[0][: -len("_int8")]].astype(np.float32)
            scale = np.float32(max(float(np.abs(weight).max()), 1e-8) / 127)
            quantized = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
            inits[node.input[0]].CopyFrom(numpy_helper.from_array(quantized, node.input[0]))
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.array(scale, np.float32), node.input[1]))
            inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.array(0, np.int8), node.input[2]))
            del node.attribute[:]  # per-tensor: no axis
    per_tensor = directory / "int8-per-tensor-weights.onnx"
    onnx.save(model, per_tensor)
    return {
        "fp32": fp32,
        "int8": int8.path,
        "int8-float-shortcut": float_shortcut,
        "int8-per-tensor-weights": per_tensor,
    }


def measure(depth: int = 20) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        return {name: summarise(engine_layers(build_log(path))) for name, path in variants(depth, Path(tmp)).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    args = parser.parse_args()
    import tensorrt_rtx

    results = measure(args.depth)
    header = (
        f"ResNet-{args.depth}, random weights (seed 0), TensorRT-RTX {tensorrt_rtx.__version__} "
        "ahead of time for SM89, batch 1:8:32"
    )
    columns = list(next(iter(results.values())))
    lines = [header, "", "| form | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(str(row[c]) for c in columns) + " |" for name, row in results.items()]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rtx-int8-fusion-resnet{args.depth}.txt").write_text(text)
    payload = {"what": header, "results": results}
    (args.out / f"rtx-int8-fusion-resnet{args.depth}.json").write_text(json.dumps(payload, indent=1) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
