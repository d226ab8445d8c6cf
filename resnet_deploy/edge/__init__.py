"""The edge application loop: frames from a camera, a video, a stream or image files, classified as
they arrive.

- :mod:`~resnet_deploy.edge.sources`: what SOURCE names (an image, a folder, a video file, a camera, an
  RTSP/HTTP URL, a GStreamer pipeline) and the frames it yields;
- :mod:`~resnet_deploy.edge.stream`: the pipelined loop, ``stream(runner, source)`` (``runner.stream(source)``):
  decoding on one thread, the next batch prepared while the current one infers, results in order;
- :mod:`~resnet_deploy.edge.annotate`: the classified frames, labelled, written as a video;
- :mod:`~resnet_deploy.edge.summary`: frames/s, latency percentiles and what was dropped.

Image files need Pillow only; everything else needs OpenCV (``pip install "resnet-deploy[video]"``),
imported when a video, camera or stream is first opened.
"""

from __future__ import annotations

from resnet_deploy._lazy import lazy_attributes

_EXPORTS = {
    **dict.fromkeys(("FrameResult", "FrameStream"), "resnet_deploy.edge.stream"),
    **dict.fromkeys(("Frame", "SourceSpec", "open_source", "parse_source"), "resnet_deploy.edge.sources"),
    "StreamSummary": "resnet_deploy.edge.summary",
    "AnnotatedVideo": "resnet_deploy.edge.annotate",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
