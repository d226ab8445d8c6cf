"""The CUDA-bindings extras fit the driver and install beside torch's CUDA 13 wheels where they should.

torch's cu130 wheels (torch 2.14.1 here, 2.11 on the GPU machines) require ``cuda-bindings>=13.0.3,<14``:
``[cuda13]`` must resolve with them, and ``[cuda]`` (CUDA 12 bindings) cannot, which is why a 13.x
driver is told ``[cuda13]``. The pip checks resolve offline against this venv's installed torch.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from resnet_deploy.runtime.cuda_memory import cuda_extra, install_hint

ROOT = Path(__file__).resolve().parents[2]
LINUX_X86 = {"platform_machine": "x86_64", "platform_system": "Linux", "sys_platform": "linux"}
PIP_DRY_RUN = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation", "--quiet"]
VERSIONS = ["11.8.7", "12.8.0", "12.9.4", "13.0.2", "13.0.3", "13.5.0", "14.0.0"]


def _bindings(requirements: list[str]) -> Requirement | None:
    for text in requirements:
        req = Requirement(text)
        if req.name == "cuda-bindings" and (req.marker is None or req.marker.evaluate(LINUX_X86)):
            return req
    return None


def _extra(name: str) -> Requirement:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found = _bindings(extras[name])
    assert found is not None, name
    return found


def _torch_needs() -> Requirement:
    needs = _bindings(importlib.metadata.requires("torch") or [])
    if needs is None:
        pytest.skip("this torch is not a CUDA 13 build (it requires no cuda-bindings)")
    return needs


@pytest.mark.parametrize(
    ("driver", "extra"), [(11040, "cuda11"), (12040, "cuda"), (12090, "cuda"), (13000, "cuda13"), (13020, "cuda13")]
)
def test_the_extra_named_is_the_drivers_own_cuda_major_version(driver: int, extra: str) -> None:
    assert cuda_extra(driver) == extra
    assert f'pip install "resnet-deploy[{extra}]"' in install_hint(driver)


def test_cuda13_admits_exactly_the_bindings_torchs_cu130_wheels_need_and_cuda_none() -> None:
    torch_needs = _torch_needs()
    admitted = [v for v in VERSIONS if torch_needs.specifier.contains(v)]
    assert [v for v in VERSIONS if _extra("cuda13").specifier.contains(v)] == admitted
    assert not any(_extra("cuda").specifier.contains(v) for v in admitted)
    assert not any(_extra("cuda11").specifier.contains(v) for v in admitted)


@pytest.mark.parametrize(("extra", "resolves"), [("cuda13", True), ("cuda", False)])
def test_pip_resolves_the_extra_beside_the_installed_cu130_torch(extra: str, resolves: bool) -> None:
    torch_version = importlib.metadata.version("torch")
    _torch_needs()
    done = subprocess.run(
        [*PIP_DRY_RUN, f"{ROOT}[{extra}]", f"torch=={torch_version}"],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    if resolves:
        assert done.returncode == 0, done.stderr[-2000:]
    else:
        assert done.returncode != 0 and "conflicting dependencies" in done.stderr, done.stderr[-2000:]
