"""FP16 ONNX: float16 weights and activations, float32 inputs and outputs.

Strongly typed TensorRT (10.x and 11, TensorRT-RTX) takes precision from the graph, so an FP16
engine needs an FP16 ONNX; the float32 I/O keeps callers' buffers unchanged. The conversion is
onnxconverter-common's ``convert_float_to_float16`` (its default block list keeps the ops that are
unsafe in half precision in float32; ``keep_fp32`` adds more). Weights smaller than fp16 can hold
are clamped by the converter. The result is verified against the FP32 model in ONNX Runtime.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._io import atomic_output, check_writable, sha256_file
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.lineage import GraphLineage
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, load_onnx, onnx_props, write_lineage
from resnet_deploy.errors import QuantizationError, VerificationError


def preprocessing_nodes(model: Any) -> list[str]:
    """The nodes of in-graph preprocessing (``convert --preprocess-in-graph``): kept in float32, where they
    compute Pillow's integers exactly."""
    from resnet_deploy.convert.preprocess_graph import PREFIX

    return [node.name for node in model.graph.node if node.name.startswith(PREFIX)]


if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    from onnxconverter_common import float16
else:
    onnx = lazy_import("onnx")
    ort = lazy_import("onnxruntime", extra="onnxruntime")
    float16 = lazy_import("onnxconverter_common.float16", extra="onnxruntime")

DEFAULT_RTOL = 1e-2  # of the logit scale: fp16 keeps ~3 significant digits


@dataclass
class Fp16Result:
    path: Path
    max_abs_error: float
    allowed: float
    top1_agreement: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def convert_to_fp16(
    onnx_path: str | Path,
    output: str | Path,
    *,
    keep_fp32: tuple[str, ...] = (),
    verify: bool = True,
    rtol: float = DEFAULT_RTOL,
) -> Fp16Result:

    start = time.perf_counter()
    output = check_writable(output)
    model = load_onnx(onnx_path)
    props = onnx_props(model)
    check_graph_matches_metadata(model, source=str(onnx_path))  # our classifier, metadata sound: else one line
    lineage = GraphLineage.from_props(props, str(onnx_path))
    if lineage.precision != "fp32" or any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise QuantizationError(
            f"{onnx_path} is not an FP32 model (precision {lineage.precision}); convert the FP32 export", field="onnx"
        )
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise QuantizationError(f"{onnx_path} holds FP16 weights already; convert its FP32 form", field="onnx")
    op_types = sorted({n.op_type for n in model.graph.node})
    unknown = [op for op in keep_fp32 if op not in op_types]
    if unknown:
        raise QuantizationError(
            f"`keep_fp32={', '.join(unknown)}`: {onnx_path} has no such op; its op types are {', '.join(op_types)}",
            field="keep_fp32",
        )
    block = list(float16.DEFAULT_OP_BLOCK_LIST) + list(keep_fp32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will be truncated to 1e-07": tiny weights clamp
        half = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=block, node_block_list=preprocessing_nodes(model)
        )
    write_lineage(half, GraphLineage(precision="fp16", source_onnx_sha256=sha256_file(onnx_path)), props)
    onnx.checker.check_model(half, full_check=True)

    max_err, allowed, agreement = 0.0, 0.0, 1.0
    with atomic_output(output) as tmp:
        onnx.save(half, str(tmp))
        if verify:
            options = ort.SessionOptions()
            ref = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            new = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
            shape = [d if isinstance(d, int) else 1 for d in ref.get_inputs()[0].shape]
            rng = np.random.default_rng(0)
            agree = total = 0
            for batch in (1, 5):
                if not isinstance(ref.get_inputs()[0].shape[0], int) or batch == shape[0]:
                    x = (
                        rng.integers(0, 256, [batch, *shape[1:]], dtype=np.uint8)  # frames: preprocessing inside
                        if ref.get_inputs()[0].type == "tensor(uint8)"
                        else rng.standard_normal([batch, *shape[1:]]).astype(np.float32)
                    )
                    (a,) = ref.run(None, {ref.get_inputs()[0].name: x})
                    (b,) = new.run(None, {new.get_inputs()[0].name: x})
                    max_err = max(max_err, float(np.abs(a - b).max()))
                    allowed = max(allowed, rtol * max(1.0, float(np.abs(a).max())))
                    agree += int((a.argmax(1) == b.argmax(1)).sum())
                    total += batch
            agreement = agree / max(total, 1)
            if max_err > allowed:
                raise VerificationError(
                    f"FP16 outputs differ from FP32 by {max_err:.3g} (allowed {allowed:.3g}); "
                    "keep more ops in float32 with `keep_fp32=OP`",
                    field="keep_fp32",
                )
    return Fp16Result(output, max_err, allowed, agreement, time.perf_counter() - start)
