"""The pipelined loop: a video's frames classified exactly as the still-image runner classifies the same decoded
frames, at any batch size; a live source slower to infer than to read keeps the newest frames and counts the
rest; every way of ending the loop joins its threads and lets the source go."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from resnet_deploy.edge.buffer import FrameBuffer
from resnet_deploy.edge.sources import Frame, open_source
from resnet_deploy.edge.stream import stream
from resnet_deploy.errors import RunnerError
from resnet_deploy.messages import Recorded
from resnet_deploy.runtime import Runner
from tests.edge.media import (
    Camera,
    FakeCapture,
    SlowRunner,
    decode_video,
    digit_frames,
    number_of,
    numbered,
    same_predictions,
    write_video,
)

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def video(tmp_path, digits) -> Path:
    """A 25 fps video of 30 frames, each a test-split digit."""
    images, _ = digits
    return write_video(tmp_path / "digits.avi", digit_frames(images, 30), fps=25)


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("resnet-deploy-")}


@pytest.mark.parametrize("batch", [1, 4])
def test_a_video_is_classified_as_the_still_image_runner_classifies_its_decoded_frames(runner, video, batch) -> None:
    decoded = decode_video(video)
    assert len(decoded) == 30
    expected = [runner.classify([frame[:, :, ::-1]], topk=3)[0] for frame in decoded]  # RGB, one at a time
    with stream(runner, video, topk=3, batch=batch) as frames:
        results = list(frames)
    assert [r.index for r in results] == list(range(30))
    assert [r.timestamp for r in results] == pytest.approx([i / 25 for i in range(30)])
    for result, frame, wanted in zip(results, decoded, expected, strict=True):
        assert np.array_equal(result.frame, frame)
        assert same_predictions(result.top, wanted), (result.index, result.top, wanted)
        assert len(result.top) == 3 and result.latency_ms > 0 and result.name is None
    summary = frames.summary()
    assert (summary.frames, summary.classified, summary.dropped, summary.skipped, summary.corrupt) == (30, 30, 0, 0, 0)
    assert summary.ended == "end" and not summary.live and summary.fps > 0 and summary.batch == batch
    assert summary.latency_ms(50) <= summary.latency_ms(99) and len(summary.latencies_ms) == 30
    assert _threads() == set()


def test_every_and_max_frames_pick_the_frames_batch_1_would(runner, video) -> None:
    with stream(runner, video, every=4, max_frames=5, batch=3) as frames:
        results = list(frames)
    assert [r.index for r in results] == [0, 4, 8, 12, 16]
    decoded = decode_video(video)
    for result in results:
        assert same_predictions(result.top, runner.classify([decoded[result.index][:, :, ::-1]])[0])
    summary = frames.summary()
    assert (summary.frames, summary.classified, summary.skipped, summary.dropped) == (17, 5, 12, 0)
    assert summary.ended == "max-frames" and summary.every == 4


def test_image_results_name_their_files(runner, tmp_path, digits) -> None:
    from PIL import Image

    images, _ = digits
    for i in range(5):
        Image.fromarray(images[i]).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"broken")
    out = Recorded()
    with stream(runner, tmp_path, batch=2, out=out) as frames:
        results = list(frames)
    assert [Path(r.name).name for r in results] == ["0.png", "1.png", "2.png", "4.png"]
    for result in results:
        wanted = runner.classify([images[int(Path(result.name).stem)]])[0]
        assert same_predictions(result.top, wanted) and result.timestamp is None
    assert out.warnings == [f"{tmp_path / '3.png'}: skipped, not a readable image"]
    line = results[0].to_dict()
    assert list(line) == ["index", "timestamp", "file", "top", "latency_ms"] and line["file"].endswith("0.png")
    assert frames.summary().corrupt == 1 and frames.summary().images


def test_a_live_source_slower_to_infer_keeps_the_newest_frames_and_counts_the_rest(runner) -> None:
    camera = Camera()
    slow = SlowRunner(runner, camera, frames=5)  # each inference lasts 5 camera frames
    with stream(slow, 0, capture_factory=lambda t, a: camera, max_frames=10) as frames:
        results = list(frames)
    indices = [r.index for r in results]
    assert len(results) == 10 and indices == sorted(set(indices))  # in order, none twice
    assert all(number_of(r.frame) == r.index for r in results)  # each result is its own frame's
    for result in results:
        assert same_predictions(result.top, runner.classify([result.frame[:, :, ::-1]])[0])
    summary = frames.summary()
    # 10 inferences of 5 camera frames each: at least 45 frames read, at most 10 classified
    assert summary.live and summary.ended == "max-frames" and summary.frames >= 45
    assert summary.dropped == summary.frames - 10 >= 35
    assert camera.released and _threads() == set()


def test_a_live_batch_holds_the_frames_that_came_during_the_last_inference(runner) -> None:
    camera = Camera()
    slow = SlowRunner(runner, camera, frames=8)
    with stream(slow, 0, capture_factory=lambda t, a: camera, max_frames=12, batch=4) as frames:
        results = list(frames)
    assert len(results) == 12 and [r.index for r in results] == sorted({r.index for r in results})
    assert slow.batches[0] >= 1 and max(slow.batches) == 4  # full batches once inference falls behind
    assert frames.summary().dropped > 0


def test_the_newest_frame_policy_of_the_buffer() -> None:
    def frame(i: int) -> Frame:
        return Frame(i, None, np.zeros((1, 1, 3), np.uint8), 0.0)

    live = FrameBuffer(2, keep_newest=True)
    for i in range(5):
        assert live.put(frame(i))
    assert [f.index for f in live.take(2, whole=False)] == [3, 4] and live.dropped == 3
    assert live.put(frame(5)) and [f.index for f in live.take(4, whole=False)] == [5]
    whole = FrameBuffer(2, keep_newest=False)  # a file's: the reader waits, nothing dropped
    put = threading.Thread(target=lambda: [whole.put(frame(i)) for i in range(3)])
    put.start()
    put.join(0.2)
    assert put.is_alive() and len(whole) == 2  # waiting for room for frame 2
    assert [f.index for f in whole.take(1, whole=True)] == [0]
    put.join(5)
    whole.finish()
    assert [f.index for f in whole.take(5, whole=True)] == [1, 2] and whole.take(1, whole=True) == []
    assert whole.dropped == 0


def test_breaking_out_of_the_loop_joins_the_threads_and_releases_the_camera(runner) -> None:
    camera = Camera()
    with stream(runner, 0, capture_factory=lambda t, a: camera) as frames:
        for result in frames:
            if result.index >= 3:
                break
    assert camera.released and _threads() == set()
    assert frames.summary().ended == "stopped"
    with pytest.raises(RunnerError, match="a stream is read once"):
        iter(frames)


def test_ctrl_c_inside_inference_ends_the_loop_cleanly(runner) -> None:
    camera = Camera()

    class Interrupted(SlowRunner):
        def infer(self, batch):
            if len(self.batches) == 3:
                raise KeyboardInterrupt
            return super().infer(batch)

    frames = stream(Interrupted(runner, camera, frames=1), 0, capture_factory=lambda t, a: camera)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for result in frames:
            seen.append(result.index)
    assert len(seen) == 3 and camera.released and _threads() == set()
    summary = frames.summary()
    assert summary.ended == "interrupted" and summary.classified == 3
    assert summary.frames == summary.classified + summary.dropped


def test_a_failure_while_preparing_is_raised_where_the_results_are_read(runner, video) -> None:
    class Broken(SlowRunner):
        def preprocess(self, images, channel_order="RGB"):
            raise RunnerError("image 0 is 0x0 pixels")

    with pytest.raises(RunnerError, match="0x0 pixels"), stream(Broken(runner, Camera()), video) as frames:
        list(frames)
    assert _threads() == set()


def test_a_lost_live_source_ends_the_loop_with_what_it_classified(runner) -> None:
    out = Recorded()
    frames = stream(runner, "rtsp://cam/x", capture_factory=lambda t, a: FakeCapture(6), reconnects=0, out=out)
    results = list(frames)
    assert 1 <= len(results) <= 6 and results[-1].index == 5  # the newest frame is never dropped
    summary = frames.summary()
    assert summary.ended == "lost" and summary.frames == 6 and summary.classified + summary.dropped == 6
    assert (
        out.warnings[-1]
        == "stream rtsp://cam/x dropped after frame 5 and did not come back (`reconnects=0`: none tried)"
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("batch", 0, "`batch` must be a whole number of at least 1, got 0"),
        ("every", 1.5, "`every`"),
        ("topk", True, "`topk`"),
    ],
)
def test_bad_numbers_are_refused_in_one_line(runner, video, option, value, message) -> None:
    with pytest.raises(RunnerError, match=message):
        stream(runner, video, **{option: value})


def test_an_opened_source_can_be_given(runner) -> None:
    source = open_source(0, capture_factory=lambda t, a: FakeCapture(3, fps=10), reconnects=0)
    numbers = [number_of(r.frame) for r in stream(runner, source)]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 2  # a live source: the newest is never dropped
    assert source.capture is None  # released
    assert number_of(numbered(4321)) == 4321


@pytest.mark.skipif(not hasattr(Runner, "stream"), reason="Runner.stream is not there yet")
def test_runner_stream_is_the_edge_stream(runner, video) -> None:
    frames = runner.stream(video, topk=2, max_frames=3)
    assert [r.index for r in frames] == [0, 1, 2] and frames.summary().classified == 3


def test_a_capture_that_raises_is_a_read_that_failed(runner) -> None:
    class Raising(FakeCapture):
        def read(self):
            if self.count == 3:
                raise cv2.error("broken frame")
            return super().read()

    opened = []

    def factory(target, api):
        opened.append(target)
        if len(opened) > 1:
            raise cv2.error("the camera is gone")
        return Raising(10)

    frames = stream(runner, 0, capture_factory=factory, reconnects=1, backoff=0.0)
    assert [number_of(r.frame) for r in frames][-1] == 2 and len(opened) == 2
    assert frames.summary().ended == "lost"
