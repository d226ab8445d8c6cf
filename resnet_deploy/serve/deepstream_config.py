"""A DeepStream Gst-nvinfer config for one of our classifiers (an engine or an ONNX), and its label file.

The config is a GLib key file with one ``[property]`` group; every key written is a documented one
(:mod:`resnet_deploy.serve.nvinfer_keys`), its value checked against the key's type. Paths in it are
relative to the config's own directory, which is how nvinfer resolves them. A comment block above the
group says what nvinfer does not reproduce of the model's preprocessing and, when measured, what that
costs in top-1 (:mod:`resnet_deploy.serve.nvinfer_preprocess`).

The label file of a classifier holds one line per output layer, its labels separated by semicolons
(nvinfer's ``parseLabelsFile``): ours is one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resnet_deploy.artifacts.onnx_metadata import OUTPUT_NAME, ArtifactMetadata
from resnet_deploy.errors import ArtifactError
from resnet_deploy.serve.nvinfer_keys import DEEPSTREAM_SOURCE, check_property
from resnet_deploy.serve.nvinfer_preprocess import Normalisation, PreprocessCost

NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2, "best": 1}  # nvinfer's network-mode
PRIMARY, SECONDARY = 1, 2  # process-mode
BILINEAR = 1  # scaling-filter: NvBufSurfTransformInter_Bilinear
HEADER = "# resnet-deploy deepstream: Gst-nvinfer config for "


def config_name(artifact: Path) -> str:
    """``config_infer_r20.int8.txt`` for ``r20.int8.engine``: nvinfer's samples name theirs config_infer_*.txt."""
    return f"config_infer_{artifact.name.rsplit('.', 1)[0]}.txt"


def header(artifact: Path) -> str:
    """The config's first line; it marks a config this command wrote for ``artifact``."""
    return HEADER + artifact.name


def labels_text(metadata: ArtifactMetadata) -> str:
    """The label file: the class names on one line, semicolon-separated (class indices when none are recorded)."""
    names = metadata.class_names or tuple(str(i) for i in range(metadata.config.num_classes))
    bad = next((n for n in names if not n.strip() or set(n) & set(";\r\n")), None)
    if bad is not None:
        raise ArtifactError(
            f"class name {bad!r} cannot go in nvinfer's label file (one line, names separated by ';'); "
            "re-export the model with names without ';' or line breaks",
            field="artifact",
        )
    return ";".join(names) + "\n"


@dataclass(frozen=True)
class ModelFiles:
    """What nvinfer loads: an engine, the ONNX it builds one from, the cache an implicit INT8 build reads."""

    engine: Path | None = None
    onnx: Path | None = None
    calib_cache: Path | None = None
    missing_onnx: str | None = None  # the ONNX an engine was built from, when it is not where its sidecar says
    dla_core: int | None = None


@dataclass(frozen=True)
class ConfigRequest:
    """Everything the config says, resolved: the model, its files, how nvinfer runs it."""

    artifact: Path
    metadata: ArtifactMetadata
    precision: str  # fp32, fp16, int8 (or best: an engine TensorRT chose layer precisions for)
    files: ModelFiles
    directory: Path  # where the config goes: its paths are relative to it
    labels: Path
    normalisation: Normalisation
    secondary: bool = False
    gie_unique_id: int = 1
    operate_on_gie_id: int = 1
    operate_on_class_ids: tuple[int, ...] = ()
    batch_size: int = 1
    threshold: float = 0.0
    maintain_aspect_ratio: bool = False
    gpu_id: int = 0
    output_name: str = OUTPUT_NAME  # the logits' tensor: output-blob-names
    cost: PreprocessCost | None = None  # None: not measured


def render(request: ConfigRequest) -> str:
    """The config's text: the comment block, then ``[property]`` with every key checked."""
    lines = [*(f"# {c}" if c else "#" for c in _comments(request)), "[property]"]
    lines += [f"{key}={check_property(key, value)}" for key, value in _properties(request)]
    return header(request.artifact) + "\n" + "\n".join(lines) + "\n"


