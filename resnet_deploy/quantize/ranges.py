"""Activation ranges of an FP32 ONNX over calibration images (entropy, percentile, minmax).

The FP32 model runs in ONNX Runtime on the CPU with the tensors to calibrate added as graph
outputs, a chunk of images at a time. Each chunk's values go to one collector, by method:

- entropy (both targets) and percentile (TensorRT target): histograms of |x| as TensorRT keeps them,
  and TensorRT's threshold search (``trt_entropy.py``). The CPU target's uint8 range is then
  [max(-amax, min x), amax]: [0, amax] for ReLU outputs. (ONNX Runtime's own entropy calibrator
  histograms signed values and spends half its levels on the empty negative side of ReLU outputs:
  +1.39 pp top-1 on the digits ResNet-20, against -0.28 pp with this.)
- percentile (CPU target): ONNX Runtime's ``HistogramCollector``, both tails.
- minmax: running extrema (ORT's MinMaxCalibrater without moving averages).

Nothing is kept between chunks but the histograms, so memory is one or two chunks' activations, where
ORT's calibrator classes keep all of them (ResNet-50: 8 GB). A chunk is 8 images, or fewer where their
requested activations would pass ``CHUNK_BYTES`` (ResNet-50 at 224: 40 MiB an image, so 4), and ONNX
Runtime's memory arena is off for the run (it keeps the largest chunk's buffers reserved): ResNet-50
calibrates on 128 images in under 1.6 GB. Only the tensors that get a Q/DQ pair are measured when the
caller names them. Symmetric mode (TensorRT) returns +-amax.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import is_available, lazy_import
from resnet_deploy.artifacts.onnx_io import load_onnx
from resnet_deploy.errors import MissingDependencyError, QuantizationError
from resnet_deploy.quantize.options import METHODS
from resnet_deploy.quantize.trt_entropy import LEVELS, AbsHistograms, entropy_amax, percentile_amax

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import calibrate as ort_calibrate
else:
    ort_calibrate = lazy_import("onnxruntime.quantization.calibrate", extra="onnxruntime")
    onnx = lazy_import("onnx")
    ort = lazy_import("onnxruntime", extra="onnxruntime")

TENSORRT_HISTOGRAM_BINS = 2048  # what TensorRT's EntropyCalibration2 uses
CHUNK = 8  # images per ORT run at most: bounds memory (all requested activations of a chunk are alive at once)
CHUNK_BYTES = 160 * 2**20  # ...and fewer where a chunk's requested activations would pass this

Extrema = tuple[dict[str, float], dict[str, float]]  # tensor -> lowest, tensor -> highest


def float_activations(model) -> list[str]:  # type: ignore[no-untyped-def]
    """Every float tensor a node produces or reads that is not a weight (ORT's default selection)."""
    inits = {i.name for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    names: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape"):
            continue
        for name in [*node.input, *node.output]:
            if name and name not in inits and name not in consts:
                names[name] = None
    return list(names)


def _augmented_session(model, tensors: Iterable[str]):  # type: ignore[no-untyped-def]
    """An ORT session over a copy of ``model`` with ``tensors`` (the float ones) added as outputs, and the
    images to run at a time (``CHUNK``, fewer where their activations would pass ``CHUNK_BYTES``)."""
    model = copy.deepcopy(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {vi.name: vi.type.tensor_type for vi in [*inferred.graph.value_info, *inferred.graph.input]}
    existing = {o.name for o in model.graph.output}
    wanted = [t for t in tensors if t not in infos or infos[t].elem_type == onnx.TensorProto.FLOAT]
    for name in wanted:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    per_image = sum(_image_bytes(infos[t]) for t in wanted if t in infos)
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # the arena keeps a chunk's worth of freed buffers reserved
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, wanted, max(1, min(CHUNK, CHUNK_BYTES // max(per_image, 1)))


def _image_bytes(tensor_type: Any) -> int:
    """Bytes of one image's float32 tensor of this type (a dimension not known counts as 1)."""
    count = 4
    for dim in list(tensor_type.shape.dim)[1:]:
        count *= dim.dim_value if dim.dim_value > 0 else 1
    return count


def _chunks(
    session: Any, names: list[str], batches: list[np.ndarray], input_name: str, chunk: int
) -> Iterator[dict[str, Any]]:
    """``names``' values, ``chunk`` images at a time (a fixed-batch model's batch, padded): tensor name -> array
    of the real images only, so padding never reaches a range."""
    outputs = [o.name for o in session.get_outputs()]
    index = {name: outputs.index(name) for name in names}
    for batch in batches:
        for feed, count in padded_feeds(session, batch, chunk):
            values = session.run(None, {input_name: feed})
            yield {n: values[i][:count] for n, i in index.items()}


def padded_feeds(session: Any, images: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, int]]:
    """``images`` in feeds the session takes: ``chunk`` at a time, or, for a model exported with a
    fixed batch, exactly that many with the last feed zero-padded; each with its count of real images."""
    first = session.get_inputs()[0].shape[0]
    step = first if isinstance(first, int) and first > 0 else chunk
    for start in range(0, len(images), step):
        part = images[start : start + step]
        if step == first and len(part) < step:
            part = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), part.dtype)])
        yield part, min(step, len(images) - start)


