"""What the Triton ensemble's preprocessing step costs: ``preprocess_encoded`` (decode a JPEG, fit it by the
model's recorded policy, normalise), the function the generated Python-backend ``model.py`` calls, per image.

    python scripts/bench_triton_preprocess.py [--images 64] [--rounds 5] [--out scripts/results] [--no-save]

For a ResNet-50 (ImageNet: shorter side to 256, centre crop 224) and a ResNet-20 (CIFAR: straight to
32x32), on 640x480 and 1280x720 JPEGs (quality 90, a smooth random colour field with noise), one image
per call and eight per call: milliseconds per image, the median of ``--rounds`` rounds, in this one
process on one thread (as one Triton Python-backend instance runs it). Writes
OUT/triton-preprocess-<kind>.{json,txt}, <kind> being ``machine.cpu_kind``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
SIZES = ((640, 480), (1280, 720))
BATCHES = (1, 8)


def metadata(depth: int) -> Any:
    from resnet_deploy.artifacts.model_spec import model_config
    from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata

    config = model_config(depth)
    imagenet = config.family == "imagenet"
    mean = (0.485, 0.456, 0.406) if imagenet else (0.4914, 0.4822, 0.4465)
    std = (0.229, 0.224, 0.225) if imagenet else (0.247, 0.243, 0.261)
    return ArtifactMetadata(config=config, mean=mean, std=std)


def jpegs(size: tuple[int, int], count: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(size[0])
    width, height = size
    out = []
    for i in range(count):
        y, x = np.mgrid[0:height, 0:width]
        field = np.stack([np.sin((x + 7 * i) / 41.0 + c) * np.cos(y / 37.0 - c) for c in (0.0, 2.0, 4.0)], axis=-1)
        pixels = np.clip(127 + 100 * field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def time_per_image(blobs: list[bytes], meta: Any, batch: int, rounds: int) -> float:
    from resnet_deploy.serve.triton_preprocess import preprocess_encoded

    preprocess_encoded(blobs[:batch], meta)  # warm-up: Pillow's decoders loaded
    medians = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(blobs) - batch + 1, batch):
            preprocess_encoded(blobs[i : i + batch], meta)
        medians.append((time.perf_counter() - start) / (len(blobs) // batch * batch))
    return statistics.median(medians) * 1000


def measure(images: int, rounds: int) -> dict[str, Any]:
    import PIL

    from resnet_deploy.runtime.machine import describe_host

    rows = []
    for depth in (50, 20):
        meta = metadata(depth)
        for size in SIZES:
            blobs = jpegs(size, images)
            for batch in BATCHES:
                ms = time_per_image(blobs, meta, batch, rounds)
                rows.append({"model": f"resnet{depth}", "input": meta.config.input_size, "jpeg": list(size),
                             "batch": batch, "ms_per_image": ms})  # fmt: skip
    return {
        "machine": {
            **describe_host(),
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "images": images,
        "rounds": rounds,
        "rows": rows,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"{m['cpu']} ({m['instruction_sets']}), {m['cores']} cores, one thread; Python {m['python']}, "
        f"Pillow {m['pillow']}, numpy {m['numpy']}; {result['images']} JPEGs per size, median of "
        f"{result['rounds']} rounds",
        "",
        f"{'model':<10} {'input':>6} {'JPEG':>10} {'batch':>6} {'ms/image':>9}",
    ]
    for r in result["rows"]:
        jpeg = f"{r['jpeg'][0]}x{r['jpeg'][1]}"
        lines.append(f"{r['model']:<10} {r['input']:>6} {jpeg:>10} {r['batch']:>6} {r['ms_per_image']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.images < max(BATCHES) or args.rounds < 1:
        parser.error(f"--images must be at least {max(BATCHES)} (the largest batch) and --rounds at least 1")
    result = measure(args.images, args.rounds)
    text = render(result)
    print(text)
    if not args.no_save:
        from resnet_deploy._io import write_report
        from resnet_deploy.runtime.machine import cpu_kind

        for path in write_report(args.out / f"triton-preprocess-{cpu_kind(result['machine']['isa'])}", result, text):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
