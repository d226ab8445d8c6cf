"""ONNX Runtime: FP32, FP16 and INT8 Q/DQ ONNX files, on TensorRT, CUDA or the CPU, as ORT has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.metadata import ArtifactMetadata
from resnet_deploy.runtime.base import Backend


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    preferred = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    return [p for p in preferred if p in available]


class OnnxRuntimeBackend(Backend):
    kind = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ResnetDeployError(f"ONNX file {path} not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or default_providers())
        except Exception as exc:  # ORT raises its own exception types for foreign or broken files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ResnetDeployError(f"ONNX Runtime cannot load {path} ({first})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        super().__init__(path, ArtifactMetadata.from_props(props, source=str(path)), props.get("precision", "fp32"))
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self.input_name: batch})
        return np.asarray(logits, dtype=np.float32)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "providers": self.providers}
