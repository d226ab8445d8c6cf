"""classify's frames/s on a 720p video against the runner's bare inference, for a model and its fused twin.

    python scripts/bench_classify.py [--model MODEL] [--fused MODEL | --no-fused] [--batch 1] [--frames 120]
                                     [--size 1280x720] [--rounds 3] [--backend auto] [--threads N]
                                     [--out scripts/results] [--no-save]
    python scripts/bench_classify.py --quick --model tiny.onnx --no-save      # the script checked in seconds
    python scripts/bench_classify.py --render scripts/results/classify-resnet50-avx2.json

Without ``--model``, makes a random-weight ResNet-50 (seed 0) with ``resnet-deploy export --depth 50``
and its fused twin with ``resnet-deploy convert --frame-size WxH --channel-order bgr`` (the
preprocessing inside the graph, taking the video's BGR frames as they are) in a temporary directory;
``--fused MODEL`` names a fused model instead, ``--no-fused`` measures the model alone. Generates a video
of ``--frames`` frames at ``--size`` (30 fps, MPEG-4 Part 2 in .mp4, OpenCV's writer; a smooth random
colour field panning across the frame, with sensor noise), then, in this one process, for each model
in alternating rounds (the median kept):

- infer: the runner's bare ``infer`` on batches of ``--batch`` frames prepared beforehand from the
  video's decoded frames: frames/s, the ceiling;
- stream: ``stream(runner, video, batch=--batch)`` over the whole video, decoding and preparing on
  their own threads: frames/s from its first results to its last (the pipeline filled), and latency;
- the ratio stream / infer. The goal: at least 0.9 on the fused model (decoding and preparation
  hidden behind inference); the model alone is reported beside it.

And the CPU time (the calling thread's, ``time.thread_time``) and wall time per frame of the steps the
stream hides: OpenCV decoding a frame, and ``runner.preprocess`` of one decoded BGR frame for each
model: the PIL path (resize, crop and normalise on the CPU) and the fused path (the frame passed as
it is). The goal: the fused path costs less.

``--quick``: a 320x240 video of 24 frames and one round. Writes OUT/classify-<arch>-<kind>.{json,txt},
<kind> being ``machine.cpu_kind`` (amx, avx512-vnni, avx-vnni, avx2, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
RATIO_GOAL = 0.9
FPS = 30


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 1280x720)") from None
    if min(size) < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 16x16")
    return size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="the model (default: a random-weight ResNet-50, exported)")
    parser.add_argument("--fused", type=Path, help="a model with its preprocessing inside the graph (the video's size)")
    parser.add_argument("--no-fused", action="store_true", help="measure the model alone, no fused twin")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=120, help="frames of the generated video")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="the video's WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=3, help="alternating infer/stream rounds (the median kept)")
    parser.add_argument("--backend", default="auto", help="runtime of ONNX models: auto, onnxruntime, openvino")
    parser.add_argument("--threads", type=int, default=None, help="the runtime's CPU threads (default: its own)")
    parser.add_argument("--quick", action="store_true", help="a 320x240 video of 24 frames, one round")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true", help="print the report only")
    parser.add_argument("--render", type=Path, help="only rewrite the text report of a saved JSON result")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.frames, args.rounds = (320, 240), min(args.frames, 24), 1
    if args.batch < 1 or args.frames < args.batch or args.rounds < 1:
        parser.error("--batch, --frames and --rounds must be at least 1, and --frames at least --batch")
    return args


# ---------------------------------------------------------------- the model and the video


def export_resnet50(work: Path) -> Path:
    """A random-weight ResNet-50 ONNX, made by the CLI as a user would."""
    path = work / "r50.onnx"
    command = [sys.executable, "-m", "resnet_deploy", "export", "--depth", "50", "-o", str(path)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    return path


def fuse(model: Path, size: tuple[int, int], work: Path) -> Path:
    """``model`` with its preprocessing inside, for BGR frames of ``size``, made by the CLI as a user would."""
    path = work / f"{model.stem}.frames{size[0]}x{size[1]}.onnx"
    frame = f"{size[0]}x{size[1]}"
    command = [sys.executable, "-m", "resnet_deploy", "convert", str(model), "--frame-size", frame]
    subprocess.run([*command, "--channel-order", "bgr", "-o", str(path)], check=True, stdout=subprocess.DEVNULL)
    return path


def camera_like_frames(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``count`` BGR frames: a smooth random colour field twice the frame's size, panned a few pixels a frame,
    with a little sensor noise (so every frame differs, as a camera's do)."""
    import cv2

    width, height = size
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    field = cv2.resize(grid, (2 * width, 2 * height), interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(count):
        x, y = (i * 7) % width, (i * 3) % height
        frame = field[y : y + height, x : x + width].astype(np.int16)
        frame += rng.integers(-6, 7, frame.shape, dtype=np.int16)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path} (mp4v)")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def decode_all(path: Path) -> tuple[list[np.ndarray], list[float], list[float]]:
    """Every frame of ``path``, and the CPU and wall ms each took to decode (OpenCV, BGR)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames, cpu, wall = [], [], []
    while True:
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        ok, frame = capture.read()
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        if not ok:
            break
        frames.append(frame)
        cpu.append((c1 - c0) / 1e6)
        wall.append((w1 - w0) / 1e6)
    capture.release()
    return frames, cpu, wall


# ---------------------------------------------------------------- the measurements


def preprocess_cost(runner: Any, frames: list[np.ndarray]) -> dict[str, float]:
    """CPU and wall ms per frame of ``runner.preprocess`` on each decoded frame alone (BGR), after one warm-up."""
    runner.preprocess([frames[0]], channel_order="BGR")
    cpu, wall = [], []
    for frame in frames:
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        runner.preprocess([frame], channel_order="BGR")
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        wall.append((time.perf_counter_ns() - w0) / 1e6)
    return {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall), "frames": len(frames)}


def infer_rate(runner: Any, batches: list[Any], frames: int) -> float:
    """Frames/s of the bare ``infer`` over batches prepared beforehand."""
    start = time.perf_counter()
    for batch in batches:
        runner.infer(batch)
    return frames / (time.perf_counter() - start)


def stream_rate(runner: Any, video: Path, batch: int) -> dict[str, Any]:
    """Frames/s of the stream over the whole video, from its first result to its last, and its summary."""
    from resnet_deploy.edge.stream import stream

    times = []
    with stream(runner, video, batch=batch, topk=1) as frames:
        for _ in frames:
            times.append(time.perf_counter())
    summary = frames.summary()
    # results come a batch at a time: from the first batch's results to the last's, (n - batch) frames
    fps = (len(times) - batch) / (times[-1] - times[0]) if len(times) > batch and times[-1] > times[0] else 0.0
    return {"fps": fps, "classified": summary.classified, "dropped": summary.dropped, **_latency(summary)}


def _latency(summary: Any) -> dict[str, Any]:
    return {"latency_ms": {f"p{p}": summary.latency_ms(p) for p in (50, 90, 99)}}


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """The stream's frames/s against bare inference (>= 0.9) on the fused model (the plain one when there is
    none), and the fused path's preprocessing CPU against the PIL path's."""
    forms = {m["path"]: m for m in result["models"]}
    judged = forms.get("fused") or forms["pil"]
    fused, pil = forms.get("fused"), forms["pil"]
    return {
        "ratio_on": judged["path"],
        "ratio": judged["ratio"],
        "ratio_goal": RATIO_GOAL,
        "ratio_met": judged["ratio"] >= RATIO_GOAL,
        "fused_cheaper": None if fused is None else fused["preprocess"]["cpu_ms"] < pil["preprocess"]["cpu_ms"],
    }


def machine(runner: Any) -> dict[str, Any]:
    import cv2
    import PIL

    from resnet_deploy.runtime.machine import cpu_flags, cpu_name

    versions: dict[str, Any] = {"numpy": np.__version__, "pillow": PIL.__version__, "opencv": cv2.__version__}
    for name in ("onnxruntime", "openvino"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {
        "cpu": cpu_name(),
        "isa": cpu_flags(),
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **versions,
        "runtime": runner.describe(),
    }


def describe_model(path: str, model: Path, runner: Any) -> dict[str, Any]:
    frame = runner.metadata.frame_input
    return {
        "path": path,  # "pil": preprocessing on the CPU; "fused": inside the graph
        "name": model.name,
        "architecture": runner.metadata.config.name,
        "frame_input": None if frame is None else frame.describe(),
        "runtime": runner.describe(),
    }


def measure(args: argparse.Namespace, models: dict[str, Path], work: Path) -> dict[str, Any]:
    """Each model's bare infer and stream rates in alternating rounds, and its preprocessing per frame."""
    from contextlib import ExitStack

    from resnet_deploy.runtime import Runner

    options = {"threads": args.threads} if args.threads else {}
    video = write_video(work / "bench.mp4", camera_like_frames(args.frames, args.size))
    frames, decode_cpu, decode_wall = decode_all(video)
    usable = len(frames) - len(frames) % args.batch
    with ExitStack() as stack:
        runners = {
            path: stack.enter_context(Runner.load(m, backend=args.backend, **options)) for path, m in models.items()
        }
        if "fused" in runners and runners["fused"].metadata.frame_input is None:
            raise SystemExit(f"--fused {models['fused']} has no preprocessing inside (no frame_input in its metadata)")
        prepared = {
            path: [
                runner.preprocess(frames[i : i + args.batch], channel_order="BGR") for i in range(0, usable, args.batch)
            ]
            for path, runner in runners.items()
        }
        rounds: dict[str, dict[str, list[Any]]] = {path: {"infer": [], "stream": []} for path in runners}
        for path, runner in runners.items():  # warm-up: the runtime's first calls, the threads, the first decodes
            runner.infer(prepared[path][0])
            stream_rate(runner, video, args.batch)
        for _ in range(args.rounds):  # alternating: load that comes and goes hits every measurement alike
            for path, runner in runners.items():
                rounds[path]["infer"].append(infer_rate(runner, prepared[path], usable))
                rounds[path]["stream"].append(stream_rate(runner, video, args.batch))
        measured = []
        for path, runner in runners.items():
            infer = statistics.median(rounds[path]["infer"])
            streams = sorted(rounds[path]["stream"], key=lambda r: r["fps"])
            middle = streams[len(streams) // 2]
            measured.append(
                {
                    **describe_model(path, models[path], runner),
                    "infer": {"fps": infer, "rounds": rounds[path]["infer"]},
                    "stream": {**middle, "rounds": [r["fps"] for r in rounds[path]["stream"]]},
                    "ratio": middle["fps"] / infer if infer > 0 else 0.0,
                    "preprocess": preprocess_cost(runner, frames),
                }
            )
        host = machine(runners["pil"])
    result: dict[str, Any] = {
        "machine": host,
        "model": "random-weight ResNet-50 (resnet-deploy export --depth 50)" if args.model is None else str(args.model),
        "video": {
            "size": list(args.size),
            "frames": len(frames),
            "fps": FPS,
            "codec": "mp4v",
            "decode_cpu_ms": statistics.median(decode_cpu),
            "decode_wall_ms": statistics.median(decode_wall),
        },
        "batch": args.batch,
        "rounds": args.rounds,
        "models": measured,
    }
    result["goals"] = goals(result)
    return result


# ---------------------------------------------------------------- the report


def render(result: dict[str, Any]) -> str:
    from resnet_deploy.runtime.machine import describe_isa

    m, v, g = result["machine"], result["video"], result["goals"]
    first = result["models"][0]
    lines = [
        f"{first['architecture']} on {m['cpu']} ({describe_isa(m['isa'])}), {m['cores']} cores; "
        f"{first['runtime'].get('backend')} (onnxruntime {m.get('onnxruntime')}, openvino {m.get('openvino')}), "
        f"OpenCV {m['opencv']}, Pillow {m['pillow']}"
        + (f"; load average at start {m['load_average'][0]:.2f}" if m.get("load_average") else ""),
        f"Video: {v['size'][0]}x{v['size'][1]}, {v['frames']} frames at {v['fps']} fps ({v['codec']}); batch "
        f"{result['batch']}; median of {result['rounds']} alternating round(s)",
        "",
        f"{'model':<36} {'bare infer':>11} {'stream':>11} {'ratio':>6} {'latency p50/p99':>17}  preprocess per frame",
    ]
    for model in result["models"]:
        label = f"{model['name']} ({'fused' if model['path'] == 'fused' else 'PIL path'})"
        latency = model["stream"]["latency_ms"]
        lines.append(
            f"{label:<36} {model['infer']['fps']:>7.1f} f/s {model['stream']['fps']:>7.1f} f/s {model['ratio']:>6.2f} "
            f"{_ms(latency['p50']):>8}/{_ms(latency['p99'])}  CPU {model['preprocess']['cpu_ms']:.2f} ms, "
            f"wall {model['preprocess']['wall_ms']:.2f} ms"
        )
    lines += [
        f"decode (OpenCV), per frame: CPU {v['decode_cpu_ms']:.2f} ms, wall {v['decode_wall_ms']:.2f} ms "
        "(CPU: the calling thread's time)",
        "",
        f"Goal: classify's frames/s on the {'fused model' if g['ratio_on'] == 'fused' else 'model (PIL path)'} "
        f"at least {g['ratio_goal']:g}x its bare infer: "
        f"{g['ratio']:.2f}x, " + ("met" if g["ratio_met"] else "NOT met"),
    ]
    if g["fused_cheaper"] is None:
        lines.append("Goal: the fused path's preprocessing cheaper than the PIL path's: not measured (no fused model)")
    else:
        pil, fused = (next(x for x in result["models"] if x["path"] == p) for p in ("pil", "fused"))
        cpu = f"CPU {fused['preprocess']['cpu_ms']:.2f} ms vs {pil['preprocess']['cpu_ms']:.2f} ms a frame"
        verdict = "met" if g["fused_cheaper"] else "NOT met"
        lines.append(f"Goal: the fused path's preprocessing cheaper than the PIL path's: {cpu}, {verdict}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    from resnet_deploy.runtime.machine import cpu_kind

    args = parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".txt").write_text(render(result) + "\n")
        print(render(result))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            print("exporting a random-weight ResNet-50 ...", file=sys.stderr)
            model = export_resnet50(work)
        models = {"pil": model}
        if args.fused is not None:
            models["fused"] = args.fused
        elif not args.no_fused and args.model is None:
            print(f"converting it to take {args.size[0]}x{args.size[1]} BGR frames ...", file=sys.stderr)
            models["fused"] = fuse(model, args.size, work)
        print(
            f"measuring {', '.join(m.name for m in models.values())} on a {args.size[0]}x{args.size[1]} video ...",
            file=sys.stderr,
        )
        result = measure(args, models, work)
    text = render(result)
    print(text)
    if not args.no_save:
        from resnet_deploy._io import write_report

        stem = result["models"][0]["architecture"]
        written = write_report(args.out / f"classify-{stem}-{cpu_kind(result['machine']['isa'])}", result, text)
        print(f"wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
