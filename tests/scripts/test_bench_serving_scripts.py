"""The serving benchmarks run and write their figures with the machine: the Triton preprocessing step's cost
per image, and (slow, needs the serving environment) the served-against-in-process ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_preprocessing_cost_is_written_per_model_size_and_batch_with_the_machine(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/bench_triton_preprocess.py", "--images", "8", "--rounds", "1",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (text,) = tmp_path.glob("triton-preprocess-*.txt")
    lines = text.read_text().splitlines()
    assert "cores, one thread; Python" in lines[0]  # the machine: CPU (instruction sets), cores
    rows = [line.split() for line in lines if line.startswith("resnet")]
    assert len(rows) == 8  # 2 models x 2 JPEG sizes x 2 batches
    assert all(float(row[-1]) > 0 for row in rows)


def test_too_few_images_for_the_batch_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/bench_triton_preprocess.py", "--images", "4", "--no-save"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "--images must be at least 8" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_served_ratio_is_measured_against_the_runner(tmp_path) -> None:
    if not (ROOT / ".venv-serve" / "bin" / "python").exists():
        pytest.skip("needs the serving environment (scripts/test.sh makes it)")
    done = subprocess.run(
        [sys.executable, "scripts/bench_serve.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (text,) = tmp_path.glob("serve-*.txt")
    assert "served over in-process images/s" in text.read_text() and "cores" in text.read_text().splitlines()[0]
