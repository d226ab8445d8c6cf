"""``ClassifyJob``: refused in one line before any work, run as planned, the labelled video written whole or
not at all, and Ctrl-C an end that keeps what was done."""

from __future__ import annotations

import os

import pytest

from resnet_deploy import plan, run
from resnet_deploy.errors import MissingDependencyError, OutputPathError, ResnetDeployError, RunnerError
from resnet_deploy.messages import Recorded
from resnet_deploy.pipeline import ClassifyJob
from resnet_deploy.pipeline.classify import ClassifyInterrupted
from resnet_deploy.runtime import Runner
from tests.edge.media import decode_video, numbered, write_video

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def clip(tmp_path):
    return write_video(tmp_path / "clip.avi", [numbered(i) for i in range(12)], fps=24)


def test_a_video_classified_with_its_labelled_copy(tiny_onnx, clip, tmp_path) -> None:
    job = ClassifyJob(tiny_onnx, clip, topk=2, batch=3, output=tmp_path / "labelled.mp4", backend="onnxruntime")
    planned = plan(job)
    assert planned.describe() == [
        f"1. classify every frame of video {clip} with tiny.onnx (top-2); the labelled frames to "
        f"{tmp_path / 'labelled.mp4'}",
        f"     reads  {tiny_onnx}  (model)",
        f"     reads  {clip}  (source)",
        f"     writes {tmp_path / 'labelled.mp4'}  (annotated video)",
    ]
    out = Recorded()
    report = run(planned, out)
    assert [r.index for r in report.results] == list(range(12)) and all(r.frame is None for r in report.results)
    assert report.summary.classified == 12 and report.output == tmp_path / "labelled.mp4"
    assert len(decode_video(tmp_path / "labelled.mp4")) == 12
    assert out.lines[0] == (
        f"reading video {clip} (12 frames, 24 fps, every one in order) with tiny.onnx on onnxruntime, batch 3, top-2"
    )
    assert out.lines[-1] == f"labelled video: {tmp_path / 'labelled.mp4'} (12 frames classified, 12 written)"
    assert report.to_dict()["summary"]["classified"] == 12 and report.backend == "onnxruntime"


def _failing_runner(monkeypatch, after: int, error: BaseException) -> None:
    """Runner.load gives runners whose inference fails with ``error`` after ``after`` batches."""
    load = Runner.load

    def failing(path, backend="auto", **options):
        runner = load(path, backend=backend, **options)
        infer, calls = runner.infer, []

        def infer_then_fail(batch):
            calls.append(1)
            if len(calls) > after:
                raise error
            return infer(batch)

        runner.infer = infer_then_fail  # type: ignore[method-assign]
        return runner

    monkeypatch.setattr(Runner, "load", failing)


def test_a_run_that_fails_leaves_no_labelled_video(tiny_onnx, clip, tmp_path, monkeypatch) -> None:
    _failing_runner(monkeypatch, 4, RunnerError("the GPU fell off the bus"))
    with pytest.raises(RunnerError, match="fell off the bus"):
        run(plan(ClassifyJob(tiny_onnx, clip, output=tmp_path / "labelled.mp4", backend="onnxruntime")))
    assert sorted(os.listdir(tmp_path)) == ["clip.avi"]  # nothing half-written, no temporary left


def test_ctrl_c_keeps_the_labelled_frames_so_far_and_says_the_summary(tiny_onnx, clip, tmp_path, monkeypatch) -> None:
    _failing_runner(monkeypatch, 5, KeyboardInterrupt())
    out = Recorded()
    with pytest.raises(ClassifyInterrupted) as caught:
        run(plan(ClassifyJob(tiny_onnx, clip, output=tmp_path / "labelled.mp4", backend="onnxruntime")), out)
    report = caught.value
    assert caught.value.exit_code == 130 and report.report.summary.ended == "interrupted"
    assert report.report.summary.classified == 5 and len(decode_video(tmp_path / "labelled.mp4")) == 5
    assert "ended: interrupted" in out.lines[-2] and sorted(os.listdir(tmp_path)) == ["clip.avi", "labelled.mp4"]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"model": "missing.onnx"}, ResnetDeployError, "model missing.onnx not found"),
        ({"source": "missing.mp4"}, RunnerError, "source missing.mp4 not found"),
        ({"source": None}, RunnerError, "no source to classify"),
        ({"batch": 0}, RunnerError, "`batch` must be a whole number of at least 1, got 0"),
        ({"max_frames": 0}, RunnerError, "`max_frames` must be a whole number of at least 1"),
        ({"reconnects": -1}, RunnerError, "`reconnects` must be a whole number of at least 0"),
        ({"backend": "tensorrt"}, RunnerError, "`backend` runs ONNX files"),
        ({"output": "out.gif"}, OutputPathError, r"annotated video: give a path ending in \.mp4 or \.mkv or \.avi"),
        ({"output": "EXISTING"}, OutputPathError, "exists and is not `resnet-deploy classify`'s annotated video"),
        ({"source": "IMAGES", "output": "out.mp4"}, RunnerError, "is a folder of images: leave out `output`"),
    ],
)
def test_refusals_come_before_any_work(tiny_onnx, clip, tmp_path, fields, error, message) -> None:
    (tmp_path / "existing.mp4").write_bytes(b"the user's")
    (tmp_path / "images").mkdir()
    names = {"EXISTING": tmp_path / "existing.mp4", "IMAGES": tmp_path / "images", "out.mp4": tmp_path / "out.mp4"}
    values = {"model": tiny_onnx, "source": clip} | {k: names.get(v, v) for k, v in fields.items()}
    with pytest.raises(error, match=message):
        plan(ClassifyJob(**values))
    assert (tmp_path / "existing.mp4").read_bytes() == b"the user's"


def test_without_opencv_a_video_is_refused_naming_the_extra(tiny_onnx, clip, tmp_path, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(
        MissingDependencyError, match=r'reading video \S+ needs OpenCV.*pip install "resnet-deploy\[video\]"'
    ):
        plan(ClassifyJob(tiny_onnx, clip))
    (tmp_path / "a.png").write_bytes(b"")
    plan(ClassifyJob(tiny_onnx, tmp_path / "a.png"))  # images need Pillow only
