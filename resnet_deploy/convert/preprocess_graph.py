"""A model's own preprocessing, prepended to its graph: raw uint8 NHWC frames in, logits out.

The nodes compute exactly what :func:`resnet_deploy.artifacts.preprocess.fit` and the runner's
normalisation compute on the CPU, for one declared frame size:

1. uint8 frames -> int32, channels to RGB (BGR frames are reordered), NHWC -> NCHW;
2. Pillow's two-pass resize (antialiased: the filter widens with the downscale factor) with the crop
   folded in, each pass a Gather of the few input pixels an output pixel reads, times Pillow's own
   fixed-point weights, summed, rounded and clipped in int32 (:mod:`resnet_deploy.convert.resize_taps`):
   the same integers Pillow computes, so the same pixels;
3. float32: / 255, - mean, / std, in the order the runner does it.

A frame that is already the model's size skips step 2, as ``fit`` does. The model's input tensor is then
bit-identical to the runner's; the conversion checks that on random and extreme frames in ONNX Runtime
and refuses to write otherwise. No Q/DQ is placed in the preprocessing: INT8 calibration measures the
network alone. Each resize pass costs a Gather, a multiply and a sum over its taps (about 7 per output
pixel for 720p to 224), a few percent of a ResNet-50's work.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._io import atomic_output, check_writable
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.frame_input import FrameInput
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, load_onnx, write_onnx_metadata
from resnet_deploy.artifacts.onnx_metadata import INPUT_NAME, ArtifactMetadata
from resnet_deploy.artifacts.preprocess import Preprocess, model_input
from resnet_deploy.convert.resize_taps import AxisTaps, axis_taps, vertical_first
from resnet_deploy.errors import ArtifactError, VerificationError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
else:
    onnx = lazy_import("onnx")
    helper = lazy_import("onnx.helper")
    numpy_helper = lazy_import("onnx.numpy_helper")
    ort = lazy_import("onnxruntime", extra="onnxruntime")

PREFIX = "preprocess/"  # every node and constant the preprocessing adds is named under it
PREPROCESSED = PREFIX + "normalised"  # the network's input tensor, once the frames are preprocessed


@dataclass(frozen=True)
class AxisPlan:
    """One axis of the frame -> model-input resize (with the crop folded in); None taps: unchanged."""

    taps: AxisTaps | None
    span: tuple[int, int]  # the input pixels read: sliced first, so a pass touches nothing else


@dataclass(frozen=True)
class ResizePlan:
    horizontal: AxisPlan
    vertical: AxisPlan
    vertical_first: bool = False  # the order Pillow runs the passes in (each rounds to 8 bits)


def resize_plan(frame: FrameInput, size: int, policy: Preprocess) -> ResizePlan:
    """The passes ``fit`` makes for a ``frame``-sized image and a ``size`` input, the crop folded in."""
    w, h = frame.width, frame.height
    if (w, h) == (size, size):
        return ResizePlan(AxisPlan(None, (0, w)), AxisPlan(None, (0, h)))
    if policy.resize == "stretch":
        new_w, new_h, keep_x, keep_y = size, size, slice(0, size), slice(0, size)
    else:
        short = round(size / policy.crop_pct)
        scale = short / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        left, top = (new_w - size) // 2, (new_h - size) // 2
        keep_x, keep_y = slice(left, left + size), slice(top, top + size)
    first_vertical = policy.interpolation != "nearest" and vertical_first(w, h, new_w, new_h)
    return ResizePlan(_axis(w, new_w, keep_x, policy), _axis(h, new_h, keep_y, policy), first_vertical)


def _shifted(plan: AxisPlan, start: int) -> AxisPlan:
    """``plan`` on a tensor already sliced to start at ``start`` along its axis."""
    taps = None if plan.taps is None else AxisTaps(plan.taps.index - start, plan.taps.weights)
    return AxisPlan(taps, (plan.span[0] - start, plan.span[1] - start))


def _axis(in_size: int, out_size: int, keep: slice, policy: Preprocess) -> AxisPlan:
    if in_size == out_size:  # Pillow skips the pass; only the crop remains
        return AxisPlan(None, (keep.start, keep.stop))
    taps = axis_taps(in_size, out_size, policy.interpolation, keep)
    return AxisPlan(taps, taps.span())


@dataclass
class FuseResult:
    path: Path
    frame: FrameInput
    checked_frames: int
    max_abs_logit_error: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "frame_input": self.frame.describe(),
            "checked_frames": self.checked_frames,
            "max_abs_logit_error": self.max_abs_logit_error,
            "seconds": self.seconds,
        }


def fuse_preprocessing(
    onnx_path: str | Path, output: str | Path, frame: FrameInput, *, verify: bool = True
) -> FuseResult:
    """Write ``onnx_path`` with its preprocessing inside at ``output``: it takes ``frame``-sized uint8 frames."""
    start = time.perf_counter()
    output = check_writable(output)
    model = load_onnx(onnx_path)
    metadata = check_graph_matches_metadata(model, source=str(onnx_path))
    _check_fusable(metadata, str(onnx_path))
    fused_metadata = dataclasses.replace(metadata, frame_input=frame)
    prepend_preprocessing(model, metadata, frame)
    write_onnx_metadata(model, fused_metadata)
    onnx.checker.check_model(model, full_check=True)
    checked, max_err = 0, 0.0
    with atomic_output(output) as tmp:
        onnx.save(model, str(tmp))
        if verify:
            checked, max_err = verify_fused(onnx_path, tmp, fused_metadata)
    return FuseResult(output, frame, checked, max_err, time.perf_counter() - start)


def _check_fusable(metadata: ArtifactMetadata, source: str) -> None:
    if metadata.frame_input is not None:
        raise ArtifactError(
            f"{source} has its preprocessing inside already (it takes {metadata.frame_input.describe()} frames); "
            "convert the model it was made from to change the frame size",
            field="onnx",
        )
    if metadata.config.in_chans != 3:
        raise ArtifactError(
            f"{source} takes {metadata.config.in_chans}-channel input; preprocessing goes inside RGB models only",
            field="onnx",
        )


def prepend_preprocessing(model: Any, metadata: ArtifactMetadata, frame: FrameInput) -> None:
    """Rewire ``model`` (an onnx ModelProto, changed in place): its input becomes the raw frames."""
    graph = model.graph
    (old_input,) = [v for v in graph.input if v.name == INPUT_NAME]
    batch_dim = old_input.type.tensor_type.shape.dim[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == INPUT_NAME:
                node.input[i] = PREPROCESSED
    builder = _Builder()
    cfg = metadata.config
    plan = resize_plan(frame, cfg.input_size, metadata.eval_preprocess)
    x = INPUT_NAME  # float32 frames: the pixel values already
    if frame.dtype == "uint8":
        x = builder.node("Cast", [INPUT_NAME], to=onnx.TensorProto.FLOAT)  # first: TensorRT slices no uint8
    x = builder.node("Transpose", [x], perm=[0, 3, 1, 2])  # N, 3, H, W: the taps gathered along the last axes
    passes = [(plan.horizontal, 3, frame.width), (plan.vertical, 2, frame.height)]
    (first, first_axis, first_full), (second, second_axis, second_full) = (
        passes[::-1] if plan.vertical_first else passes
    )
    x = builder.slice(x, axis=second_axis, span=second.span, full=second_full)  # only what the second pass reads
    x = builder.resize_pass(x, first, axis=first_axis, full=first_full)
    x = builder.resize_pass(x, _shifted(second, second.span[0]), axis=second_axis, full=second.span[1] - second.span[0])
    if frame.channel_order == "BGR":  # the resize treats channels alike: reorder the small tensor
        x = builder.node("Gather", [x, builder.const("rgb_from_bgr", np.array([2, 1, 0], np.int64))], axis=1)
    x = builder.node("Div", [x, builder.const("scale", np.array(255.0, np.float32))])
    mean = np.asarray(metadata.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(metadata.std, np.float32).reshape(1, -1, 1, 1)
    x = builder.node("Sub", [x, builder.const("mean", mean)])
    builder.node("Div", [x, builder.const("std", std)], output=PREPROCESSED)
    elem = onnx.TensorProto.UINT8 if frame.dtype == "uint8" else onnx.TensorProto.FLOAT
    frames = helper.make_tensor_value_info(INPUT_NAME, elem, [None, *frame.shape])
    frames.type.tensor_type.shape.dim[0].CopyFrom(batch_dim)
    graph.input.remove(old_input)
    graph.input.insert(0, frames)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*builder.nodes, *nodes])
    graph.initializer.extend(builder.constants)


class _Builder:
    """Nodes and constants of the preprocessing, named under :data:`PREFIX`."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.constants: list[Any] = []

    def const(self, name: str, value: np.ndarray) -> str:
        full = f"{PREFIX}{name}_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(value, full))
        return full

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        name = f"{PREFIX}{op.lower()}_{len(self.nodes)}"
        out = output or name
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def slice(self, x: str, *, axis: int, span: tuple[int, int], full: int) -> str:
        if span == (0, full):
            return x
        starts = self.const("starts", np.array([span[0]], np.int64))
        ends = self.const("ends", np.array([span[1]], np.int64))
        return self.node("Slice", [x, starts, ends, self.const("axes", np.array([axis], np.int64))])

    def resize_pass(self, x: str, plan: AxisPlan, *, axis: int, full: int | None) -> str:
        """One of Pillow's passes along ``axis`` of an NCHW tensor (3: width, 2: height), or only its crop when
        the axis keeps its size. One Gather brings each output pixel's taps side by side; per byte of the
        weights (:func:`weight_parts`) a multiply and a sum over the taps give a float32 sum, exact."""
        if plan.taps is None:
            assert full is not None
            return self.slice(x, axis=axis, span=plan.span, full=full)
        taps = plan.taps
        outputs, k = taps.index.shape
        parts = weight_parts(taps.weights)  # (outputs, k, parts), high part first
        gathered = self.node("Gather", [x, self.const("taps", taps.index.reshape(-1))], axis=axis)
        trailing: tuple[int, ...] = ()
        if axis == 3:  # N, 3, H, out*k -> N, 3, H, out, k: the taps last, summed where they lie
            shape, reduce_axis = [0, 0, 0, outputs, k], 4
        else:  # N, 3, out*k, W -> N, 3, out, k, W
            shape, trailing, reduce_axis = [0, 0, outputs, k, -1], (1,), 3
        side_by_side = self.node("Reshape", [gathered, self.const("shape", np.array(shape, np.int64))])
        axes = self.const("axes", np.array([reduce_axis], np.int64))
        sums = []
        for part in range(parts.shape[2]):
            weights = parts[:, :, part].reshape(outputs, k, *trailing).astype(np.float32)
            weighted = self.node("Mul", [side_by_side, self.const("weights", weights)])
            sums.append(self.node("ReduceSum", [weighted, axes], keepdims=0))
        return self._round_and_clip(sums)

    def _round_and_clip(self, sums: list[str]) -> str:
        """Pillow's (sum + 2**21) >> 22, clipped to 0..255, from the per-part sums (high part first, each
        ``PART_BITS[len(sums)]`` bits above the next): the carries go up one part at a time, every value an
        integer below 2**24, so float32 holds each exactly and every runtime computes the same pixels."""
        bits = PART_BITS[len(sums)]
        below = 1 / (1 << bits)
        acc = sums[-1]
        for higher in reversed(sums[:-1]):
            carry = self.node("Floor", [self.node("Mul", [acc, self.const("part", np.array(below, np.float32))])])
            acc = self.node("Add", [higher, carry])
        shift = bits * (len(sums) - 1)  # the top accumulator counts units of 2**shift
        half = self.node("Add", [acc, self.const("half", np.array(1 << (21 - shift), np.float32))])
        unit = self.const("unit", np.array(1 / (1 << (22 - shift)), np.float32))
        floored = self.node("Floor", [self.node("Mul", [half, unit])])
        low_clipped = self.node("Max", [floored, self.const("black", np.array(0.0, np.float32))])
        return self.node("Min", [low_clipped, self.const("white", np.array(255.0, np.float32))])


