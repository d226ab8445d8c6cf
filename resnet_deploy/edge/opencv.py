"""OpenCV, imported where a video, a camera or a stream is opened, never with the package.

``opencv-python-headless`` comes with the ``video`` extra. On a Jetson, JetPack's own OpenCV (built
with GStreamer, which the CSI camera needs) is used instead: a venv made with
``--system-site-packages`` sees it, and the extra is left out there.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

from resnet_deploy.errors import MissingDependencyError

INSTALL = 'pip install "resnet-deploy[video]"'


def opencv(needed_for: str = "reading videos, cameras and streams") -> ModuleType:
    """The ``cv2`` module; one line naming the extra when it is not installed."""
    try:
        return importlib.import_module("cv2")
    except ImportError:
        raise MissingDependencyError(
            f"{needed_for} needs OpenCV, which is not installed: {INSTALL} "
            "(on a Jetson, JetPack's OpenCV instead: see the classify page of the docs)"
        ) from None


@functools.cache
def has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (pip's wheels are not; JetPack's is)."""
    for line in opencv().getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False
