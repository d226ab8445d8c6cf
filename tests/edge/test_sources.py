"""SOURCE parsed into what it names; frames read from image folders, video files and cameras (stand-ins), with
undecodable frames skipped and named, and a dropped live source reopened a bounded number of times."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from PIL import Image

from resnet_deploy.edge.sources import SourceSpec, open_source, parse_source, redact
from resnet_deploy.errors import MissingDependencyError, RunnerError
from resnet_deploy.messages import Recorded
from tests.edge.media import FakeCapture, number_of, write_video


def test_every_kind_of_source_is_told_apart(tmp_path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "frames").mkdir()
    csi = "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! appsink drop=1"
    cases = {
        str(tmp_path / "a.jpg"): ("image", str(tmp_path / "a.jpg"), "any"),
        str(tmp_path / "frames"): ("folder", str(tmp_path / "frames"), "any"),
        str(tmp_path / "clip.mp4"): ("video", str(tmp_path / "clip.mp4"), "any"),
        "0": ("camera", 0, "any"),
        " 2 ": ("camera", 2, "any"),
        "/dev/video1": ("camera", "/dev/video1", "v4l2"),
        "rtsp://cam.local:554/stream1": ("url", "rtsp://cam.local:554/stream1", "any"),
        "HTTP://127.0.0.1:8080/video.mjpg": ("url", "HTTP://127.0.0.1:8080/video.mjpg", "any"),
        csi: ("pipeline", csi, "gstreamer"),
    }
    for text, (kind, target, api) in cases.items():
        assert parse_source(text) == SourceSpec(kind, target, api), text
    assert parse_source(3) == SourceSpec("camera", 3)
    assert parse_source(tmp_path / "a.jpg").kind == "image"
    assert [parse_source(t).is_images for t in (str(tmp_path / "a.jpg"), "0")] == [True, False]
    assert parse_source("rtsp://admin:secret@10.0.0.5/live").describe() == "stream rtsp://admin:***@10.0.0.5/live"
    assert redact("http://host:81/x") == "http://host:81/x"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nope.mp4", "source nope.mp4 not found: give an image, a folder of images, a video file, a camera"),
        ("", "the source is empty"),
        ("/dev/v4l/by-id/usb-cam", "camera /dev/v4l/by-id/usb-cam not found"),
        (-1, "camera index -1 is negative"),
        (True, "a source is text, a path or a camera index"),
    ],
)
def test_a_source_that_names_nothing_is_one_line(source, message) -> None:
    with pytest.raises(RunnerError, match=message) as caught:
        parse_source(source)
    assert "\n" not in str(caught.value) and caught.value.field == "source"


def test_a_folder_yields_its_images_in_order_and_names_the_one_that_does_not_decode(tmp_path) -> None:
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]
    (tmp_path / "sub").mkdir()
    for i, name in enumerate(("a.png", "sub/b.jpg", "c.png")):
        Image.new("RGB", (20, 10), colours[i]).save(tmp_path / name, quality=100)
    (tmp_path / "b2.png").write_bytes(b"not a png")
    out = Recorded()
    source = open_source(tmp_path, out=out)
    frames = list(source.frames())
    assert [f.name for f in frames] == [str(tmp_path / n) for n in ("a.png", "c.png", "sub/b.jpg")]
    assert [f.index for f in frames] == [0, 2, 3]  # b2.png is image 1
    assert all(f.timestamp is None and f.image.shape == (10, 20, 3) and f.image.dtype == np.uint8 for f in frames)
    assert tuple(frames[0].image[0, 0]) == (10, 10, 200)  # BGR, as OpenCV frames are
    assert out.warnings == [f"{tmp_path / 'b2.png'}: skipped, not a readable image"]
    assert (source.counts.frames, source.counts.corrupt, source.counts.skipped) == (4, 1, 0)
    every = open_source(tmp_path).frames(every=2, limit=1)
    assert [f.index for f in every] == [0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunnerError, match=r"folder \S+empty holds no images \(\.jpg, \.png"):
        open_source(tmp_path / "empty")


def test_image_files_need_no_opencv(tmp_path, monkeypatch) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if not installed
    assert len(list(open_source(tmp_path / "a.png").frames())) == 1
    (tmp_path / "clip.avi").write_bytes(b"x")
    with pytest.raises(
        MissingDependencyError, match=r'reading video \S+clip.avi needs OpenCV.*"resnet-deploy\[video\]"'
    ):
        open_source(tmp_path / "clip.avi")


def test_a_video_file_is_read_whole_with_its_media_timestamps(tmp_path) -> None:
    pytest.importorskip("cv2")
    from tests.edge.media import numbered

    path = write_video(tmp_path / "clip.avi", [numbered(i) for i in range(12)], fps=25)
    source = open_source(path)
    assert (source.live, source.fps, source.frame_count) == (False, 25.0, 12)
    frames = list(source.frames(every=3))
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.12, 0.24, 0.36])
    assert (source.counts.frames, source.counts.skipped) == (12, 8)
    assert len(list(open_source(path).frames(limit=5))) == 5


def test_a_frame_that_does_not_decode_is_skipped_and_the_video_goes_on(tmp_path) -> None:
    pytest.importorskip("cv2")
    from tests.edge.media import numbered

    path = write_video(tmp_path / "clip.avi", [numbered(i * 9) for i in range(30)])
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # each frame's JPEG
    assert len(starts) == 30
    damaged = bytearray(data)
    for broken in (10, 20, 21):  # their entropy-coded data zeroed
        damaged[starts[broken] + 150 : starts[broken + 1] - 20] = bytes(starts[broken + 1] - starts[broken] - 170)
    (tmp_path / "damaged.avi").write_bytes(damaged)
    out = Recorded()
    source = open_source(tmp_path / "damaged.avi", out=out)
    frames = list(source.frames())
    assert [f.index for f in frames] == [i for i in range(30) if i not in (10, 20, 21)]
    assert [number_of(f.image) for f in frames] == [f.index * 9 for f in frames]  # each frame is itself
    assert (source.counts.frames, source.counts.corrupt) == (30, 3)
    assert out.warnings == [
        f"video {tmp_path / 'damaged.avi'}: frame 10 did not decode; skipped",
        f"video {tmp_path / 'damaged.avi'}: frames 20-21 did not decode; skipped",
    ]
    (tmp_path / "cut.avi").write_bytes(data[: starts[15] + 100])  # cut inside frame 15
    out = Recorded()
    source = open_source(tmp_path / "cut.avi", out=out)
    assert [f.index for f in source.frames()] == list(range(15))
    assert (source.counts.frames, source.counts.missing) == (15, 15)
    assert out.warnings == [
        f"video {tmp_path / 'cut.avi'} stopped decoding after frame 14 of its 30; the last 15 were not read "
        "(a truncated or damaged file?)"
    ]


def test_a_camera_is_opened_through_the_capture_factory_and_is_live() -> None:
    opened = []

    def factory(target, api):
        opened.append((target, api))
        return FakeCapture(4)

    source = open_source("/dev/video0", capture_factory=factory, reconnects=0)
    assert opened == [("/dev/video0", "v4l2")] and source.live and source.fps == 30.0
    frames = list(source.frames())
    assert [number_of(f.image) for f in frames] == [0, 1, 2, 3] == [f.index for f in frames]
    assert all(f.timestamp is not None and f.timestamp > 1e9 for f in frames)  # wall-clock time
    assert source.counts.lost and source.counts.reconnects == 0
    with pytest.raises(RunnerError, match=r"cannot open camera 1: no such camera, it is in use") as caught:
        open_source("1", capture_factory=lambda target, api: FakeCapture(opened=False))
    assert "\n" not in str(caught.value)
    with pytest.raises(RunnerError, match=r"cannot open stream rtsp://u:\*\*\*@h/x: nothing answered there"):
        open_source("rtsp://u:p@h/x", capture_factory=lambda target, api: None)


def test_a_dropped_live_source_is_reopened_a_bounded_number_of_times() -> None:
    captures = [FakeCapture(5), FakeCapture(opened=False), FakeCapture(3, start=5), FakeCapture(opened=False)]
    opened = []

    def factory(target, api):
        opened.append(target)
        return captures[len(opened) - 1] if len(opened) <= len(captures) else FakeCapture(opened=False)

    out = Recorded()
    source = open_source("rtsp://cam/live", capture_factory=factory, reconnects=2, backoff=0.001, out=out)
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(8)) == [number_of(f.image) for f in frames]
    # 1 open + 2 tries (the second comes back) + 2 tries after the next drop (the count starts again)
    assert len(opened) == 5 and source.counts.reconnects == 1 and source.counts.lost
    assert all(c.released for c in captures)
    assert out.warnings == [
        "stream rtsp://cam/live dropped after frame 4; reconnecting in 0.0 s (try 1 of 2)",
        "stream rtsp://cam/live dropped after frame 4; reconnecting in 0.0 s (try 2 of 2)",
        "stream rtsp://cam/live reconnected",
        "stream rtsp://cam/live dropped after frame 7; reconnecting in 0.0 s (try 1 of 2)",
        "stream rtsp://cam/live dropped after frame 7; reconnecting in 0.0 s (try 2 of 2)",
        "stream rtsp://cam/live dropped after frame 7 and did not come back after 2 reconnect tries",
    ]


def test_a_source_that_opens_but_never_reads_is_not_reopened_forever() -> None:
    opened = []

    def factory(target, api):
        opened.append(target)
        return FakeCapture(0)  # opens, then every read fails

    source = open_source(0, capture_factory=factory, reconnects=3, backoff=0.0)
    assert list(source.frames()) == [] and len(opened) == 4 and source.counts.lost


def test_stopping_ends_a_reconnect_wait_at_once() -> None:
    stop = threading.Event()
    source = open_source(0, capture_factory=lambda t, a: FakeCapture(1), reconnects=5, backoff=60.0)
    frames = source.frames(stop=stop)
    assert next(frames).index == 0
    threading.Timer(0.05, stop.set).start()
    assert list(frames) == [] and not source.counts.lost  # stopped, not lost: no 60 s wait either