PART_BITS = {2: 11, 3: 8}  # the weights split into 2 parts of 11 bits or 3 of 8
EXACT_LIMIT = 2**24 - 2**14  # every float32 sum stays below this (room for the carries): exact


def weight_parts(weights: np.ndarray) -> np.ndarray:
    """Fixed-point weights (outputs, k) split into signed parts, high first: w = sum part_i * 2**(bits * i),
    as few parts as keep every pixel-times-part sum of an output exact in float32 (2 parts, else 3)."""
    magnitude = np.abs(weights.astype(np.int64))
    sign = np.sign(weights).astype(np.int64)[..., None]
    for count, bits in sorted(PART_BITS.items()):
        mask = (1 << bits) - 1
        parts = np.stack([(magnitude >> (bits * i)) & mask for i in reversed(range(count))], axis=-1)
        parts[..., 0] = magnitude >> (bits * (count - 1))  # the top part holds the rest
        if (255 * parts.sum(axis=1)).max() < EXACT_LIMIT:
            return parts * sign
    raise ArtifactError(
        f"the resize reads {weights.shape[1]} pixels per output pixel (a downscale too large to compute exactly); "
        "declare a smaller frame size"
    )


def verify_fused(source: str | Path, fused: str | Path, metadata: ArtifactMetadata) -> tuple[int, float]:
    """Run the fused graph and the source on the same frames in ONNX Runtime: the network's input must
    equal the runner's CPU preprocessing bit for bit; returns (frames checked, max |logit difference|)."""
    frame = metadata.frame_input
    assert frame is not None
    frames = _test_frames(frame)
    rgb = frames[..., ::-1] if frame.channel_order == "BGR" else frames
    size, policy = metadata.config.input_size, metadata.eval_preprocess
    expected_input = model_input(rgb, size, policy, metadata.mean, metadata.std)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    prefix = preprocessing_only(fused)
    (got_input,) = ort.InferenceSession(prefix, options, providers=["CPUExecutionProvider"]).run(
        None, {INPUT_NAME: frames.astype(frame.numpy_dtype)}
    )
    if got_input.shape != expected_input.shape or not np.array_equal(got_input, expected_input):
        same_shape = got_input.shape == expected_input.shape
        how = f"max |diff| {np.abs(got_input - expected_input).max():.3g}" if same_shape else f"shape {got_input.shape}"
        raise VerificationError(
            f"the in-graph preprocessing differs from the runner's ({how}); this is a bug: report it with the "
            "model's metadata and the frame size"
        )
    ref = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(str(fused), options, providers=["CPUExecutionProvider"])
    (a,) = ref.run(None, {INPUT_NAME: expected_input})
    (b,) = new.run(None, {INPUT_NAME: frames.astype(frame.numpy_dtype)})
    return len(frames), float(np.abs(a.astype(np.float64) - b).max())


