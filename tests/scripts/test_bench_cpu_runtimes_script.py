"""scripts/bench_cpu_runtimes.py: the goals it reports follow from its latency rows, and its result
files are named by the kind of CPU, so an AVX2 result and a VNNI result never overwrite each other."""

from __future__ import annotations

import pytest

from resnet_deploy.runtime.machine import cpu_kind
from tests.factories import load_script

FILES = ("r50.onnx", "r50.fp16.onnx", "r50.cpu.int8.onnx", "r50.int8.onnx")


@pytest.fixture(scope="module")
def script():
    return load_script("bench_cpu_runtimes")


def _row(artifact: str, runtime: str, backend: str, batch: int, p50: float, spread: float = 0.02) -> dict:
    return {"label": f"{artifact} ({runtime})", "artifact": artifact, "backend": backend, "batch": batch} | {
        "p50_ms": p50,
        "spread": spread,
    }


def _result(isa: list[str], auto_ms: float = 11.0) -> dict:
    """ORT FP32 40 ms a batch of one; OpenVINO faster on every file; auto runs INT8 at ``auto_ms``."""
    rows = []
    for batch in (1, 8):
        for name in FILES:
            ort, ov = (40.0, 38.0) if "int8" not in name else (13.0, 11.0)
            auto = auto_ms if "int8" in name else ov
            rows += [
                _row(name, "onnxruntime", "onnxruntime", batch, ort * batch),
                _row(name, "openvino", "openvino", batch, ov * batch),
                _row(name, "auto", "openvino", batch, auto * batch),
            ]
        rows.append(_row("r50.onnx", "openvino bf16", "openvino", batch, 20.0 * batch))
    return {
        "machine": {"cpu": "Test CPU", "isa": isa, "cores": 2, "onnxruntime": "1", "openvino": "2"},
        "threads": 2,
        "latency": {"rows": rows},
        "auto_chosen_because": {name: "auto: OpenVINO" for name in FILES},
        "agreement": [
            {"file": "r50.onnx", "runtime": "openvino", "max_abs_logit_difference": 1e-4, "top1_agreement": 1.0}
        ],
        "throughput": {"rows": []},
    }


def test_goals_met_when_auto_is_the_faster_runtime_and_int8_is_3x(script) -> None:
    result = _result(["avx2", "avx512_vnni"])
    goals = script.goals(result)
    auto = goals["auto_never_slower"]
    assert auto["met"] and len(auto["rows"]) == 8
    fp32 = next(r for r in auto["rows"] if r["file"] == "r50.onnx" and r["batch"] == 1)
    assert fp32["best_runtime"] == "openvino" and fp32["auto_over_best"] == pytest.approx(1.0)
    int8 = goals["int8_vs_ort_fp32"]
    assert int8["goal"] == 3.0 and int8["met"]
    assert int8["rows"][0]["speedup"] == pytest.approx(40.0 / 11.0)
    assert "bf16" not in str(goals)  # bfloat16 is never the "best runtime": it is another precision


def test_auto_slower_than_noise_fails_its_goal_and_without_vnni_there_is_no_3x_goal(script) -> None:
    result = _result(["avx2"], auto_ms=13.0)  # auto at 13 ms where OpenVINO did 11: 18% slower, noise 5%
    goals = script.goals(result)
    assert not goals["auto_never_slower"]["met"]
    slow = [r for r in goals["auto_never_slower"]["rows"] if not r["met"]]
    assert {r["file"] for r in slow} == {"r50.cpu.int8.onnx", "r50.int8.onnx"}
    assert slow[0]["auto_over_best"] == pytest.approx(13.0 / 11.0)
    assert goals["int8_vs_ort_fp32"]["goal"] is None and goals["int8_vs_ort_fp32"]["met"] is None
    result["goals"] = goals
    text = script.render(result)
    assert "NOT met" in text and "no goal without VNNI" in text and "Test CPU (AVX2, no VNNI)" in text


def test_results_are_named_by_the_kind_of_cpu() -> None:
    assert cpu_kind(["avx2", "fma"]) == "avx2"
    assert cpu_kind(["avx2", "avx512f", "avx512_vnni"]) == "avx512-vnni"
    assert cpu_kind(["avx2", "avx_vnni"]) == "avx-vnni"
    assert cpu_kind(["avx512_vnni", "amx_int8"]) == "amx"
    assert cpu_kind(["asimd", "asimddp"]) == "neon-dot"
    assert cpu_kind([]) == "other"
