"""scripts/rtx_int8_fusion.py: what TensorRT-RTX fuses in our INT8 ResNet-20, read from its own layer list.

Pins the README's residual-add paragraph: if a TensorRT-RTX release starts fusing the adds into
INT8 convolutions, this fails, and the paragraph (and perhaps the Q/DQ placement) must change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import load_script

pytestmark = pytest.mark.rtx
ROOT = Path(__file__).resolve().parents[2]


def test_int8_convs_absorb_no_add_and_the_placement_moves_the_least_data() -> None:
    script = load_script("rtx_int8_fusion")
    results = script.measure(20)
    fp32, int8 = results["fp32"], results["int8"]
    assert (fp32["convs"], fp32["adds_fused_into_convs"], fp32["add_kernels"]) == (19, 9, 0)
    assert (int8["convs_reading_int8"], int8["adds_fused_into_convs"], int8["add_kernels"]) == (19, 0, 9)
    assert results["int8-float-shortcut"]["adds_fused_into_convs"] == 0
    assert results["int8-per-tensor-weights"]["adds_fused_into_convs"] == 9
    traffic = {name: row["activation_mb_at_batch_8"] for name, row in results.items() if name.startswith("int8")}
    assert min(traffic, key=traffic.get) == "int8"
    stored = json.loads((ROOT / "scripts" / "results" / "rtx-int8-fusion-resnet20.json").read_text())["results"]
    assert stored == results  # the README's numbers are what the script gives today