def _relative(path: Path, directory: Path) -> str:
    return os.path.relpath(path.resolve(), directory.resolve())


def _properties(r: ConfigRequest) -> list[tuple[str, object]]:
    cfg, files = r.metadata.config, r.files
    props: list[tuple[str, object]] = [
        ("gpu-id", r.gpu_id),
        ("gie-unique-id", r.gie_unique_id),
        ("process-mode", SECONDARY if r.secondary else PRIMARY),
        ("network-type", 1),
    ]
    if files.engine is not None:
        props.append(("model-engine-file", _relative(files.engine, r.directory)))
    if files.onnx is not None:
        props.append(("onnx-file", _relative(files.onnx, r.directory)))
    if files.calib_cache is not None:
        props.append(("int8-calib-file", _relative(files.calib_cache, r.directory)))
    frame = r.metadata.frame_input
    props += [
        ("labelfile-path", _relative(r.labels, r.directory)),
        ("batch-size", r.batch_size),
        ("network-mode", NETWORK_MODES[r.precision]),
        (
            "infer-dims",
            [cfg.in_chans, cfg.input_size, cfg.input_size] if frame is None else [3, frame.height, frame.width],
        ),
        ("network-input-order", 0 if frame is None else 1),  # 1: NHWC, the frames model's layout
        ("model-color-format", 1 if frame is not None and frame.channel_order == "BGR" else 0),
        ("net-scale-factor", r.normalisation.scale),
        ("offsets", list(r.normalisation.offsets)),
        ("maintain-aspect-ratio", r.maintain_aspect_ratio),
    ]
    if r.maintain_aspect_ratio:
        props.append(("symmetric-padding", True))  # centred, as our crop is
    props += [
        ("scaling-filter", BILINEAR),
        ("output-blob-names", [r.output_name]),
        ("classifier-threshold", r.threshold),
    ]
    if r.secondary:
        props.append(("operate-on-gie-id", r.operate_on_gie_id))
        if r.operate_on_class_ids:
            props.append(("operate-on-class-ids", list(r.operate_on_class_ids)))
    if files.dla_core is not None:
        props += [("enable-dla", True), ("use-dla-core", files.dla_core)]
    return props


def _comments(r: ConfigRequest) -> list[str]:
    cfg, meta = r.metadata.config, r.metadata
    frame = meta.frame_input
    takes = (
        f"{cfg.in_chans}x{cfg.input_size}x{cfg.input_size} RGB input"
        if frame is None
        else f"{frame.width}x{frame.height} {frame.channel_order} frames, its preprocessing inside"
    )
    lines = [
        f"{cfg.name} ({cfg.num_classes} classes, {takes}), {r.precision.upper()}; keys: {DEEPSTREAM_SOURCE}.",
        *_file_notes(r),
        "",
        *(_frames_notes(r) if frame is not None else _normalisation_notes(r)),
        "",
        "Output. The model gives logits (no softmax). nvinfer's classifier parser labels an image (or object) with",
        "the class of the highest output above classifier-threshold and above 0: the label's confidence is a",
        "logit, not a probability, and an image whose highest logit is not above both gets no label.",
    ]
    if r.secondary:
        which = f" of classes {', '.join(map(str, r.operate_on_class_ids))}" if r.operate_on_class_ids else ""
        lines += ["", f"Secondary: classifies the objects{which} that gie-unique-id {r.operate_on_gie_id} detects."]
    return lines


def _normalisation_notes(r: ConfigRequest) -> list[str]:
    meta = r.metadata
    return [
        f"Preprocessing. The model takes (x / 255 - mean[c]) / std[c] with mean {_floats(meta.mean)} and std "
        f"{_floats(meta.std)}; nvinfer computes net-scale-factor * (x - offsets[c]) on 0..255 pixels:",
        "  offsets = 255 * mean, exact;",
        *_scale_notes(r),
        *_resize_notes(r),
        "",
        *_measured(r.cost),
    ]


