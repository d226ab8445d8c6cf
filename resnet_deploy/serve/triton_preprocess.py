"""The preprocessing step of a Triton ensemble: encoded images (JPEG, PNG... as ``TYPE_STRING``) -> the
normalised NCHW float32 batch the classifier takes, by resnet-deploy's one preprocessing
(:func:`resnet_deploy.runtime.images.preprocess`, from the artifact's own metadata).

``MODEL_PY`` is the Python-backend model written as ``<name>_preprocess/1/model.py``; it calls
:func:`preprocess_encoded` with the metadata written beside it (``metadata.json``), so the Triton
container needs ``pip install resnet-deploy`` (numpy and Pillow; no torch, no runtime).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.runtime.images import preprocess
from resnet_deploy.serve.encoded_image import decode_image

METADATA_FILE = "metadata.json"  # the classifier's metadata props, beside model.py
IMAGE_INPUT = "IMAGE"


def preprocess_encoded(blobs: Iterable[Any], metadata: ArtifactMetadata) -> np.ndarray:
    """Encoded images (bytes, or numpy object arrays of bytes as Triton passes ``TYPE_STRING``) -> the
    model's (N, C, S, S) float32 input; an image that does not decode is one line naming its index."""
    images = [decode_image(blob, index) for index, blob in enumerate(np.asarray(blobs, dtype=object).reshape(-1))]
    return preprocess(images, metadata)


MODEL_PY = '''"""Triton Python-backend model written by `resnet-deploy triton`: encoded images -> {classifier}'s input.

Needs resnet-deploy in the Triton container: pip install resnet-deploy
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.serve.triton_preprocess import preprocess_encoded


class TritonPythonModel:
    def initialize(self, args):
        props = json.loads((Path(__file__).parent / "{metadata_file}").read_text())
        self.metadata = ArtifactMetadata.from_props(props, "{classifier} (its metadata.json)")

    def execute(self, requests):
        responses = []
        for request in requests:
            blobs = pb_utils.get_input_tensor_by_name(request, "{image_input}").as_numpy()
            try:
                batch = preprocess_encoded(blobs, self.metadata)
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("{output}", batch)]))
        return responses
'''


def model_py(classifier: str, output: str) -> str:
    """The Python-backend ``model.py`` for ``classifier``, producing its input tensor ``output``."""
    return MODEL_PY.format(classifier=classifier, output=output, metadata_file=METADATA_FILE, image_input=IMAGE_INPUT)
