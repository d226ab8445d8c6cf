"""An outside ResNet ONNX (torch.onnx, timm, tf2onnx, the ONNX model zoo) made into a resnet-deploy artifact.

The graph is kept as it is, with what every later stage needs put around it:

- the architecture, recognised from its weights (:mod:`resnet_deploy.convert.recognize`), or
  ``external`` for a classifier that is no ResNet of the zoo, imported as it is;
- one NCHW float32 input named ``input`` (an NHWC input gets a Transpose in front), one output named
  ``logits``, a dynamic batch (a Reshape that fixed the exported batch is made to copy it);
- opset 13 at least (per-channel Q/DQ needs it), converted with ONNX's version converter;
- our metadata: the model, its preprocessing and classes, and where it came from (the source's sha256,
  producer and layout).

Then the result is run against the original in ONNX Runtime on the same random inputs, sample for
sample. What cannot be taken is refused in one line: not a classifier, an input that is not an image,
an op calibration does not place (the node named), a graph that is quantized already, a non-square input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy import __version__
from resnet_deploy._io import check_writable, sha256_file, write_bytes_atomic
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.model_spec import EXTERNAL, ResNetConfig, at_input_size, external_config, model_config
from resnet_deploy.artifacts.onnx_io import load_onnx, onnx_props, write_onnx_metadata
from resnet_deploy.artifacts.onnx_metadata import INPUT_NAME, OUTPUT_NAME, ArtifactMetadata
from resnet_deploy.artifacts.preprocess import Preprocess
from resnet_deploy.convert.recognize import recognize
from resnet_deploy.errors import ArtifactError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper, version_converter
else:
    onnx = lazy_import("onnx")
    numpy_helper = lazy_import("onnx.numpy_helper")
    version_converter = lazy_import("onnx.version_converter")
    ort = lazy_import("onnxruntime", extra="onnxruntime")

MIN_OPSET = 13
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
# what a ResNet is made of, in any exporter's spelling: anything else is named and refused
SUPPORTED_OPS = {
    "ConstantOfShape", "Expand", "Range", "Equal", "Where", "Neg",
    "Conv", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
    "Add", "Sum", "Mul", "Sub", "Div", "Pad", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Gemm",
    "MatMul", "Identity", "Constant", "Shape", "Gather", "Concat", "Cast", "Softmax", "Slice", "Dropout",
}  # fmt: skip
SOFTMAX_NOTE = "its output is a softmax (probabilities): top-1 and calibration work, logits do not exist"


@dataclass(frozen=True)
class ImportPreprocess:
    """How images become the imported model's input: mean/std per channel and the resize policy."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    policy: Preprocess
    size: int | None = None  # the input side, where the graph leaves it open
    named: str = ""  # "imagenet", "cifar", or "" for numbers given


@dataclass
class ImportResult:
    path: Path
    source: Path
    architecture: str
    layout: str  # the source's input layout: NCHW or NHWC
    opset: int
    source_opset: int
    batch: str  # "dynamic"
    max_abs_error: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "source": str(self.source),
            "architecture": self.architecture,
            "layout": self.layout,
            "opset": self.opset,
            "source_opset": self.source_opset,
            "batch": self.batch,
            "max_abs_error": self.max_abs_error,
            "notes": self.notes,
        }


