"""scripts/bench_int8_budget.py: the three phases run in their own processes and report seconds, peak
memory and the variants each scored, consistent with the layer count. A ResNet-20 at 32x32 on 16
images stands in for the ResNet-50 benchmark."""

from __future__ import annotations

import json
import math

import pytest

from tests.factories import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("bench_int8_budget")


def test_quick_run_reports_every_phase(script, tmp_path, capsys) -> None:
    argv = ["--depth", "20", "--images", "16", "--calib-images", "16", "--head-images", "64", "--out", str(tmp_path)]
    assert script.main(argv) == 0
    result = json.loads((tmp_path / "int8-budget-resnet20.json").read_text())
    text = (tmp_path / "int8-budget-resnet20.txt").read_text()
    assert text == capsys.readouterr().out

    phases = result["phases"]
    assert list(phases) == ["calibrate", "sensitivity", "budget"]
    layers = phases["calibrate"]["layers"]
    assert layers == 29  # ResNet-20: the stem, 18 convs, 9 residual adds and the fc
    for phase in phases.values():
        assert phase["layers"] == layers
        assert phase["seconds"] > 0 and phase["process_seconds"] >= phase["seconds"]
        assert phase["peak_rss_mib"] > 0 and phase["peak_rss_mib"] >= phase["rss_before_mib"] > 0
        assert phase["breakdown_seconds"]["ranges"] > 0  # every phase calibrates from scratch
        assert sum(phase["breakdown_seconds"].values()) <= phase["seconds"]

    assert phases["calibrate"]["variants"] == 0
    sensitivity = phases["sensitivity"]
    # all-INT8 once, then each layer twice: alone in INT8 and left out of it
    assert sensitivity["variants"] == sensitivity["report_variants"] == 1 + 2 * layers
    budget = phases["budget"]
    parts = budget["search_parts"]  # the all-INT8 model, the scan (each layer left out), the steps, the put-backs
    assert parts["all_int8"]["variants"] == 1
    assert budget["variants"] == 1 + sum(parts[p]["variants"] for p in ("scan", "steps", "prune"))
    if parts["scan"]["variants"] == 0:  # the all-INT8 model met the budget
        assert budget["met"] and budget["variants"] == 1 and not budget["budget"]["kept_out"]
    else:
        assert parts["scan"]["variants"] == layers and parts["steps"]["variants"] >= 1
        # prefixes of the ranking, doubling then halving: a handful, not one per layer
        assert parts["steps"]["variants"] <= 2 * math.ceil(math.log2(layers)) + 1
    assert budget["met"] or budget["error"]

    model = result["model"]
    assert (model["depth"], model["input_size"], model["classes"], model["head_images"]) == (20, 32, 10, 64)
    assert result["settings"] == {
        "images": 16,
        "calib_images": 16,
        "method": "entropy",
        "max_top1_drop": 0.0,
        "gate": "estimate",
        "cache": False,
        "phases": ["calibrate", "sensitivity", "budget"],
    }
    machine = result["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["onnxruntime"]
    assert "| sensitivity |" in text and machine["cpu"] in text


def test_no_save_writes_nothing(script, tmp_path, monkeypatch, capsys) -> None:
    """--no-save prints the table only: the phases are stubbed, so only the parent's bookkeeping runs."""

    def fake_child(args, phase, onnx_path, directory):
        return {
            "phase": phase,
            "layers": 3,
            "seconds": 1.0,
            "process_seconds": 2.0,
            "cpu_seconds": 1.5,
            "peak_rss_mib": 100.0,
            "rss_before_mib": 50.0,
            "variants": {"calibrate": 0, "sensitivity": 7, "budget": 1}[phase],
            "breakdown_seconds": dict.fromkeys(script.BUCKETS, 0.1),
            "load_average_before": 0.5,
            "load_average_after": 0.6,
            "fp32_top1_error": 10.0,
            "all_int8": {"top1_agreement": 1.0, "kl": 0.0, "top1_change": {"delta_pp": 0.0, "worse": 0, "better": 0}},
            "table": "(layers)",
            "met": False,
            "error": "the top-1 budget of 0 pp cannot be met",
        }

    monkeypatch.setattr(script, "child", fake_child)
    model = {"head": "random", "depth": 20, "input_size": 32, "classes": 10}
    monkeypatch.setattr(script, "export", lambda args, directory: (directory / "m.onnx", model))
    assert script.main(["--depth", "20", "--no-save", "--out", str(tmp_path)]) == 0
    assert not list(tmp_path.iterdir())
    out = capsys.readouterr().out
    assert "| budget | 1.0 | 1.0x |" in out and "budget: not met: the top-1 budget of 0 pp cannot be met" in out
    assert script.main(["--depth", "20", "--no-save", "--phases", "calibrate,budget", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| budget | 1.0 | 1.0x |" in out and "| sensitivity |" not in out and "most sensitive" not in out