class MinMaxCollector:
    """Running extrema of each tensor; the base of the other collectors, which fill the same extrema.

    A context manager, so that a collector holding a thread lets it go whatever happens.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.low: dict[str, float] = {n: np.inf for n in names}
        self.high: dict[str, float] = {n: -np.inf for n in names}

    def __enter__(self) -> MinMaxCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def collect(self, chunk: dict[str, Any]) -> None:
        for n, v in chunk.items():
            self.low[n] = min(self.low[n], float(v.min()))
            self.high[n] = max(self.high[n], float(v.max()))

    def extrema(self) -> Extrema:
        return self.low, self.high


class AbsHistogramCollector(MinMaxCollector):
    """entropy, and percentile when symmetric: TensorRT-style |x| histograms (``trt_entropy.py``).

    The histograms of chunk k are counted on a second thread while ONNX Runtime runs chunk k + 1
    (both release the GIL), at the cost of one more chunk of activations in memory.
    """

    def __init__(self, names: list[str], model: Any, *, method: str, symmetric: bool, percentile: float) -> None:
        if not is_available("torch"):  # said before any activation is counted, not from a worker thread
            raise MissingDependencyError(
                f"the {method} method counts its histograms with torch, which is not installed: "
                'pip install "resnet-deploy[train]", or use `calibration.method=minmax`',
                field="calibration.method",
            )
        super().__init__(names)
        self.method, self.symmetric, self.percentile = method, symmetric, percentile
        relu_outputs = frozenset(o for n in model.graph.node if n.op_type == "Relu" for o in n.output)
        self.histograms = AbsHistograms(TENSORRT_HISTOGRAM_BINS, nonnegative=relu_outputs)
        self._pool = ThreadPoolExecutor(1)
        self._pending: Future[None] | None = None

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def collect(self, chunk: dict[str, Any]) -> None:
        self._wait()
        self._pending = self._pool.submit(self.histograms.collect, chunk)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()

    def extrema(self) -> Extrema:
        self._wait()
        for n in self.names:
            counts, edges = self.histograms.histogram(n)
            if self.method == "entropy":
                amax = entropy_amax(counts, edges)
            else:
                amax = percentile_amax(counts, edges, self.percentile)
            # symmetric: +-amax; asymmetric (uint8): the same amax, the negative side only as far as
            # values went (0 for ReLU outputs), so no uint8 level is spent on values that never occur
            self.low[n] = -amax if self.symmetric else max(-amax, self.histograms.minimum.get(n, 0.0))
            self.high[n] = amax
        return self.low, self.high


class SignedHistogramCollector(MinMaxCollector):
    """percentile when asymmetric (CPU target): ONNX Runtime's signed ``HistogramCollector``, both tails."""

    def __init__(self, names: list[str], *, percentile: float) -> None:

        super().__init__(names)
        self.collector = ort_calibrate.HistogramCollector(
            method="percentile",
            symmetric=False,
            num_bins=TENSORRT_HISTOGRAM_BINS,
            num_quantized_bins=LEVELS,
            percentile=percentile,
            scenario="same",
        )

    def collect(self, chunk: dict[str, Any]) -> None:
        self.collector.collect(chunk)

    def extrema(self) -> Extrema:
        for n, values in self.collector.compute_collection_result().items():
            self.low[n], self.high[n] = float(values[0]), float(values[1])
        return self.low, self.high


def make_collector(method: str, names: list[str], model: Any, *, symmetric: bool, percentile: float) -> MinMaxCollector:
    """The collector that measures ``names`` for ``method``."""
    if method == "entropy" or (method == "percentile" and symmetric):
        return AbsHistogramCollector(names, model, method=method, symmetric=symmetric, percentile=percentile)
    if method == "percentile":
        return SignedHistogramCollector(names, percentile=percentile)
    return MinMaxCollector(names)


def _int8_range(low: float, high: float, *, symmetric: bool) -> tuple[float, float]:
    """Measured extrema -> the range to quantize: it must contain 0 (int8 with a zero point); +-amax when symmetric."""
    lo, hi = min(low, 0.0), max(high, 0.0)
    if symmetric:
        amax = max(abs(lo), abs(hi))
        lo, hi = -amax, amax
    return lo, hi


def compute_ranges(
    onnx_model: Any,
    batches: list[np.ndarray],
    *,
    method: str = "entropy",
    symmetric: bool = True,
    percentile: float = 99.99,
    input_name: str = "input",
    tensors: Iterable[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Calibrate ``tensors`` (default: every float activation): tensor name -> (low, high).

    ``onnx_model``: a path, or a loaded ModelProto (left unchanged).
    """
    if method not in METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < percentile <= 100:
        raise QuantizationError(
            f"`calibration.percentile` must be in (0, 100], got {percentile}", field="calibration.percentile"
        )
    model = load_onnx(onnx_model) if isinstance(onnx_model, (str, Path)) else onnx_model
    session, names, chunk = _augmented_session(model, float_activations(model) if tensors is None else tensors)
    collector = make_collector(method, names, model, symmetric=symmetric, percentile=percentile)
    # ORT's collectors print a line per call
    with collector, contextlib.redirect_stdout(io.StringIO()):
        for values in _chunks(session, names, batches, input_name, chunk):
            collector.collect(values)
        low, high = collector.extrema()
    if not names or not batches:
        raise QuantizationError("nothing to calibrate: no images or no float activations")
    return {n: _int8_range(low[n], high[n], symmetric=symmetric) for n in names}
