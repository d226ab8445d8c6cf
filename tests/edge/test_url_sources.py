"""URL sources end to end on 127.0.0.1: an RTSP stream that ffmpeg sends, and an HTTP MJPEG stream as IP
cameras serve it; every frame read in order and classified as the still-image runner classifies it."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from resnet_deploy.edge.stream import stream
from resnet_deploy.messages import Recorded
from tests.edge.media import mjpeg_server, number_of, numbered, same_predictions, write_video

cv2 = pytest.importorskip("cv2")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_rtsp_stream_sent_by_ffmpeg_is_classified_frame_by_frame(runner, tmp_path, monkeypatch) -> None:
    """OpenCV's FFmpeg listens (RTSP's ``-rtsp_flags listen``) and ffmpeg sends it a 30-frame clip in real
    time, as a camera or a media server would send it; the clip ends, the stream drops, and with no
    reconnect allowed the loop ends, every frame accounted for."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    clip = write_video(tmp_path / "clip.avi", [numbered(i) for i in range(30)], fps=30)
    url = f"rtsp://127.0.0.1:{_free_port()}/live"
    # read when OpenCV opens the URL: listen for ffmpeg (20 s at most), RTP over TCP (nothing lost)
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_flags;listen|listen_timeout;20|rtsp_transport;tcp")
    sender = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip)]
    sender += ["-c:v", "mpeg4", "-q:v", "2", "-f", "rtsp", "-rtsp_transport", "tcp", url]
    sent: list[subprocess.CompletedProcess[str]] = []

    def send() -> None:
        for _ in range(100):  # until OpenCV listens
            time.sleep(0.1)
            sent.append(subprocess.run(sender, capture_output=True, text=True, timeout=60))
            if sent[-1].returncode == 0:
                return

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    out = Recorded()
    with stream(runner, url, reconnects=0, out=out) as frames:
        results = list(frames)
    thread.join(30)
    assert sent and sent[-1].returncode == 0, sent[-1].stderr if sent else "ffmpeg never ran"
    summary = frames.summary()
    assert summary.live and summary.ended == "lost" and summary.frames == 30
    assert summary.classified + summary.dropped == 30 and summary.classified >= 1
    numbers = [number_of(r.frame) for r in results]
    assert numbers == [r.index for r in results] == sorted(set(numbers)) and numbers[-1] == 29
    for result in results:
        assert same_predictions(result.top, runner.classify([result.frame[:, :, ::-1]])[0])
    assert all(r.timestamp is not None and r.timestamp > 1e9 for r in results)  # wall-clock: live
    assert out.warnings == [f"stream {url} dropped after frame 29 and did not come back (`reconnects=0`: none tried)"]


def test_an_http_mjpeg_stream_is_live_and_read_in_order(runner) -> None:
    with mjpeg_server([numbered(i) for i in range(40)], fps=100) as url, stream(runner, url, reconnects=0) as frames:
        assert frames.source is not None and frames.source.live
        results = list(frames)
    summary = frames.summary()
    assert summary.frames == 40 and summary.classified + summary.dropped == 40 and summary.ended == "lost"
    numbers = [number_of(r.frame) for r in results]
    assert numbers == [r.index for r in results] == sorted(set(numbers)) and numbers[-1] == 39
    for result in results:
        assert same_predictions(result.top, runner.classify([result.frame[:, :, ::-1]])[0])
