"""The labelled video: one frame per classified frame (a live source's by their timestamps), the top-1 label
drawn, at the source's frame rate; written beside its path and renamed there, never half-written."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from resnet_deploy.edge.annotate import AnnotatedVideo, draw_label
from resnet_deploy.edge.stream import FrameResult, stream
from resnet_deploy.errors import OutputPathError
from resnet_deploy.runtime import Prediction
from tests.edge.media import decode_video, number_of, numbered, write_video

cv2 = pytest.importorskip("cv2")


def _result(n: int, timestamp: float | None = None, label: str = "cat") -> FrameResult:
    return FrameResult(n, timestamp, [Prediction(3, label, 0.875)], 1.0, frame=numbered(n))


def test_the_classified_frames_are_written_with_their_label_at_the_source_rate(runner, tmp_path) -> None:
    path = write_video(tmp_path / "in.avi", [numbered(i) for i in range(20)], fps=20)
    video = AnnotatedVideo(tmp_path / "out.mp4", 20 / 2)
    with stream(runner, path, every=2) as frames:
        for result in frames:
            video.write(result)
    assert video.commit() == tmp_path / "out.mp4"
    written = decode_video(tmp_path / "out.mp4")
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10) and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 10
    capture.release()
    assert len(written) == 10 == video.frames == video.written and written[0].shape == (48, 64, 3)
    source = decode_video(path)
    for i, frame in enumerate(written):
        band = np.abs(frame[:12, :40].astype(int) - source[2 * i][:12, :40].astype(int)).mean()
        rest = np.abs(frame[20:].astype(int) - source[2 * i][20:].astype(int)).mean()
        assert band > 20 and rest < 6  # the label drawn over the top left; the rest the frame it labels
    assert sorted(os.listdir(tmp_path)) == ["in.avi", "out.mp4"]  # no temporary file left


def test_the_label_is_drawn_in_white_on_black() -> None:
    frame = np.full((720, 1280, 3), 128, np.uint8)
    drawn = draw_label(frame, "golden retriever 97%")
    assert np.array_equal(frame, np.full((720, 1280, 3), 128, np.uint8))  # a copy is drawn on
    band = drawn[:40, :300]
    assert (band == 0).mean() > 0.5 and (band == 255).any() and np.array_equal(drawn[100:], frame[100:])


def test_a_live_source_is_placed_on_its_timeline(tmp_path) -> None:
    video = AnnotatedVideo(tmp_path / "live.avi", 30, timeline=True)
    for n, when in enumerate((100.0, 100.1, 100.2, 100.2 + 60)):  # then a minute with no frame
        video.write(_result(n, when))
    video.commit()
    frames = decode_video(tmp_path / "live.avi")
    # 0.1 s apart at 30 fps: each frame held 3 slots; the minute's gap filled for 10 s at most (300 slots)
    assert video.frames == 4 and len(frames) == video.written == 3 + 3 + (1 + 300) + 1
    assert [number_of(f) for f in frames[:8]] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert number_of(frames[-1]) == 3


def test_frames_of_another_size_are_resized_to_the_first(tmp_path) -> None:
    video = AnnotatedVideo(tmp_path / "out.avi", 30)
    video.write(_result(1))
    video.write(dataclasses.replace(_result(2), frame=cv2.resize(numbered(2), (128, 96))))
    video.commit()
    assert [f.shape for f in decode_video(tmp_path / "out.avi")] == [(48, 64, 3)] * 2


def test_a_discarded_video_leaves_nothing_and_an_unused_one_writes_nothing(tmp_path) -> None:
    (tmp_path / "out.mp4").write_bytes(b"the user's")
    video = AnnotatedVideo(tmp_path / "out.mp4", 30)
    for n in range(5):
        video.write(_result(n))
    assert len(os.listdir(tmp_path)) == 3  # out.mp4, the temporary and the writer's file beside it
    video.discard()
    assert os.listdir(tmp_path) == ["out.mp4"] and (tmp_path / "out.mp4").read_bytes() == b"the user's"
    assert AnnotatedVideo(tmp_path / "none.mp4", 30).commit() is None and os.listdir(tmp_path) == ["out.mp4"]


def test_paths_it_cannot_write_are_refused_before_any_frame(tmp_path) -> None:
    with pytest.raises(OutputPathError, match=r"an annotated video ends in \.mp4, \.mkv, \.avi, not out\.gif"):
        AnnotatedVideo(tmp_path / "out.gif", 30)
    with pytest.raises(OutputPathError, match="does not exist; create it first"):
        AnnotatedVideo(tmp_path / "missing" / "out.mp4", 30)
