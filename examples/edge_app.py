"""An edge application: classify what a camera, a video, a stream or a folder of images shows, as it comes.

    python examples/edge_app.py MODEL SOURCE [--topk 3] [--batch 8]

MODEL is a TensorRT engine (.engine, with its .engine.json), an ONNX (.onnx) or a checkpoint (.pt).
SOURCE is a folder or an image, a video file, a camera (0, /dev/video0), an rtsp:// or http:// URL,
or a GStreamer pipeline (a Jetson's CSI camera). Decoding and preparing the next batch run on their
own threads while the current batch infers; a camera's frames that come while inference is busy are
dropped, so each result is of a frame as new as can be. Ctrl-C stops it; the summary goes to stderr.
Images need Pillow only; videos, cameras and streams need OpenCV (resnet-deploy[video]).
"""

from __future__ import annotations

import argparse
import sys

from resnet_deploy.edge.stream import FrameStream, stream
from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.messages import Printed
from resnet_deploy.runtime import Runner


class Stderr(Printed):
    """Where the loop's words go (an image that does not decode, a camera that dropped): stderr."""

    def say(self, message: str = "") -> None:
        print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("source")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    frames: FrameStream | None = None
    code = 0
    try:
        with (
            Runner.load(args.model) as runner,
            stream(runner, args.source, topk=args.topk, batch=args.batch, out=Stderr()) as frames,
        ):
            for result in frames:  # in order; act on each here: raise an alarm, count, log
                ranked = ", ".join(f"{p.label} {p.score:.1%}" for p in result.top)
                print(f"{result.name or result.index}: {ranked}", flush=True)
    except KeyboardInterrupt:  # Ctrl-C: leaving the blocks stopped the threads and released the camera
        code = 130
    except ResnetDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if frames is not None:
        print(frames.summary().text(), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
