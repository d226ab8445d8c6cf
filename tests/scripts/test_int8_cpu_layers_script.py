"""scripts/int8_cpu_layers.py: the per-layer FP32/INT8 profile counts every layer's work exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_deploy.quantize.calibrate import calibrate_onnx
from tests.factories import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "int8_cpu_layers.py"

# ResNet-20 (option A, 32x32): the 3x3 stem plus 18 3x3 convs, 16/32/64 channels at 32/16/8 pixels.
RESNET20_CONV_MACS = 32 * 32 * 16 * 27 + 6 * 32 * 32 * 16 * 144 + 2 * (16 * 16 * 32 * 144 + 5 * 16 * 16 * 32 * 288)


@pytest.fixture(scope="module")
def script():
    return load_script("int8_cpu_layers")


def test_layer_profile_of_resnet20_counts_the_paper_macs(script, trained_resnet20, tmp_path) -> None:
    fp32_path = trained_resnet20[1]
    int8_path = calibrate_onnx(
        fp32_path, tmp_path / "cpu.int8.onnx", target="cpu", method="minmax", count=32, cache_dir=None
    ).path
    assert RESNET20_CONV_MACS == 40_550_400  # the 40.55M multiply-adds usually quoted for ResNet-20

    fp32 = script.profile_layers(str(fp32_path), threads=1, iters=2)
    int8 = script.profile_layers(str(int8_path), threads=1, iters=2)
    for layers in (fp32, int8):
        assert layers["3x3 conv"]["nodes"] == 19
        assert layers["3x3 conv"]["gmac"] * 1e9 == pytest.approx(RESNET20_CONV_MACS)
        assert layers["fc"]["gmac"] * 1e9 == pytest.approx(64 * 10)
        assert "1x1 conv" not in layers and "stem 7x7" not in layers  # option A: no projections
        assert all(row["ms"] > 0 for kind, row in layers.items() if kind != "other")
    # FP32 fuses each residual add into its conv; ONNX Runtime's int8 graph keeps 9 QLinearAdds.
    assert "residual add" not in fp32 and int8["residual add"]["nodes"] == 9


def test_the_script_writes_its_table_and_json(script, trained_resnet20, tmp_path, capsys) -> None:
    fp32_path = trained_resnet20[1]
    out = tmp_path / "layers.json"
    assert script.main([str(fp32_path), str(fp32_path), "--threads", "1", "--iters", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {row["layers"] for row in result["layers"]} >= {"3x3 conv", "fc"}
    assert set(result["end_to_end_p50_ms"]) >= {"onnxruntime fp32", "onnxruntime int8"}
    assert result["machine"]["threads"] == 1
    assert "GMAC/s" in capsys.readouterr().out
