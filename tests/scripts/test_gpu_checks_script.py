"""scripts/gpu_checks.sh: the GPU proof in one command. Its dry run goes through the same sequence on
this CPU (GPU tests skip, the bench at CPU sizes), so the script cannot rot between GPU machines; its
summary tells a failed, a timed-out and a skipped part apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_checks.sh"
FILES = {
    "preflight.json",
    "preflight.txt",
    "pytest-gpu.txt",
    "pytest-distributed.txt",
    "summary.json",
    "summary.txt",
}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=400)


def _gpu_tests() -> int:
    """How many tests carry the gpu marker, counted by pytest itself."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "-m", "gpu", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return sum("::" in line for line in done.stdout.splitlines())


def test_the_dry_run_goes_through_every_part_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _run("--dry-run", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    bench = {name for name in files if name.startswith("train-step-resnet50-cpu-")}
    assert files == FILES | bench and len(bench) == 2 and len(files) <= 8

    summary = json.loads((out / "summary.json").read_text())
    parts = {row["part"]: row for row in summary["parts"]}
    assert list(parts) == ["preflight", "pytest-gpu", "pytest-distributed", "train-step"]
    assert summary["ok"] and summary["dry_run"] and summary["failed"] == []
    assert parts["preflight"]["outcome"] == "passed" and parts["preflight"]["problems"] == []
    gpu_tests = _gpu_tests()
    assert gpu_tests >= 18
    distributed = parts["pytest-distributed"]["tests"]
    assert distributed == {"passed": 0, "failed": 0, "errors": 0, "skipped": 2}
    assert parts["pytest-gpu"]["tests"] == {"passed": 0, "failed": 0, "errors": 0, "skipped": gpu_tests - 2}
    assert parts["pytest-gpu"]["outcome"] == parts["pytest-distributed"]["outcome"] == "skipped"
    assert parts["train-step"]["outcome"] == "passed" and parts["train-step"]["ratios"]["ours / reference"] > 0

    preflight = json.loads((out / "preflight.json").read_text())
    assert preflight["gpu"] is None and preflight["nvjpeg"]["ok"] and preflight["nvjpeg"]["device"] == "cpu"
    assert preflight["cudnn"] and preflight["torch"]  # the libraries' versions, GPU or not
    machine = (out / "preflight.txt").read_text().splitlines()[0]
    assert machine.startswith("Machine: ") and "cores" in machine and "; no GPU" in machine
    text = (out / "summary.txt").read_text().splitlines()
    assert text[1] == machine and text[-1] == "All parts passed."
    assert done.stdout.rstrip().endswith("All parts passed.")  # the summary last


def test_a_directory_holding_other_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("mine")
    done = _run("--dry-run", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path} holds files these checks did not write (notes.md ); give an empty or new directory"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["notes.md"]
    usage = _run(cwd=tmp_path)
    assert usage.returncode == 2 and "usage: bash scripts/gpu_checks.sh [--dry-run] OUT_DIR" in usage.stderr


def _junit(path: Path, tests: int, failures: int = 0, errors: int = 0, skipped: int = 0) -> None:
    path.write_text(
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" '
        f'errors="{errors}" skipped="{skipped}"></testsuite></testsuites>'
    )


@pytest.fixture
def script():
    return load_script("gpu_checks")


def test_the_summary_tells_failed_timed_out_and_missing_parts_apart(script, tmp_path: Path) -> None:
    out, parts = tmp_path / "out", tmp_path / "parts"
    out.mkdir(), parts.mkdir()
    preflight = {"problems": ["decode_jpeg: Failed to initialize nvjpeg"], "machine": {}}
    (out / "preflight.json").write_text(json.dumps(preflight))
    for name, code in (("preflight", 1), ("pytest-gpu", 1), ("pytest-distributed", 124), ("train-step", 0)):
        (parts / f"{name}.status").write_text(f"{code}\n")
    _junit(parts / "pytest-gpu.xml", tests=13, failures=1, skipped=4)
    summary = script.summarize(out, parts, dry_run=False)
    outcomes = {row["part"]: row["outcome"] for row in summary["parts"]}
    assert outcomes == {
        "preflight": "failed",
        "pytest-gpu": "failed",
        "pytest-distributed": "timed out",
        "train-step": "failed",  # exit 0 but no result file: nothing was measured
    }
    assert summary["parts"][1]["tests"] == {"passed": 8, "failed": 1, "errors": 0, "skipped": 4}
    text = script.render_summary(summary, "Machine: a GPU box")
    assert "pytest-gpu           FAILED     8 passed, 1 failed, 0 errors, 4 skipped" in text
    assert "preflight            FAILED     decode_jpeg: Failed to initialize nvjpeg" in text
    assert text.endswith("FAILED: preflight, pytest-gpu, pytest-distributed, train-step")


def test_a_part_that_never_ran_is_a_failure_and_all_passed_needs_every_part(script, tmp_path: Path) -> None:
    out, parts = tmp_path / "out", tmp_path / "parts"
    out.mkdir(), parts.mkdir()
    (out / "preflight.json").write_text(json.dumps({"problems": []}))
    (parts / "preflight.status").write_text("0")
    (parts / "pytest-gpu.status").write_text("0")
    _junit(parts / "pytest-gpu.xml", tests=16)
    bench = {"machine": {"gpu": "NVIDIA H200"}, "comparisons": [{"ours": "ours", "reference": "reference"}]}
    bench["comparisons"][0]["ratio_of_medians"] = 1.0412
    (out / "train-step-resnet50-nvidia-h200.json").write_text(json.dumps(bench))
    (parts / "train-step.status").write_text("0")
    summary = script.summarize(out, parts, dry_run=False)
    assert summary["failed"] == ["pytest-distributed"] and not summary["ok"]
    text = script.render_summary(summary, "Machine: x")
    assert "pytest-gpu           PASSED     16 passed, 0 failed, 0 errors, 0 skipped" in text
    assert "train-step           PASSED     ours / reference 1.041x (NVIDIA H200)" in text
    assert "pytest-distributed   NOT RUN" in text
