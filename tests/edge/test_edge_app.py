"""examples/edge_app.py, the short example of embedding the stream, runs: a video's frames in order, one line
each, the summary on stderr (its folder of images is run by tests/runtime/test_runner.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.edge.media import numbered, write_video

APP = Path(__file__).resolve().parents[2] / "examples" / "edge_app.py"


def test_the_example_classifies_a_video_frame_by_frame(tiny_onnx, tmp_path) -> None:
    pytest.importorskip("cv2")
    clip = write_video(tmp_path / "clip.avi", [numbered(i) for i in range(9)])
    run = subprocess.run(
        [sys.executable, str(APP), str(tiny_onnx), str(clip), "--topk", "2", "--batch", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(i) for i in range(9)]
    assert all(line.count("%") == 2 for line in lines)
    assert f"classified 9 of 9 frames of video {clip}" in run.stderr and "ended: the source ended" in run.stderr
    missing = subprocess.run(
        [sys.executable, str(APP), str(tiny_onnx), str(tmp_path / "none.mp4")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: source") and "Traceback" not in missing.stderr