def import_onnx(
    source: Path,
    output: Path,
    preprocess: ImportPreprocess | None,
    class_names: tuple[str, ...] | None = None,
    dataset: str | None = None,
) -> ImportResult:
    """``source`` as a verified resnet-deploy ONNX at ``output`` (the model's family preprocessing
    when ``preprocess`` is None)."""
    output = check_writable(output)
    model = load_onnx(source)
    if "schema" in onnx_props(model):
        raise ArtifactError(f"{source} is a resnet-deploy artifact already; use it as it is", field="model")
    _refuse_quantized(model, source)
    _refuse_half(model, source)
    _refuse_unsupported(model, source)
    graph_input, graph_output = _one_input_one_output(model, source)
    dims = _dims(graph_input)
    layout = _layout(dims, source)
    if dims[0] == 0:
        raise ArtifactError(
            f"{source} declares a batch of 0 images; export it with a batch of 1 or more", field="model"
        )
    channels, height, width = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    assert isinstance(channels, int)
    out_dims = _dims(graph_output)
    classes = out_dims[1] if len(out_dims) == 2 and isinstance(out_dims[1], int) else None
    if isinstance(height, int) and isinstance(width, int) and height != width:
        raise ArtifactError(
            f"{source} takes {height}x{width} images; resnet-deploy models take square ones (N, C, S, S)",
            field="model",
        )
    config = _architecture(model, source, channels, classes, height, preprocess)
    check_labels(class_names, config.num_classes, source)
    source_opset = _opset(model)
    notes = []
    if config.family == EXTERNAL:
        notes.append(
            "not a ResNet of the zoo: imported as it is (architecture 'external'); every command that works on "
            "ONNX files takes it, `train` and `export` cannot rebuild it"
        )
    if any(node.op_type == "Softmax" for node in model.graph.node[-3:]):
        notes.append(SOFTMAX_NOTE)
    converted = model
    if source_opset < MIN_OPSET:
        try:
            converted = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # ONNX's converter has no adapter for some old ops and shapes
            raise ArtifactError(
                f"{source} is at opset {source_opset}, and ONNX's converter cannot bring it to {MIN_OPSET} "
                f"({str(exc).strip().splitlines()[0][:120]}); export it again at opset {MIN_OPSET} or later",
                field="model",
            ) from None
        notes.append(f"opset {source_opset} converted to {MIN_OPSET} (per-channel INT8 needs it)")
    imported = _normalised(converted, layout, graph_input.name, graph_output.name, dims[0], config)
    chosen = preprocess or _family_preprocess(config)
    check_channels(chosen, config.in_chans)
    metadata = ArtifactMetadata(
        config=config,
        mean=chosen.mean,
        std=chosen.std,
        class_names=class_names,
        checkpoint_sha256=sha256_file(source),
        dataset=dataset,
        producer_version=__version__,
        preprocess=chosen.policy,
    )
    metadata = ArtifactMetadata.from_props(metadata.to_props(), str(output))  # what every reader will check
    write_onnx_metadata(imported, metadata)
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown"
    _add_props(imported, {"imported_from": source.name, "imported_producer": producer, "imported_layout": layout})
    error = _verify(model, imported, layout, config, dims[0], source)
    write_bytes_atomic(output, imported.SerializeToString())
    return ImportResult(
        path=output,
        source=source,
        architecture=config.name,
        layout=layout,
        opset=_opset(imported),
        source_opset=source_opset,
        batch="dynamic",
        max_abs_error=error,
        notes=notes,
    )


# --- what is refused ------------------------------------------------------------------------------


def _refuse_quantized(model: Any, source: Path) -> None:
    node = next((n for n in model.graph.node if n.op_type in QUANTIZED_OPS), None)
    if node is not None:
        raise ArtifactError(
            f"{source} is quantized already (node {node.name or node.output[0]!r} is {node.op_type}); import "
            "the FP32 model and calibrate it here, so its INT8 placement is one TensorRT builds",
            field="model",
        )


def _refuse_half(model: Any, source: Path) -> None:
    half = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    node = next((n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and set(n.input) & half), None)
    if node is not None:
        raise ArtifactError(
            f"{source} holds FP16 weights (node {node.name or node.output[0]!r}); import its FP32 form and "
            "convert it here (`convert` makes the FP16 twin)",
            field="model",
        )


