"""``Runner``: the small interface an application embeds, over any artifact.

    from resnet_deploy.runtime import Runner

    with Runner.load("resnet20.int8.engine") as runner:   # or .onnx, or a checkpoint .pt
        logits = runner.infer(batch)                      # normalised (N, C, H, W) float32
        for top in runner.classify(images, topk=5):       # PIL images or uint8 HWC arrays
            print(top[0].label, top[0].score)

A model converted with its preprocessing inside (``convert --frame-size WxH``) takes raw uint8 frames:
``preprocess`` then passes frames of that size as they are, and TensorRT resizes them on the GPU.

Importing this needs numpy only; each backend imports its own runtime (TensorRT + cuda-python,
ONNX Runtime or OpenVINO, or torch) when an artifact of its kind is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import RunnerError
from resnet_deploy.runtime.base import Backend
from resnet_deploy.runtime.images import preprocess
from resnet_deploy.runtime.load import open_backend

if TYPE_CHECKING:
    from resnet_deploy.edge import stream as edge_stream
    from resnet_deploy.edge.stream import FrameStream
else:
    edge_stream = lazy_module("resnet_deploy.edge.stream")


@dataclass(frozen=True)
class Prediction:
    index: int  # class index
    label: str  # class name from the model's metadata (the index as text when it has none)
    score: float  # softmax probability


def check_topk(topk: Any) -> None:
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise RunnerError(f"topk must be a whole number of at least 1, got {topk!r}")


class Runner:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", **options: Any) -> Runner:
        """Open an engine (.engine/.plan), an ONNX (.onnx) or a checkpoint (.pt/.pth) by its suffix.

        ONNX files run on ``backend="onnxruntime"``, ``"openvino"`` or ``"auto"``: OpenVINO when it is
        installed and not slower here, timed at load (``describe()["chosen_because"]`` says what was measured).
        ``options`` go to the runtime: ``providers``/``threads``/``streams`` (ONNX Runtime),
        ``threads``/``streams``/``inference_precision`` (OpenVINO), ``device``/``threads`` (PyTorch),
        ``cuda_graph`` (TensorRT).
        """

        return cls(open_backend(path, backend=backend, **options))

    @property
    def metadata(self) -> ArtifactMetadata:
        return self.backend.metadata

    @property
    def class_names(self) -> tuple[str, ...]:
        names = self.metadata.class_names
        return tuple(names) if names else tuple(str(i) for i in range(self.metadata.config.num_classes))

    def preprocess(self, images: Sequence[Any] | Any, channel_order: str = "RGB") -> np.ndarray:
        """The batch ``infer`` takes for PIL images or uint8 HWC arrays in ``channel_order`` ("RGB", or "BGR"
        as OpenCV decodes): resized, cropped and normalised here, or, for a model with its preprocessing
        inside the graph, uint8 frames passed as they are."""
        return preprocess(images, self.metadata, channel_order)

    def infer(self, batch: Any) -> Any:
        """Logits for a normalised batch (numpy float32; torch CUDA tensors go zero-copy on TensorRT)."""
        return self.backend.infer(batch)

    def infer_many(self, batches: Sequence[Any]) -> list[Any]:
        """Logits of each batch, in order; loaded with ``streams=N``, N of them run at once (throughput)."""
        return self.backend.infer_many(batches)

    def classify(
        self, images: Sequence[Any] | Any, topk: int = 5, channel_order: str = "RGB"
    ) -> list[list[Prediction]]:
        """The ``topk`` classes of each image, best first, with softmax scores (arrays in ``channel_order``)."""
        check_topk(topk)
        return self.predictions(self.infer(self.preprocess(images, channel_order)), topk)

    def predictions(self, logits: Any, topk: int = 5) -> list[list[Prediction]]:
        """The ``topk`` classes of each row of ``logits`` (what ``infer`` returned), best first."""
        check_topk(topk)
        logits = np.asarray(logits, dtype=np.float64)
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():  # softmax of NaN or inf is NaN: no score is better than a wrong one
            row = int(np.argmin(finite))
            raise RunnerError(
                f"{self.backend.path.name} returned non-finite logits (NaN or inf) for image {row}: the model's "
                "weights are broken or its precision overflows (try the FP32 artifact); nothing was classified"
            )
        k = max(1, min(topk, logits.shape[1]))
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        names = self.class_names
        return [
            [Prediction(int(c), names[int(c)], float(probs[row, c])) for c in order[row]] for row in range(len(probs))
        ]

    def stream(self, source: Any, **options: Any) -> FrameStream:
        """The top-``topk`` classes of every frame of ``source`` as it comes (a camera, a video file, an
        RTSP/HTTP URL, a GStreamer pipeline, an image or a folder), in order: decoded on one thread, the
        next batch prepared while the current one infers; a live source keeps the newest frames.
        ``options``: ``topk``, ``batch``, ``every``, ``max_frames``, ``reconnects``, ``backoff``,
        ``capture_factory``, ``out`` (see :func:`resnet_deploy.edge.stream.stream`)."""
        return edge_stream.stream(self, source, **options)

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