def _test_frames(frame: FrameInput) -> np.ndarray:
    """Random frames and the extremes (black, white, a hard edge) a rounding slip would show on."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, *frame.shape), dtype=np.uint8)
    frames[1] = 0
    frames[2] = 255
    frames[3, :, : frame.width // 2] = 255
    frames[3, :, frame.width // 2 :] = 0
    return frames


def preprocessing_only(fused: str | Path) -> bytes:
    """The fused graph cut after the preprocessing: its output is the network's input."""
    model = onnx.load(str(fused))
    graph = model.graph
    keep = [n for n in graph.node if n.name.startswith(PREFIX)]
    used = {name for n in keep for name in n.input}
    del graph.node[:]
    graph.node.extend(keep)
    initializers = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.output[:]
    graph.output.append(helper.make_empty_tensor_value_info(PREPROCESSED))
    del model.metadata_props[:]
    return bytes(model.SerializeToString())


def strip_preprocessing(model: Any, source: str = "the model") -> FrameInput:
    """Undo :func:`prepend_preprocessing` on ``model`` (changed in place): the network alone, taking the
    normalised (N, 3, S, S) float32 input again, as calibration measures it. Returns the frame input it had."""
    metadata = check_graph_matches_metadata(model, source=source)
    frame = metadata.frame_input
    if frame is None:
        raise ArtifactError(f"{source} has no preprocessing inside to take out")
    graph = model.graph
    network = [n for n in graph.node if not n.name.startswith(PREFIX)]
    for node in network:
        for i, name in enumerate(node.input):
            if name == PREPROCESSED:
                node.input[i] = INPUT_NAME
    del graph.node[:]
    graph.node.extend(network)
    kept = [i for i in graph.initializer if not i.name.startswith(PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    (frames,) = [v for v in graph.input if v.name == INPUT_NAME]
    cfg = metadata.config
    tensor = helper.make_tensor_value_info(
        INPUT_NAME, onnx.TensorProto.FLOAT, [None, 3, cfg.input_size, cfg.input_size]
    )
    tensor.type.tensor_type.shape.dim[0].CopyFrom(frames.type.tensor_type.shape.dim[0])
    graph.input.remove(frames)
    graph.input.insert(0, tensor)
    write_onnx_metadata(model, dataclasses.replace(metadata, frame_input=None))
    return frame
