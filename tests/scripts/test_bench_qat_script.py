"""scripts/bench_qat.py: the report puts post-training INT8 and each way of fine-tuning side by side."""

from __future__ import annotations

from tests.factories import load_script


def test_the_report_has_a_row_per_model_and_way() -> None:
    script = load_script("bench_qat")
    assert list(script.WAYS) == ["fixed", "narrowed", "learned"]
    change = {"delta_pp": 27.78, "low_pp": 21.98, "high_pp": 33.55}
    after = {"delta_pp": -7.5, "low_pp": -12.17, "high_pp": -2.99}
    row = {"epochs": 2, "images_per_epoch": 1437, "seconds": 9.5, "post_training": change, "qat": after}
    result = {
        "settings": {"images": 360, "calib_images": 256, "epochs": 2},
        "machine": "a CPU",
        "command": "python scripts/bench_qat.py",
        "models": {"ResNet-20 culprit": {way: row for way in script.WAYS}},
        "peak_rss_mib": 1000.0,
    }
    text = script.report(result)
    assert text.count("| ResNet-20 culprit |") == 3
    learned = "| ResNet-20 culprit | +27.78 pp [+21.98, +33.55] | learned | -7.50 pp [-12.17, -2.99] | 2 | 1437 | 128 |"
    assert learned in text
