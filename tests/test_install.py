"""The package as users install it: a wheel and an sdist that pass ``twine check``, and the core wheel
in a fresh venv without torch, where `--help`, `build-engine` from an ONNX (with [rtx]), `validate`
and the runner on an ONNX (with [onnxruntime]) work, a command needing torch names its extra in one
line, and nothing ever tries to import torch.

Needs the package index pip uses (the wheels of numpy, onnx, onnxruntime, tensorrt-rtx...); about a
minute with pip's cache warm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# Logs every attempt to import torch (a probe such as importlib.util.find_spec is not an attempt).
IMPORT_GUARD = """
import os, sys

class _TorchGuard:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "torchvision"):
            frame, probe = sys._getframe(1), False
            while frame is not None:
                where = frame.f_code.co_filename.replace(os.sep, "/")
                probe = probe or where.endswith("importlib/util.py") or where == "<frozen importlib.util>"
                frame = frame.f_back
            if not probe:
                with open(os.environ["RESNET_DEPLOY_IMPORT_LOG"], "a") as log:
                    log.write(name + "\\n")
        return None

sys.meta_path.insert(0, _TorchGuard())
"""


def _run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True):
    """``args`` run outside this checkout: without the PYTHONPATH the tests give their processes, the
    checkout's own package (and its editable install's metadata) would stand in for the installed one."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, ROOT)
    return out


def test_the_wheel_and_sdist_build_and_pass_twine_check(dist: Path) -> None:
    wheel, sdist = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheel) == 1 and len(sdist) == 1
    check = _run(sys.executable, "-m", "twine", "check", "--strict", *wheel, *sdist)
    assert check.stdout.count("PASSED") == 2
    with zipfile.ZipFile(wheel[0]) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "resnet_deploy/cli/__init__.py" in names and not any(n.startswith("tests/") for n in names)
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert sorted(r.split()[1].rstrip(";").split(">")[0].split("<")[0].lower() for r in core) == [
        "click",
        "numpy",
        "onnx",
        "pillow",
        "tqdm",
    ]
    for extra in ("train", "torch", "onnxruntime", "openvino", "rtx", "cuda", "plot", "docs", "dev", "all"):
        assert f"Provides-Extra: {extra}" in metadata


@pytest.fixture(scope="module")
def core_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the core wheel and the [onnxruntime,rtx] extras, guarded against torch imports."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    (wheel,) = dist.glob("*.whl")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run(python, "-m", "pip", "install", "-q", f"{wheel}[onnxruntime,rtx]", env=env)
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(purelib) / "_resnet_deploy_torch_guard.py").write_text(IMPORT_GUARD)
    (Path(purelib) / "_resnet_deploy_torch_guard.pth").write_text("import _resnet_deploy_torch_guard\n")
    return venv


def test_the_core_install_runs_and_builds_from_an_onnx_without_torch(
    core_venv: Path, resnet20_export, tmp_path: Path
) -> None:
    bindir = core_venv / "bin"
    log = tmp_path / "imports.log"
    env = {**os.environ, "RESNET_DEPLOY_IMPORT_LOG": str(log), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    installed = _run(bindir / "python", "-m", "pip", "list", "--format", "json", env=env).stdout
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed)}
    assert {"resnet-deploy", "onnx", "onnxruntime", "tensorrt-rtx"} <= names
    assert not names & {"torch", "torchvision", "scikit-learn", "onnxscript"}
    assert sysconfig.get_paths()["purelib"] not in _run(bindir / "python", "-c", "import sys; print(sys.path)").stdout

    helped = _run(bindir / "resnet-deploy", "--help", env=env, cwd=tmp_path)
    assert "build-engine" in helped.stdout and "validate" in helped.stdout

    _, exported = resnet20_export
    onnx = tmp_path / "r20.onnx"
    onnx.write_bytes(Path(exported.path).read_bytes())
    built = _run(
        bindir / "resnet-deploy", "build-engine", "--onnx", onnx, "--target-cc", "8.9", "--json", env=env, cwd=tmp_path
    )
    assert json.loads(built.stdout)["ok"] is True
    engine = tmp_path / "r20.engine"
    assert engine.stat().st_size > 100_000 and (tmp_path / "r20.engine.json").is_file()

    rng = np.random.default_rng(0)
    for name in "abcdefghij":  # the model's 10 classes
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
                tmp_path / "images" / name / f"{i}.png"
            )
    scored = _run(
        bindir / "resnet-deploy",
        "validate",
        "--checkpoint",
        onnx,
        "--data",
        f"imagefolder:{tmp_path / 'images'}",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    report = json.loads(scored.stdout)
    assert report["ok"] and report["reference"]["backend"] in ("onnxruntime", "openvino")
    assert report["reference"]["images"] == 10  # the seeded 10% held out of each class: 1 of 6, ten times

    runner = _run(
        bindir / "python",
        "-c",
        "import sys, numpy as np; from resnet_deploy.runtime import Runner\n"
        f"with Runner.load({str(onnx)!r}) as r:\n"
        "    top = r.classify([np.zeros((50, 40, 3), np.uint8)], topk=3)[0]\n"
        "    print(len(top), r.infer(np.zeros((2, 3, 32, 32), np.float32)).shape, 'torch' in sys.modules)",
        env=env,
    )
    assert runner.stdout.split() == ["3", "(2,", "10)", "False"]

    assert not log.exists(), f"tried to import {log.read_text().split()}"

    refused = _run(bindir / "resnet-deploy", "info", "--depth", "20", env=env, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert 'needs torch, which is not installed: pip install "resnet-deploy[train]"' in refused.stderr
    assert log.read_text().split() == ["torch"]  # the guard sees an attempt: its silence above means none
