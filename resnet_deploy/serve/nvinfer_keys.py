"""The keys of Gst-nvinfer's ``[property]`` group, with the type of value each takes: what a config we
write may contain (:func:`check_property` refuses anything else before a file is written).

Source: DeepStream's Gst-nvinfer documentation, "Gst-nvinfer File Configuration Specifications",
table "Gst-nvinfer Plugin, [property] Group Supported Keys"
(https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html), and the
parser that table describes, ``sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.{h,cpp}`` of
DeepStream 6.2 (as published in the SDK's sources; read from the copy in github.com/hiennguyen9874/
deepstream-sources, revision 3b4e4ce, "deepstream 6.2 source code"): every key below is one the parser
reads, its type the ``g_key_file_get_*`` call that reads it. Lists are semicolon-separated (GLib key files); booleans
are 0 or 1. Later releases (7.x-9.x) keep these keys and add others, which a config of ours does not use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DEEPSTREAM_SOURCE = (
    "DeepStream 6.2 Gst-nvinfer [property] keys (DS_plugin_gst-nvinfer documentation; "
    "gst-nvinfer/gstnvinfer_property_parser.cpp)"
)
INTEGER, FLOAT, BOOLEAN, STRING = "integer", "float", "boolean", "string"
INTEGERS, FLOATS, STRINGS = "integer list", "float list", "string list"

PROPERTY_KEYS: Mapping[str, str] = {
    # the element
    "gie-unique-id": INTEGER,
    "process-mode": INTEGER,  # 1 primary (full frames), 2 secondary (objects)
    "interval": INTEGER,
    "labelfile-path": STRING,
    "gpu-id": INTEGER,
    "secondary-reinfer-interval": INTEGER,
    "output-tensor-meta": BOOLEAN,
    "output-instance-mask": BOOLEAN,
    "enable-dla": BOOLEAN,
    "use-dla-core": INTEGER,
    "classifier-async-mode": BOOLEAN,
    "classifier-type": STRING,
    "crop-objects-to-roi-boundary": BOOLEAN,
    # the engine
    "batch-size": INTEGER,
    "tensor-meta-pool-size": INTEGER,
    "network-mode": INTEGER,  # 0 FP32, 1 INT8, 2 FP16
    "model-engine-file": STRING,
    "int8-calib-file": STRING,
    "workspace-size": INTEGER,
    # the model
    "output-blob-names": STRINGS,
    "is-classifier": BOOLEAN,  # superseded by network-type
    "network-type": INTEGER,  # 0 detector, 1 classifier, 2 segmentation
    "force-implicit-batch-dim": BOOLEAN,
    "infer-dims": INTEGERS,
    "output-io-formats": STRINGS,
    "layer-device-precision": STRINGS,
    # preprocessing
    "model-color-format": INTEGER,  # 0 RGB, 1 BGR, 2 GRAY
    "net-scale-factor": FLOAT,
    "offsets": FLOATS,
    "mean-file": STRING,
    "maintain-aspect-ratio": BOOLEAN,
    "symmetric-padding": BOOLEAN,
    "scaling-filter": INTEGER,  # NvBufSurfTransform_Inter: 0 nearest, 1 bilinear, ...
    "scaling-compute-hw": INTEGER,  # 0 default, 1 GPU, 2 VIC (Jetson)
    "network-input-order": INTEGER,  # 0 NCHW, 1 NHWC
    "input-tensor-from-meta": BOOLEAN,
    # custom code
    "custom-lib-path": STRING,
    "parse-bbox-func-name": STRING,
    "parse-bbox-instance-mask-func-name": STRING,
    "engine-create-func-name": STRING,
    "parse-classifier-func-name": STRING,
    "custom-network-config": STRING,
    # model files of other kinds
    "model-file": STRING,
    "proto-file": STRING,
    "uff-file": STRING,
    "input-dims": INTEGERS,
    "uff-input-dims": INTEGERS,
    "uff-input-order": INTEGER,
    "uff-input-blob-name": STRING,
    "tlt-encoded-model": STRING,
    "tlt-model-key": STRING,
    "onnx-file": STRING,
    # detectors, classifiers, segmentation
    "num-detected-classes": INTEGER,
    "enable-dbscan": BOOLEAN,
    "cluster-mode": INTEGER,
    "classifier-threshold": FLOAT,
    "segmentation-threshold": FLOAT,
    "segmentation-output-order": INTEGER,
    # secondary mode: which objects
    "input-object-min-width": INTEGER,
    "input-object-min-height": INTEGER,
    "input-object-max-width": INTEGER,
    "input-object-max-height": INTEGER,
    "operate-on-gie-id": INTEGER,
    "operate-on-class-ids": INTEGERS,
    "filter-out-class-ids": INTEGERS,
}


def check_property(key: str, value: Any) -> str:
    """``value`` as the key file writes it (``3;32;32``, ``1``, ``0.0171``), once ``key`` is a documented
    ``[property]`` key and ``value`` of its type; ValueError otherwise (a bug of ours, never the user's)."""
    kind = PROPERTY_KEYS.get(key)
    if kind is None:
        raise ValueError(f"{key!r} is not a Gst-nvinfer [property] key of {DEEPSTREAM_SOURCE}")
    values = list(value) if kind in (INTEGERS, FLOATS, STRINGS) else [value]
    if not values:
        raise ValueError(f"{key} takes a {kind}, not an empty list")
    scalar = {INTEGERS: INTEGER, FLOATS: FLOAT, STRINGS: STRING}.get(kind, kind)
    shown = []
    for item in values:
        if scalar == BOOLEAN and isinstance(item, bool):
            shown.append("1" if item else "0")
        elif scalar == INTEGER and isinstance(item, int) and not isinstance(item, bool):
            shown.append(str(item))
        elif scalar == FLOAT and isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item):
            shown.append(repr(float(item)))
        elif scalar == STRING and isinstance(item, str) and item and not set(item) & set(";\n\r"):
            shown.append(item)
        else:
            raise ValueError(f"{key} takes a {kind}; {value!r} is not one")
    return ";".join(shown)
