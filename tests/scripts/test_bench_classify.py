"""scripts/bench_classify.py: its goals follow from its figures, its report names the machine and every
figure, and a quick run on a tiny model measures the stream against bare inference end to end."""

from __future__ import annotations

import json

import pytest

from resnet_deploy.runtime.machine import cpu_kind
from tests.factories import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("bench_classify")


def _model(path: str, infer: float, streamed: float, cpu_ms: float) -> dict:
    return {
        "path": path,
        "name": "r50.onnx" if path == "pil" else "r50.frames1280x720.onnx",
        "architecture": "resnet50",
        "frame_input": None if path == "pil" else "1280x720 uint8 BGR",
        "runtime": {"backend": "onnxruntime"},
        "infer": {"fps": infer, "rounds": [infer] * 3},
        "stream": {"fps": streamed, "latency_ms": {"p50": 60.0, "p90": 70.0, "p99": 80.0}},
        "ratio": streamed / infer,
        "preprocess": {"cpu_ms": cpu_ms, "wall_ms": cpu_ms + 0.1, "frames": 120},
    }


def _result(script, models: list[dict]) -> dict:
    result = {
        "machine": {
            "cpu": "Test CPU",
            "isa": ["avx2", "fma"],
            "cores": 2,
            "load_average": [0.25, 0.5, 0.5],
            "onnxruntime": "1",
            "openvino": "2",
            "opencv": "4.10",
            "pillow": "11",
        },
        "model": "random-weight ResNet-50",
        "video": {"size": [1280, 720], "frames": 120, "fps": 30, "codec": "mp4v", "decode_cpu_ms": 2.5}
        | {"decode_wall_ms": 2.6},
        "batch": 1,
        "rounds": 3,
        "models": models,
    }
    result["goals"] = script.goals(result)
    return result


def test_goals_follow_from_the_figures(script) -> None:
    plain, fused = _model("pil", 20.0, 17.0, 6.0), _model("fused", 19.0, 18.05, 0.4)
    met = _result(script, [plain, fused])["goals"]
    assert met["ratio_on"] == "fused" and met["ratio"] == pytest.approx(0.95) and met["ratio_met"]
    assert met["fused_cheaper"]
    missed = _result(script, [plain, _model("fused", 19.0, 15.2, 7.0)])["goals"]
    assert missed["ratio"] == pytest.approx(0.8) and not missed["ratio_met"] and missed["fused_cheaper"] is False
    alone = _result(script, [plain])["goals"]
    assert alone["ratio_on"] == "pil" and alone["ratio"] == pytest.approx(0.85) and alone["fused_cheaper"] is None


def test_the_report_names_the_machine_and_every_figure(script) -> None:
    text = script.render(_result(script, [_model("pil", 20.0, 17.0, 6.0), _model("fused", 19.0, 18.05, 0.4)]))
    lines = text.splitlines()
    assert lines[0].startswith("resnet50 on Test CPU (AVX2, FMA, no VNNI), 2 cores; onnxruntime (onnxruntime 1")
    assert lines[0].endswith("load average at start 0.25")
    assert lines[1] == "Video: 1280x720, 120 frames at 30 fps (mp4v); batch 1; median of 3 alternating round(s)"
    assert (
        lines[4].split() == "r50.onnx (PIL path) 20.0 f/s 17.0 f/s 0.85 60 ms/80 ms CPU 6.00 ms, wall 6.10 ms".split()
    )
    assert lines[5].startswith("r50.frames1280x720.onnx (fused)") and "0.95" in lines[5] and "CPU 0.40 ms" in lines[5]
    assert "decode (OpenCV), per frame: CPU 2.50 ms, wall 2.60 ms" in text
    assert "on the fused model at least 0.9x its bare infer: 0.95x, met" in text
    assert "cheaper than the PIL path's: CPU 0.40 ms vs 6.00 ms a frame, met" in text
    alone = script.render(_result(script, [_model("pil", 20.0, 17.0, 6.0)]))
    assert "on the model (PIL path) at least 0.9x its bare infer: 0.85x, NOT met" in alone
    assert "not measured (no fused model)" in alone


def test_generated_frames_move_and_differ(script) -> None:
    pytest.importorskip("cv2")
    frames = script.camera_like_frames(3, (64, 48))
    assert [f.shape for f in frames] == [(48, 64, 3)] * 3 and frames[0].dtype.name == "uint8"
    assert 20 < frames[0].std() and not (frames[0] == frames[1]).all()


def test_a_quick_run_end_to_end(script, tiny_onnx, tmp_path, capsys) -> None:
    pytest.importorskip("cv2")
    from tests.cli_helpers import invoke

    fused = tmp_path / "tiny.frames320x240.onnx"
    made = invoke("convert", str(tiny_onnx), "--frame-size", "320x240", "--channel-order", "bgr", "-o", str(fused))
    assert made.exit_code == 0, made.output
    out = tmp_path / "results"
    argv = ["--quick", "--model", str(tiny_onnx), "--fused", str(fused), "--backend", "onnxruntime"]
    assert script.main([*argv, "--out", str(out)]) == 0
    (written,) = out.glob("classify-resnet20-*.json")
    result = json.loads(written.read_text())
    assert written.stem == f"classify-resnet20-{cpu_kind(result['machine']['isa'])}"
    assert result["video"]["size"] == [320, 240] and result["video"]["frames"] == 24 and result["rounds"] == 1
    plain, frames = result["models"]
    assert (plain["path"], plain["frame_input"]) == ("pil", None)
    assert (frames["path"], frames["frame_input"]) == ("fused", "320x240 uint8 BGR")
    for model in (plain, frames):
        assert model["infer"]["fps"] > 0 and model["stream"]["fps"] > 0 and model["stream"]["classified"] == 24
        assert model["stream"]["dropped"] == 0 and model["preprocess"]["frames"] == 24
        assert model["ratio"] == pytest.approx(model["stream"]["fps"] / model["infer"]["fps"])
    assert result["goals"]["ratio_on"] == "fused" and result["goals"]["ratio"] == frames["ratio"]
    assert result["goals"]["fused_cheaper"] == (frames["preprocess"]["cpu_ms"] < plain["preprocess"]["cpu_ms"])
    assert written.with_suffix(".txt").read_text() == script.render(result) + "\n"
    with pytest.raises(SystemExit, match="has no preprocessing inside"):
        script.main(["--quick", "--model", str(tiny_onnx), "--fused", str(tiny_onnx), "--no-save"])
    capsys.readouterr()