def _frames_notes(r: ConfigRequest) -> list[str]:
    frame = r.metadata.frame_input
    assert frame is not None
    where = (
        "the objects nvinfer crops are scaled to that size by nvinfer's own scaler first, which is not exact"
        if r.secondary
        else f"exact when nvstreammux's width and height are {frame.width} and {frame.height}, so that nvinfer "
        "scales nothing"
    )
    return [
        "Preprocessing. The model resizes, crops and normalises inside its graph, exactly as resnet-deploy does on",
        f"the CPU; nvinfer passes it the {frame.width}x{frame.height} pixel values as they are (net-scale-factor 1, "
        f"offsets 0, NHWC, {frame.channel_order}):",
        f"{where}. Nothing to measure.",
    ]


def _file_notes(r: ConfigRequest) -> list[str]:
    files = r.files
    if files.engine is None:
        return ["nvinfer builds its TensorRT engine from onnx-file on first use (network-mode sets the precision)."]
    lines = ["model-engine-file is used as built; nvinfer builds another from onnx-file when it cannot load it"]
    if files.onnx is None:
        lines = [
            "model-engine-file is used as built; nvinfer cannot build another where it does not load (another GPU or",
            f"TensorRT): the ONNX it was built from, {files.missing_onnx or 'unrecorded'}, was not found.",
        ]
        return lines
    lines[0] += " (another GPU or"
    if files.calib_cache is not None:
        lines.append("TensorRT), as the implicit INT8 engine was: from the FP32 ONNX and int8-calib-file.")
    elif r.precision == "int8":
        lines.append("TensorRT), from the INT8 ONNX: its Q/DQ nodes hold the scales, so there is no int8-calib-file.")
    else:
        lines.append("TensorRT).")
    return lines


def _scale_notes(r: ConfigRequest) -> list[str]:
    std = r.metadata.std
    if len(set(std)) == 1:
        return ["  net-scale-factor = 1 / (255 * std), exact: every channel has the same std."]
    errors = ", ".join(f"{100 * e:+.2f}%" for e in r.normalisation.channel_error(std))
    return [
        "  net-scale-factor: one scale for three stds, so not exact. sum(std) / (255 * sum(std^2)) minimises the",
        "  expected squared error of the network's input over pixels of the recorded mean and std; each channel's",
        f"  input is then off by {errors} (R, G, B).",
    ]


def _resize_notes(r: ConfigRequest) -> list[str]:
    policy, size = r.metadata.eval_preprocess, r.metadata.config.input_size
    what = "each frame" if not r.secondary else "each object"
    how = (
        f"scales {what} to {size}x{size} keeping its shape (maintain-aspect-ratio, padding centred)"
        if r.maintain_aspect_ratio
        else f"stretches {what} whole to {size}x{size}"
    )
    line = f"Resize: nvinfer {how} with its own bilinear filter (scaling-filter=1) and never crops;"
    if policy.resize == "stretch":
        return [line, f"the model was evaluated with its images stretched to {size}x{size} ({policy.interpolation})."]
    return [
        line,
        f"the model was evaluated with the shorter side to {round(size / policy.crop_pct)} and a centre crop of "
        f"{size}x{size} ({policy.interpolation}), which nvinfer does not reproduce.",
    ]


def _measured(cost: PreprocessCost | None) -> list[str]:
    if cost is None:
        return ["Not measured (measure=False): what this approximation costs in top-1 is unknown."]
    return [
        "What nvinfer's preprocessing costs: the same test images through the model, exact and as nvinfer prepares",
        "them (stretched whole, Pillow's bilinear standing in for nvinfer's scaler; offsets, net-scale-factor,",
        "and the parser's no-label rule as above), paired as `resnet-deploy validate` pairs artifacts:",
        *cost.lines(),
    ]


def _floats(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
