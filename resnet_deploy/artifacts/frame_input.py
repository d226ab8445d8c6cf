"""The raw frames a model with its preprocessing inside the graph takes: uint8, NHWC, at one declared
frame size, in RGB or BGR order (``frame_input`` in its metadata). A float32 twin takes the same pixel
values (0 to 255) as float32, for feeders that only write float tensors (DeepStream's nvinfer).

Such a model resizes, crops, scales and normalises in the graph itself (see
:mod:`resnet_deploy.convert.preprocess_graph`), so TensorRT runs the preprocessing on the GPU and an
application hands it the frames its camera or decoder produced.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from resnet_deploy.errors import ArtifactError

CHANNEL_ORDERS = ("RGB", "BGR")
DTYPES = ("uint8", "float32")  # float32: the same 0-255 pixel values, as floats
MAX_FRAME_SIDE = 16384  # larger than any camera or video frame; keeps the graph's index tables bounded


@dataclass(frozen=True)
class FrameInput:
    width: int
    height: int
    channel_order: str = "RGB"
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        for name, side in (("width", self.width), ("height", self.height)):
            if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_FRAME_SIDE:
                raise ArtifactError(f"frame {name} {side!r} is not a whole number from 1 to {MAX_FRAME_SIDE}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ArtifactError(f"frame channel order {self.channel_order!r} is not one of {', '.join(CHANNEL_ORDERS)}")
        if self.dtype not in DTYPES:
            raise ArtifactError(f"frame data type {self.dtype!r} is not one of {', '.join(DTYPES)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """One frame's (H, W, 3)."""
        return (self.height, self.width, 3)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def describe(self) -> str:
        return f"{self.width}x{self.height} {self.dtype} {self.channel_order}"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "layout": "NHWC"}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "the model") -> FrameInput:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("dtype") not in DTYPES or data.get("layout") != "NHWC":
                raise TypeError("not a uint8 or float32 NHWC frame input")
            return cls(int(data["width"]), int(data["height"]), str(data.get("channel_order", "RGB")), data["dtype"])
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise ArtifactError(
                f"{source} has malformed frame_input metadata {text[:80]!r} ({exc}); convert the model it was "
                "made from again with a frame size"
            ) from None
        except ArtifactError as exc:
            raise ArtifactError(f"{source} 'frame_input' metadata: {exc}; convert it again") from None
