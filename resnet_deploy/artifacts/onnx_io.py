"""ONNX files and their resnet-deploy metadata: load, read and write the props, and check that a
graph is the classifier its metadata (``artifacts.ArtifactMetadata``) promises.

``check_graph_matches_metadata`` also takes an ONNX Runtime session, so the runner needs no ``onnx``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.lineage import KEYS as LINEAGE_KEYS
from resnet_deploy.artifacts.lineage import GraphLineage
from resnet_deploy.artifacts.onnx_metadata import OPTIONAL_KEYS, ArtifactMetadata, Dims, check_io
from resnet_deploy.errors import ArtifactError

onnx = lazy_import("onnx")


def write_props(model_proto: Any, props: dict[str, str]) -> None:
    """Set the model's metadata props to ``props``: the one place a model's props are written."""
    del model_proto.metadata_props[:]
    for key, value in props.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def write_onnx_metadata(model_proto: Any, metadata: ArtifactMetadata) -> None:
    """Replace the model's metadata props with ``metadata`` (other keys are kept), checked as every reader
    checks it: nothing is written that a later command would refuse."""
    props = metadata.to_props()
    ArtifactMetadata.from_props(props, "the model's metadata to be written")
    others = {p.key: p.value for p in model_proto.metadata_props if p.key not in props and p.key not in OPTIONAL_KEYS}
    write_props(model_proto, {**others, **props})
    model_proto.producer_name = "resnet-deploy"
    model_proto.producer_version = metadata.producer_version


def write_lineage(model_proto: Any, lineage: GraphLineage, source_props: dict[str, str]) -> None:
    """Give a derived graph its source's props (the model's metadata, any other keys) and ``lineage``."""
    kept = {key: value for key, value in source_props.items() if key not in LINEAGE_KEYS}
    write_props(model_proto, {**kept, **lineage.to_props()})


def read_lineage(model: Any, source: str | None = None) -> GraphLineage:
    """The lineage of an ONNX file (a path) or a loaded ``ModelProto``, checked."""
    if isinstance(model, (str, Path)):
        return GraphLineage.from_props(read_onnx_props(model), source or str(model))
    return GraphLineage.from_props(onnx_props(model), source or "the model")


def load_onnx(path: str | Path, *, external_data: bool = True) -> Any:
    """The ModelProto in ``path``; a missing or foreign file is a one-line error."""
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except FileNotFoundError:
        raise ArtifactError(f"ONNX file {path} not found") from None
    except Exception as exc:  # onnx raises DecodeError and others for foreign files
        raise ArtifactError(f"{path} is not a readable ONNX model ({exc})") from exc


def onnx_props(model: Any) -> dict[str, str]:
    """All metadata props of a loaded ONNX model (ours and any others), as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def read_onnx_props(path: str | Path) -> dict[str, str]:
    """All metadata props of an ONNX file (ours and any others), as a dict."""
    return onnx_props(load_onnx(path, external_data=False))


def read_onnx_metadata(path: str | Path) -> ArtifactMetadata:
    """Read the metadata of an ONNX file written by ``resnet-deploy export``."""
    return ArtifactMetadata.from_props(read_onnx_props(path), source=str(path))


# ONNX TensorProto element types (and ONNX Runtime's "tensor(...)" names) the checks below tell apart
_ELEMENT_TYPES = {1: "float32", 2: "uint8", 10: "float16", 11: "float64", 16: "bfloat16"}
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(uint8)": "uint8",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
}


def check_graph_matches_metadata(model: Any, *, source: str | None = None) -> ArtifactMetadata:
    """The metadata of an ONNX model, once its graph is checked to be the classifier the metadata promises.

    ``model``: a path, a loaded ``onnx.ModelProto``, or an ``onnxruntime.InferenceSession`` (so the
    runner needs no ``onnx``). Refused, one line naming the contradiction and the fix: no or malformed
    metadata; not one input and one output; an input or output named otherwise than ``input_name`` /
    ``output_name`` say; an input that is not (N, in_chans, input_size, input_size) float32 or an output
    that is not (N, num_classes) floating point.
    """
    if isinstance(model, (str, Path)):
        source = source or str(model)
        model = load_onnx(model, external_data=False)  # shapes and props only: no weights needed
    source = source or "the model"
    if hasattr(model, "get_modelmeta"):  # an onnxruntime.InferenceSession
        try:
            props = dict(model.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError:  # ONNX Runtime hands the props over as str: a damaged byte fails there
            raise ArtifactError(
                f"{source} has metadata that is not UTF-8 text (a damaged file?); export or import it again"
            ) from None
        inputs = [(v.name, _ort_dims(v.shape), _ORT_TYPES.get(v.type, v.type)) for v in model.get_inputs()]
        outputs = [(v.name, _ort_dims(v.shape), _ORT_TYPES.get(v.type, v.type)) for v in model.get_outputs()]
    else:
        props = onnx_props(model)
        initializers = {i.name for i in model.graph.initializer}
        inputs = [_proto_io(v) for v in model.graph.input if v.name not in initializers]
        outputs = [_proto_io(v) for v in model.graph.output]
    metadata = ArtifactMetadata.from_props(props, source=source)
    check_io(metadata, props, inputs, outputs, source)
    return metadata


def _ort_dims(shape: Any) -> Dims:
    """A session's shapes are the ones ONNX Runtime inferred (what the graph computes, whatever its outputs
    declare); a size it could not infer is left to the check of each result in ``Backend.infer``."""
    return tuple(d if isinstance(d, int) and d >= 0 else (d if i == 0 else None) for i, d in enumerate(shape or ()))


def _proto_io(value: Any) -> tuple[str, Dims, str]:
    tensor = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
    return value.name, dims, _ELEMENT_TYPES.get(tensor.elem_type, f"element type {tensor.elem_type}")
