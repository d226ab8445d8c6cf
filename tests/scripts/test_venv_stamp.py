"""scripts/_venv.sh installs once for alternating demo.sh ("train") and test.sh ("dev") runs.

The venv's python is a shim that logs its arguments and succeeds, so nothing is pip-installed: the
tests read which pip calls the stamp logic made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIM = """#!/bin/sh
echo "$*" >> "$SHIM_LOG"
case "$*" in *"pip install"*) exit "${SHIM_PIP_RC:-0}" ;; esac
exit 0
"""
# PYTHON: the interpreter that makes the venv: puts the logging shim in as its python
MAKE_VENV = """#!/bin/sh
echo "make-venv $*" >> "$SHIM_LOG"
mkdir -p "$3/bin" && cp "$SHIM_SOURCE" "$3/bin/python" && chmod +x "$3/bin/python"
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None, reason="bash")


class Checkout:
    """A copy of the two files the stamp hashes, with _venv.sh beside them, and a shim venv."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "repo"
        (self.root / "scripts").mkdir(parents=True)
        shutil.copy(ROOT / "scripts" / "_venv.sh", self.root / "scripts" / "_venv.sh")
        shutil.copy(ROOT / "pyproject.toml", self.root / "pyproject.toml")
        self.venv = tmp / "venv"
        self.log = tmp / "calls.log"
        for name, text in (("shim", SHIM), ("make-venv", MAKE_VENV)):
            (tmp / name).write_text(text)
            (tmp / name).chmod(0o755)
        self.env = {
            **os.environ,
            "RESNET_DEPLOY_VENV": str(self.venv),
            "PYTHON": str(tmp / "make-venv"),
            "SHIM_LOG": str(self.log),
            "SHIM_SOURCE": str(tmp / "shim"),
        }

    def source(self, extras: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        """Source _venv.sh with ``extras``; the calls it made to python (pip, import checks, venv)."""
        self.log.write_text("")
        script = 'source "$1" "$2"; echo "PATH=$PATH"'
        done = subprocess.run(
            ["bash", "-c", script, "_", str(self.root / "scripts" / "_venv.sh"), extras],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        calls = [line.replace(str(self.root), "ROOT") for line in self.log.read_text().splitlines()]
        return done, calls

    def pip_calls(self, extras: str) -> list[str]:
        done, calls = self.source(extras)
        assert done.returncode == 0, done.stderr
        return [c for c in calls if "pip install" in c]

    @property
    def stamp(self) -> str:
        return (self.venv / ".resnet-deploy-install").read_text()


TORCH = "-m pip install -q torch==2.14.1 torchvision==0.29.1"
STUBS = "-m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1"


def test_alternating_demo_and_test_runs_install_once(tmp_path) -> None:
    repo = Checkout(tmp_path)
    done, calls = repo.source("train")  # demo.sh on a fresh clone: makes the venv with $PYTHON, [train]
    assert done.returncode == 0, done.stderr
    assert calls[0] == f"make-venv -m venv {repo.venv}"
    assert [c for c in calls if "pip install" in c] == [TORCH, "-m pip install -q -e ROOT[train]"]
    assert "-c import resnet_deploy, torch, onnxruntime" in calls
    assert f"PATH={repo.venv}/bin:" in done.stdout
    # test.sh: only the dev extra is added (no torch), with its typings
    done, calls = repo.source("dev")
    assert [c for c in calls if "pip install" in c or "trt_typings" in c] == [
        "-m pip install -q -e ROOT[dev]",
        STUBS,
        f"ROOT/scripts/trt_typings.py {repo.venv}/typings",
    ]
    assert "adding resnet-deploy[dev]" in done.stdout and repo.stamp.split()[1:] == ["dev", "train"]
    for extras in ("train", "dev", "train", "dev"):  # from now on, alternating runs install nothing
        assert repo.pip_calls(extras) == []


def test_dev_first_satisfies_the_demo_and_every_pypi_extra(tmp_path) -> None:
    repo = Checkout(tmp_path)
    assert repo.pip_calls("dev") == [TORCH, "-m pip install -q -e ROOT[dev]", STUBS]
    assert repo.pip_calls("") == [] and repo.pip_calls("train") == [] and repo.pip_calls("dev") == []
    assert repo.pip_calls("plot,rtx") == []  # [dev] holds them
    assert repo.pip_calls("cuda") == ["-m pip install -q -e ROOT[cuda]"]  # an extra [dev] lacks: only it
    assert repo.stamp.split()[1:] == ["cuda", "dev"]
    assert repo.pip_calls("dev,cuda") == [] and repo.pip_calls("train") == []


@pytest.mark.parametrize("changed", ["pyproject.toml", "scripts/_venv.sh"])
def test_a_changed_pyproject_or_script_reinstalls(tmp_path, changed) -> None:
    repo = Checkout(tmp_path)
    repo.pip_calls("dev")
    with open(repo.root / changed, "a") as fh:
        fh.write("\n# changed\n")
    assert repo.pip_calls("") == [TORCH, "-m pip install -q -e ROOT"]  # extras forgotten with the old hash
    assert repo.pip_calls("dev") == ["-m pip install -q -e ROOT[dev]", STUBS]
    assert repo.pip_calls("") == []


def test_a_failed_install_leaves_no_stamp(tmp_path) -> None:
    repo = Checkout(tmp_path)
    done, _ = repo.source("", SHIM_PIP_RC="1")
    assert done.returncode == 1 and "[setup] pip install failed" in done.stderr
    assert not (repo.venv / ".resnet-deploy-install").exists()
    assert repo.pip_calls("") == [TORCH, "-m pip install -q -e ROOT"]  # tried again next time


def test_the_serving_environment_gets_no_torch_and_checks_pytriton(tmp_path) -> None:
    """scripts/serve.sh's venv: [serve] alone (PyTriton pins numpy<2), no pinned torch, its own import check."""
    repo = Checkout(tmp_path)
    done, calls = repo.source("serve")
    assert done.returncode == 0, done.stderr
    assert [c for c in calls if "pip install" in c] == ["-m pip install -q -e ROOT[serve]"]
    assert "-c import resnet_deploy, onnxruntime, pytriton" in calls
    assert repo.pip_calls("serve") == []
