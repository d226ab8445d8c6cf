"""``resnet-deploy classify``: a table for images, a JSON line per frame otherwise, the summary at the end;
every refusal one line; Ctrl-C on a live stream a clean end with the summary and exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from resnet_deploy.runtime import Runner
from tests.cli_helpers import assert_one_line_error, invoke
from tests.edge.media import decode_video, mjpeg_server, numbered, write_video

ROOT = Path(__file__).resolve().parents[2]
cv2 = pytest.importorskip("cv2")


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_video(tmp_path / "clip.avi", [numbered(i) for i in range(10)], fps=20)


def test_images_are_a_table_and_the_one_that_does_not_decode_a_warning(tiny_onnx, tmp_path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(numbered(i)[:, :, ::-1]).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    result = invoke("classify", str(tiny_onnx), str(folder), "--topk", "2", "--backend", "onnxruntime")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"reading images in {folder} (4 files) with tiny.onnx on onnxruntime, batch 1, top-2")
    assert lines[1].split() == ["image", "top-1", "score", "next", "best"]
    with Runner.load(tiny_onnx, backend="onnxruntime") as runner:
        for i, row in enumerate(lines[2:5]):
            best, second = runner.classify([numbered(i)[:, :, ::-1]], topk=2)[0]
            assert row.split() == [
                str(folder / f"{i}.png"),
                best.label,
                f"{best.score:.1%}",
                second.label,
                f"{second.score:.1%}",
            ]
    assert lines[5].startswith(f"classified 3 of 4 images in {folder} in ")
    assert lines[6] == "skipped 0, dropped 0, corrupt 1; ended: the source ended" and len(lines) == 7
    assert result.stderr.strip() == f"warning: {folder / 'broken.jpg'}: skipped, not a readable image"


def test_a_video_is_one_json_line_per_frame_and_the_summary_goes_to_stderr(tiny_onnx, clip) -> None:
    result = invoke(
        "classify", str(tiny_onnx), str(clip), "--every", "2", "--max-frames", "4", "--backend", "onnxruntime"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 2, 4, 6]
    assert [line["timestamp"] for line in lines] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert all(len(line["top"]) == 5 and line["latency_ms"] > 0 and "file" not in line for line in lines)
    decoded = decode_video(clip)
    with Runner.load(tiny_onnx, backend="onnxruntime") as runner:
        for line in lines:
            best = runner.classify([decoded[line["index"]][:, :, ::-1]])[0][0]
            assert line["top"][0]["index"] == best.index and line["top"][0]["score"] == pytest.approx(best.score, 1e-5)
    assert "classified 4 of 7 frames of video" in result.stderr
    assert "skipped 3 (every 2), dropped 0, corrupt 0; ended: --max-frames reached" in result.stderr
    with_json = invoke("classify", str(tiny_onnx), str(clip), "--json", "--max-frames", "2", "--backend", "onnxruntime")
    last = json.loads(with_json.stdout.splitlines()[-1])
    assert last["ok"] and not last["interrupted"] and last["summary"]["classified"] == 2
    assert last["summary"]["ended"] == "max-frames" and last["model"] == str(tiny_onnx)


def test_the_labelled_video_and_never_over_a_file_without_overwrite(tiny_onnx, clip, tmp_path) -> None:
    out = tmp_path / "labelled.mp4"
    dry = invoke("classify", str(tiny_onnx), str(clip), "-o", str(out), "--dry-run")
    assert dry.exit_code == 0 and f"writes {out}  (annotated video)" in dry.stderr and not out.exists()
    first = invoke("classify", str(tiny_onnx), str(clip), "-o", str(out), "--backend", "onnxruntime")
    assert first.exit_code == 0, first.output
    assert len(decode_video(out)) == 10 and f"labelled video: {out} (10 frames classified" in first.stderr
    again = invoke("classify", str(tiny_onnx), str(clip), "-o", str(out))
    assert_one_line_error(again, "pass --overwrite to replace it")
    replaced = invoke("classify", str(tiny_onnx), str(clip), "-o", str(out), "--overwrite", "--max-frames", "3")
    assert replaced.exit_code == 0 and len(decode_video(out)) == 3
    images = invoke("classify", str(tiny_onnx), str(tmp_path / "clip.avi"), "-o", str(tmp_path / "x.mkv"))
    assert images.exit_code == 0  # a video to a .mkv is fine
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    refused = invoke("classify", str(tiny_onnx), str(tmp_path / "a.png"), "-o", str(tmp_path / "y.mp4"))
    assert_one_line_error(refused, f"{tmp_path / 'a.png'} is an image: leave out -o")


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["MODEL", "nope.mp4"], "source nope.mp4 not found: give an image, a folder of images, a video file", 2),
        (["missing.onnx", "CLIP"], "model missing.onnx not found (MODEL)", 2),
        (["MODEL", "CLIP", "--batch", "0"], "0 is not in the range x>=1", 2),
        (["MODEL", "/dev/video99"], "cannot open camera /dev/video99: no such camera", 2),
        (["MODEL", "http://127.0.0.1:9/none.mjpg"], "cannot open stream http://127.0.0.1:9/none.mjpg", 2),
        (["MODEL", "videotestsrc ! appsink"], "cannot open the GStreamer pipeline: this OpenCV is built without", 2),
    ],
)
def test_bad_input_is_one_line(tiny_onnx, clip, args, needle, code) -> None:
    if "GStreamer" in needle and "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    names = {"MODEL": str(tiny_onnx), "CLIP": str(clip)}
    result = invoke("classify", *(names.get(a, a) for a in args))
    assert_one_line_error(result, needle, code)


def test_without_opencv_a_video_needs_the_video_extra(tiny_onnx, clip, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    result = invoke("classify", str(tiny_onnx), str(clip))
    assert_one_line_error(result, 'needs OpenCV, which is not installed: pip install "resnet-deploy[video]"')


def test_a_lost_stream_ends_with_the_summary_and_one_error_line(tiny_onnx) -> None:
    with mjpeg_server([numbered(i) for i in range(8)], fps=100) as url:
        result = invoke("classify", str(tiny_onnx), url, "--reconnects", "0", "--backend", "onnxruntime")
    indices = [json.loads(line)["index"] for line in result.stdout.splitlines()]
    assert indices and indices[-1] == 7 and indices == sorted(set(indices))
    assert "ended: the source was lost" in result.stderr
    assert_one_line_error(result, "dropped and did not come back after 0 reconnect tries; check the camera")


def _interruptible() -> None:
    """In the child before exec: SIGINT delivered and handled by default (a process inherits an ignored or
    blocked SIGINT, and Python then leaves it so)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_a_live_stream_ends_cleanly_with_the_summary(tiny_onnx) -> None:
    with mjpeg_server([numbered(i) for i in range(50)], fps=30, forever=True) as url:
        command = [sys.executable, "-m", "resnet_deploy", "classify", str(tiny_onnx), url, "--backend", "onnxruntime"]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ},
            preexec_fn=_interruptible,  # as a terminal starts it, whatever this process did to SIGINT
        )
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]  # three frames classified: the loop runs
        process.send_signal(signal.SIGINT)
        try:
            rest, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, stderr = process.communicate()
            raise AssertionError(f"classify did not end within 60 s of Ctrl-C; its stderr:\n{stderr[-3000:]}") from None
    assert process.returncode == 130, stderr
    frames = [json.loads(line) for line in [*lines, *rest.splitlines()]]
    assert len(frames) >= 3 and [f["index"] for f in frames] == sorted({f["index"] for f in frames})
    assert "Traceback" not in stderr and stderr.rstrip().endswith("interrupted")
    summary = [line for line in stderr.splitlines() if line.startswith("classified ")]
    assert len(summary) == 1 and f"classified {len(frames)} of " in summary[0] and "frames/s" in summary[0]
    assert "ended: interrupted" in stderr


def test_the_command_line_defaults_are_the_jobs() -> None:
    from resnet_deploy.cli import main
    from resnet_deploy.pipeline import ClassifyJob

    given = {p.name: p.default for p in main.commands["classify"].params if p.name}
    job = ClassifyJob()
    assert (given["topk"], given["batch"], given["every"], given["max_frames"]) == (5, 1, 1, None)
    assert (job.topk, job.batch, job.every, job.max_frames) == (5, 1, 1, None)
    assert (given["reconnects"], given["backend"]) == (job.reconnects, job.backend) == (3, "auto")
