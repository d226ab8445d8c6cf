"""scripts/bench_budget_vs_nncf.py: what it reads back from either tool's graph (which layers are INT8, the
top-1 change on the held-out images), and the report it writes."""

from __future__ import annotations

import argparse

import onnx

from resnet_deploy.quantize.layers import quantizable_layers
from resnet_deploy.quantize.qdq_tensorrt import qdq_tensors
from resnet_deploy.quantize.sensitivity import variant
from tests.factories import load_script


def test_a_layer_is_int8_when_its_weights_come_through_a_dequantize(trained_resnet20, tmp_path) -> None:
    script = load_script("bench_budget_vs_nncf")
    _, fp32 = trained_resnet20
    model = onnx.load(str(fp32))
    amax = dict.fromkeys(qdq_tensors(model), 6.0)
    second = quantizable_layers(model)[1]
    whole, mixed = tmp_path / "whole.onnx", tmp_path / "mixed.onnx"
    onnx.save(variant(model, amax, ()), str(whole))
    onnx.save(variant(model, amax, {second.node}), str(mixed))
    args = argparse.Namespace(images=32)
    scored = script.score(fp32, whole, args)
    assert scored["kept_out"] == [] and scored["int8_mac_share"] == 1.0
    assert scored["top1_change"]["images"] == 32
    scored = script.score(fp32, mixed, args)
    assert scored["kept_out"] == [second.module] and 0.9 < scored["int8_mac_share"] < 1.0


def test_the_report_puts_both_tools_side_by_side_with_their_ratio() -> None:
    script = load_script("bench_budget_vs_nncf")
    change = {"delta_pp": 0.28, "low_pp": -1.0, "high_pp": 1.5}
    side = {"top1_change": change, "int8_mac_share": 0.94, "kept_out": ["layer2.1.conv2"], "peak_rss_mib": 900}
    result = {
        "settings": {"images": 360, "calib_images": 256, "max_top1_drop": 0.5},
        "machine": "a CPU",
        "nncf_version": "3.4.0",
        "models": {"culprit": {"ours": {**side, "seconds": 5.0}, "nncf": {**side, "seconds": 10.0}}},
    }
    text = script.report(result)
    assert "| culprit | ours | 5.0 | 900 | +0.28 pp [-1.00, +1.50] | 94.0% | layer2.1.conv2 |" in text
    assert "| culprit | NNCF / ours | 2.00x |" in text and "NNCF: 3.4.0" in text