def _refuse_unsupported(model: Any, source: Path) -> None:
    node = next(
        (n for n in model.graph.node if n.op_type not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx")), None
    )
    if node is not None:
        raise ArtifactError(
            f"{source} has a {node.op_type} node ({node.name or node.output[0]!r}), which is not part of a ResNet "
            "and which INT8 calibration does not place; export the plain ResNet classifier",
            field="model",
        )


def _one_input_one_output(model: Any, source: Path) -> tuple[Any, Any]:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ArtifactError(
            f"{source} has {len(inputs)} inputs and {len(outputs)} outputs; an image classifier has one image in "
            "and one score per class out",
            field="model",
        )
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type).lower()
        raise ArtifactError(f"{source} takes {kind} input; import its float32 form", field="model")
    if len(_dims(outputs[0])) != 2:
        raise ArtifactError(
            f"{source} output {outputs[0].name!r} has {len(_dims(outputs[0]))} dimensions, not (batch, classes): "
            "not an image classifier",
            field="model",
        )
    return inputs[0], outputs[0]


def _dims(value: Any) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value.type.tensor_type.shape.dim]


def _layout(dims: list[int | str | None], source: Path) -> str:
    if len(dims) == 4 and dims[1] in (1, 3):
        return "NCHW"
    if len(dims) == 4 and dims[3] in (1, 3):
        return "NHWC"
    shown = "x".join("?" if d is None else str(d) for d in dims)
    raise ArtifactError(
        f"{source} input is {shown}: not an image batch (N, 3, H, W) or (N, H, W, 3); import an image classifier",
        field="model",
    )


# --- the architecture -----------------------------------------------------------------------------


def _architecture(
    model: Any,
    source: Path,
    channels: int,
    classes: int | None,
    side: int | str | None,
    preprocess: ImportPreprocess | None,
) -> ResNetConfig:
    weights = _weights(model)
    convs = []
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and _rank(weights, node.input[1]) == 4:
            out, inp, kh, kw = weights[node.input[1]].dims
            strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [1, 1])
            convs.append((out, inp, kh, kw, strides[0]))
    classifier = _classifier(model, weights, classes)
    residual = any(node.op_type in ("Add", "Sum") and _activations(node, weights) == 2 for node in model.graph.node)
    config = recognize(convs, classifier, channels, residual) if classifier else None
    if isinstance(side, int) and preprocess is not None and preprocess.size not in (None, side):
        raise ArtifactError(
            f"`preprocess` says {preprocess.size}x{preprocess.size} images, but {source} takes {side}x{side}; "
            f"give SIZE {side}",
            field="preprocess",
        )
    size = side if isinstance(side, int) else (preprocess.size if preprocess and preprocess.size else None)
    if config is None:  # imported as it is: its classes and input are all that is recorded of it
        if size is None:
            raise ArtifactError(
                f"{source} is not a ResNet of the zoo and leaves its input size open: give it as SIZE in "
                f"`preprocess` ({PREPROCESS_HELP})",
                field="preprocess",
            )
        if classes is None:
            raise ArtifactError(f"{source} leaves its number of classes open; export it with a fixed classifier")
        return external_config(classes, size, channels)
    return at_input_size(config, size)


def _rank(weights: dict[str, Any], name: str) -> int:
    """The number of dimensions of constant ``name``; 0 where it is no constant."""
    return len(weights[name].dims) if name in weights else 0


def _weights(model: Any) -> dict[str, Any]:
    """The graph's constant tensors by name: initializers, and Constant nodes' values (some exporters)."""
    found = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if value is not None:
                found[node.output[0]] = value
    return found


def _activations(node: Any, weights: dict[str, Any]) -> int:
    return sum(1 for name in node.input if name and name not in weights)


def _classifier(model: Any, weights: dict[str, Any], classes: int | None) -> tuple[int, int] | None:
    """(classes, features) of the last Gemm or MatMul with a weight: Gemm's weight may be transposed."""
    for node in reversed(model.graph.node):
        if node.op_type not in ("Gemm", "MatMul"):
            continue
        name = next((n for n in node.input[:2] if _rank(weights, n) == 2), None)
        if name is None:
            continue
        rows, cols = weights[name].dims
        transposed = any(a.name == "transB" and a.i for a in node.attribute) or node.input[0] == name
        out, inp = (rows, cols) if (node.op_type == "Gemm" and transposed) else (cols, rows)
        if classes is not None and out != classes and inp == classes:
            out, inp = inp, out
        return int(out), int(inp)
    return None


