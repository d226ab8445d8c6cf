"""Classify a folder of images with any resnet-deploy artifact: the runner as an application embeds it.

    python examples/edge_app.py MODEL IMAGE_DIR [--topk 3] [--batch 8]

MODEL is a TensorRT engine (.engine, with its .engine.json), an ONNX (.onnx) or a checkpoint (.pt).
Only numpy, Pillow and the artifact's own runtime are imported: no torch for an engine or an ONNX.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.runtime import Runner

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("images", type=Path)
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from PIL import Image, UnidentifiedImageError

    if not args.images.is_dir():
        print(f"error: {args.images} is not a folder of images", file=sys.stderr)
        return 2
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in EXTENSIONS)
    if not files:
        print(f"error: no images ({', '.join(sorted(EXTENSIONS))}) under {args.images}", file=sys.stderr)
        return 2
    try:
        with Runner.load(args.model) as runner:
            for start in range(0, len(files), args.batch):
                chunk, images = [], []
                for path in files[start : start + args.batch]:
                    try:
                        with Image.open(path) as image:
                            images.append(image.convert("RGB"))
                        chunk.append(path)
                    except (OSError, UnidentifiedImageError):
                        print(f"{path}: skipped, not a readable image", file=sys.stderr)
                if not images:
                    continue
                for path, top in zip(chunk, runner.classify(images, topk=args.topk), strict=True):
                    ranked = ", ".join(f"{p.label} {p.score:.1%}" for p in top)
                    print(f"{path}: {ranked}")
    except ResnetDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
