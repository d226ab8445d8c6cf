"""PyTorch -> one self-contained, verified ONNX file with resnet-deploy metadata.

Opset 18 and newer go through the torch.export-based exporter (PyTorch's maintained path; it folds
BatchNorm into the convolutions). Opsets 11-17, which TensorRT 8.x on JetPack 5 needs, go through
the TorchScript exporter: the dynamo exporter cannot lower to them (it has no Pad adapter below 18).
The file is verified in ONNX Runtime before it is written, so a failing export leaves nothing.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from resnet_deploy._io import check_writable, write_bytes_atomic
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.onnx_io import write_onnx_metadata
from resnet_deploy.artifacts.onnx_metadata import INPUT_NAME, OUTPUT_NAME, ArtifactMetadata
from resnet_deploy.convert.verify import DEFAULT_RTOL, VerifyReport, verify_onnx
from resnet_deploy.errors import ExportError, VerificationError

if TYPE_CHECKING:
    import onnx
    import onnxslim
else:
    onnx = lazy_import("onnx")
    onnxslim = lazy_import("onnxslim", extra="simplify")

DEFAULT_OPSET = 18
MIN_OPSET = 11
MIN_DYNAMO_OPSET = 18
# Verification batch sizes: 1 and a non-power-of-two, so a batch dimension baked in by mistake shows.
VERIFY_BATCHES = (1, 5)


@dataclass
class ExportResult:
    path: Path
    opset: int
    exporter: str  # "dynamo" or "torchscript"
    batch: str | int  # "dynamic" or the static batch size
    size_bytes: int
    simplified: bool
    export_seconds: float
    verification: VerifyReport | None
    metadata: ArtifactMetadata

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "architecture": self.metadata.config.name,
            "opset": self.opset,
            "exporter": self.exporter,
            "batch": self.batch,
            "input": {"name": INPUT_NAME, "shape": self.input_shape},
            "output": {"name": OUTPUT_NAME, "shape": [self.input_shape[0], self.metadata.config.num_classes]},
            "size_bytes": self.size_bytes,
            "simplified": self.simplified,
            "export_seconds": round(self.export_seconds, 3),
            "verification": self.verification.to_dict() if self.verification else None,
            "metadata": self.metadata.to_props(),
        }

    @property
    def input_shape(self) -> list[Any]:
        cfg = self.metadata.config
        return [self.batch if isinstance(self.batch, int) else "batch", cfg.in_chans, cfg.input_size, cfg.input_size]


def _to_proto(model: torch.nn.Module, example: torch.Tensor, opset: int, dynamic: bool) -> Any:

    # Both exporters print progress and deprecation chatter; keep stdout clean for --json.
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if opset >= MIN_DYNAMO_OPSET:
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                external_data=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},) if dynamic else None,
                verbose=False,
            )
            assert program is not None  # dynamo=True always returns the program
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None,
            do_constant_folding=True,
        )
        return onnx.load_from_string(buffer.getvalue())


def _simplify(proto: Any) -> Any:

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        return onnxslim.slim(proto)


def export_onnx(
    model: torch.nn.Module,
    output: str | Path,
    metadata: ArtifactMetadata,
    *,
    opset: int | None = None,
    static_batch: int | None = None,
    simplify: bool = False,
    verify: bool = True,
    rtol: float = DEFAULT_RTOL,
) -> ExportResult:
    """Export ``model`` to ``output``; with ``verify`` (default) compare against PyTorch first.

    Raises:
        ExportError: the exporter failed or the ONNX does not pass ``onnx.checker``.
        VerificationError: ONNX Runtime's outputs differ beyond ``rtol`` x the logit scale and beyond
            FP32's own noise (see :func:`resnet_deploy.convert.verify.verify_onnx`); nothing is written.
    """

    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < MIN_OPSET or opset > onnx.defs.onnx_opset_version():
        raise ExportError(
            f"`opset={opset}` is not supported; use {MIN_OPSET}..{onnx.defs.onnx_opset_version()} "
            f"({DEFAULT_OPSET} is the default; 17 or lower for TensorRT 8.6 / JetPack 6.0 and older)",
            field="opset",
        )
    if static_batch is not None and static_batch < 1:
        raise ExportError(f"`static_batch` must be at least 1, got {static_batch}", field="static_batch")
    output = check_writable(output)
    cfg = metadata.config
    example_batch = static_batch or 2  # 2, not 1: exporters specialise a size-1 dimension
    example = torch.randn(example_batch, cfg.in_chans, cfg.input_size, cfg.input_size)
    model = model.eval().float().cpu()

    start = time.perf_counter()
    try:
        proto = _to_proto(model, example, opset, dynamic=static_batch is None)
    except Exception as exc:
        raise ExportError(f"torch.onnx could not export {cfg.name} at opset {opset}: {exc}") from exc
    if simplify:
        proto = _simplify(proto)
    write_onnx_metadata(proto, metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported ONNX fails onnx.checker: {exc}") from exc
    data = proto.SerializeToString()
    export_seconds = time.perf_counter() - start

    report = None
    if verify:
        batches = (static_batch,) if static_batch else VERIFY_BATCHES
        report = verify_onnx(model, data, (cfg.in_chans, cfg.input_size, cfg.input_size), batches, rtol=rtol)
        if not report.passed:
            worst = max(report.checks, key=lambda c: c.max_abs_error / c.allowed)
            raise VerificationError(
                f"ONNX Runtime output differs from PyTorch: max |error| {worst.max_abs_error:.3g} at batch "
                f"{worst.batch} exceeds {worst.describe_allowed()} (top-1 agreement {worst.top1_agreement:.0%}); "
                f"nothing written. Try another `opset`, or report a bug with this command line",
                field="opset",
            )
    write_bytes_atomic(output, data)
    return ExportResult(
        path=output,
        opset=opset,
        exporter="dynamo" if opset >= MIN_DYNAMO_OPSET else "torchscript",
        batch=static_batch if static_batch else "dynamic",
        size_bytes=len(data),
        simplified=simplify,
        export_seconds=export_seconds,
        verification=report,
        metadata=metadata,
    )