def _family_preprocess(config: ResNetConfig) -> ImportPreprocess:
    """The recognised family's preprocessing; ImageNet's for a graph imported as it is."""
    mean, std = config.default_mean_std
    policy = Preprocess("stretch") if config.family == "cifar" else Preprocess("crop")
    return ImportPreprocess(mean, std, policy, named="imagenet" if config.family == EXTERNAL else config.family)


# --- the graph ------------------------------------------------------------------------------------


def _opset(model: Any) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _normalised(
    model: Any, layout: str, input_name: str, output_name: str, batch: int | str | None, config: ResNetConfig
) -> Any:
    """A copy with one NCHW ``input`` of the model's size, one ``logits`` output and a dynamic batch."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    source_input = next(i for i in graph.input if i.name == input_name)
    side = config.input_size
    new_input = onnx.helper.make_tensor_value_info(
        INPUT_NAME, onnx.TensorProto.FLOAT, ["N", config.in_chans, side, side]
    )
    graph.input.remove(source_input)
    graph.input.insert(0, new_input)
    if layout == "NHWC":
        nhwc = _fresh_name(graph, "import_input_nhwc")
        _rename(graph, input_name, nhwc)
        graph.node.insert(
            0, onnx.helper.make_node("Transpose", [INPUT_NAME], [nhwc], name="import_nchw_to_nhwc", perm=[0, 2, 3, 1])
        )
    else:
        _rename(graph, input_name, INPUT_NAME)
    _rename(graph, output_name, OUTPUT_NAME)
    graph.output[0].name = OUTPUT_NAME
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    if isinstance(batch, int):
        _free_batch_in_reshapes(graph, batch)
    del graph.value_info[:]  # shapes inferred at the exported batch would contradict the dynamic one
    return out


def _fresh_name(graph: Any, base: str) -> str:
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _free_batch_in_reshapes(graph: Any, batch: int) -> None:
    """A Reshape whose target shape is a constant starting with the exported batch takes any batch
    instead: -1 ("what is left"), or 0 ("as in the input") where another dimension is -1 already."""
    initializers = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        name = node.input[1]
        if name in initializers:
            tensor = initializers[name]
        elif name in constants:
            tensor = next((a.t for a in constants[name].attribute if a.name == "value"), None)
        else:
            continue
        if tensor is None:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        if shape.ndim == 1 and shape.size >= 2 and shape[0] == batch:
            if -1 not in shape[1:]:
                shape[0] = -1
            elif not allowzero:
                shape[0] = 0
            else:
                continue  # left as it is: the verification below says whether the graph still runs
            tensor.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), tensor.name))


def _add_props(model: Any, props: dict[str, str]) -> None:
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


# --- verification ---------------------------------------------------------------------------------


def _verify(
    original: Any, imported: Any, layout: str, config: ResNetConfig, batch: int | str | None, source: Path
) -> float:
    """The imported graph against the original on the same random images, sample for sample, at a
    batch of 3 (the original at its own batch where it fixed one): the largest difference of a logit."""
    side = config.input_size
    count = max(3, batch) if isinstance(batch, int) else 3
    rng = np.random.default_rng(0)
    images = rng.standard_normal((count, config.in_chans, side, side)).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        theirs = ort.InferenceSession(original.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ours = ort.InferenceSession(imported.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's own errors: a graph it cannot run
        raise ArtifactError(f"ONNX Runtime cannot run {source} ({str(exc).splitlines()[0]})", field="model") from None
    feed = images if layout == "NCHW" else images.transpose(0, 2, 3, 1)
    name = theirs.get_inputs()[0].name
    try:
        if isinstance(batch, int):
            chunks = [feed[i : i + batch] for i in range(0, count - count % batch, batch)]
            expected = np.concatenate([theirs.run(None, {name: c})[0] for c in chunks])
        else:
            expected = theirs.run(None, {name: feed})[0]
    except Exception as exc:  # the source itself refuses these images: the size given is not its own
        raise ArtifactError(
            f"{source} does not run on {side}x{side} images ({str(exc).splitlines()[0][:160]}); give the size it "
            "takes as SIZE in `preprocess`",
            field="preprocess",
        ) from None
    try:
        got = ours.run(None, {INPUT_NAME: images})[0]
        got = got[: len(expected)] if len(got) == count else got
    except Exception as exc:  # a batch the graph still fixes somewhere
        raise ArtifactError(
            f"the imported graph of {source} does not run at a batch of {count} ({str(exc).splitlines()[0][:160]}); "
            "export it with a dynamic batch",
            field="model",
        ) from None
    if expected.shape != (len(expected), config.num_classes) or got.shape != expected.shape:
        raise ArtifactError(
            f"{source} gives logits of shape {expected.shape} for {len(expected)} images, and the import "
            f"{got.shape}: not (images, {config.num_classes}); give the size it takes as SIZE in `preprocess`",
            field="preprocess",
        )
    error = float(np.abs(got.astype(np.float64) - expected).max())
    if not np.isfinite(error) or error > 1e-5 * max(1.0, float(np.abs(expected).max())):
        raise ArtifactError(
            f"the imported graph differs from {source} by {error:.3g} on the same inputs; nothing was written",
            field="model",
        )
    return error


# --- what the user says about preprocessing and classes -------------------------------------------

PREPROCESS_HELP = "imagenet, cifar, or MEAN,STD,SIZE,CROP (e.g. 0.485/0.456/0.406,0.229/0.224/0.225,224,0.875)"


def parse_preprocess(text: str) -> ImportPreprocess:
    """``imagenet``, ``cifar``, or ``MEAN,STD,SIZE,CROP``: per-channel MEAN and STD as one number or three
    joined by ``/`` (of [0, 1] pixels), SIZE the input side, CROP the centre crop's share of the resized
    shorter side (0.875: 256 -> 224) or ``stretch`` (resized straight to SIZE x SIZE)."""
    named = text.strip().lower()
    if named in ("imagenet", "cifar"):
        config = model_config(50 if named == "imagenet" else 20)
        mean, std = config.default_mean_std
        return ImportPreprocess(mean, std, Preprocess("crop" if named == "imagenet" else "stretch"), named=named)
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        mean = tuple(float(v) for v in parts[0].split("/"))
        std = tuple(float(v) for v in parts[1].split("/"))
        size = int(parts[2])
        policy = Preprocess("stretch") if parts[3].lower() == "stretch" else Preprocess("crop", float(parts[3]))
        if len(mean) not in (1, 3) or len(std) != len(mean) or size < 1 or any(s <= 0 for s in std):
            raise ValueError
    except (ValueError, ArtifactError):
        raise ArtifactError(f"`preprocess` {text!r} is not {PREPROCESS_HELP}", field="preprocess") from None
    return ImportPreprocess(mean, std, policy, size=size)


def check_labels(class_names: tuple[str, ...] | None, num_classes: int, source: Path) -> None:
    """One label per output, in output order."""
    if class_names is not None and len(class_names) != num_classes:
        raise ArtifactError(
            f"the labels name {len(class_names)} classes but {source} has {num_classes} outputs; "
            "give one label per line, in output order",
            field="labels",
        )


def check_channels(preprocess: ImportPreprocess, channels: int) -> None:
    """One MEAN and STD per input channel (or one for all)."""
    if len(preprocess.mean) not in (1, channels):
        raise ArtifactError(
            f"the model takes {channels}-channel images but the preprocessing has {len(preprocess.mean)} means; "
            f"give `preprocess` as MEAN,STD,SIZE,CROP with one mean and std (or {channels})",
            field="preprocess",
        )


def read_labels(path: Path) -> tuple[str, ...]:
    """One class name per line, in output order (blank lines at the end ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(
            f"cannot read labels {path} ({exc}); give a UTF-8 text file, one name per line", field="labels"
        ) from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or any(not line.strip() for line in lines):
        raise ArtifactError(f"labels {path} has empty lines; give one class name per line", field="labels")
    return tuple(line.strip() for line in lines)
