"""Disk size of an install: the core wheel alone, the core with [onnxruntime,rtx] (build and run from an
ONNX), and [all], each in a fresh venv.

    .venv/bin/python scripts/install_size.py [--out scripts/results] [--no-save]

Builds the wheel (``python -m build``), then for each install creates a venv, installs the wheel with
those extras from the package index (torch pinned to the version the test scripts use, where an extra
brings it), and measures its site-packages minus a bare venv's (pip alone). Writes
OUT/install-size.{json,txt} unless --no-save. Minutes, most of it pip; needs the package index.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resnet_deploy.runtime.machine import cpu_flags, cpu_name, describe_isa  # noqa: E402

INSTALLS = {"core": "", "core + [onnxruntime,rtx]": "onnxruntime,rtx", "[all]": "all"}
PINNED_TORCH = ["torch==2.14.1", "torchvision==0.29.1"]  # what scripts/_venv.sh installs


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def site_packages(venv: Path) -> Path:
    out = subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def measure(wheel: Path, extras: str, work: Path) -> dict[str, object]:
    venv = work / (extras.replace(",", "-") or "core")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    bare = tree_bytes(site_packages(venv))
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if extras == "all":
        subprocess.run([*pip, *PINNED_TORCH], check=True, capture_output=True)
    subprocess.run([*pip, f"{wheel}[{extras}]" if extras else str(wheel)], check=True, capture_output=True)
    packages = json.loads(
        subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return {
        "extras": extras,
        "bytes": tree_bytes(site_packages(venv)) - bare,
        "packages": len(packages) - 1,  # pip itself
        "torch": any(p["name"].lower() == "torch" for p in packages),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", work / "dist", ROOT], check=True, capture_output=True
        )
        (wheel,) = (work / "dist").glob("*.whl")
        sizes = {name: measure(wheel, extras, work) for name, extras in INSTALLS.items()}
    machine = {
        "cpu": cpu_name(),
        "instruction_sets": describe_isa(cpu_flags()),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "platform": sysconfig.get_platform(),
    }
    full = sizes["[all]"]["bytes"]
    lines = [
        f"Installed size (site-packages, minus a bare venv) of the resnet-deploy {wheel.name.split('-')[1]} wheel; "
        f"{machine['os']}, Python {machine['python']}, on {machine['cpu']} ({machine['instruction_sets']}), "
        f"{machine['cores']} cores. Command: python scripts/install_size.py",
        "",
        f"{'install':<26} {'MiB':>8} {'packages':>9} {'torch':>6} {'of [all]':>9}",
    ]
    for name, size in sizes.items():
        mib = size["bytes"] / 2**20
        lines.append(
            f"{name:<26} {mib:8.1f} {size['packages']:9d} {'yes' if size['torch'] else 'no':>6} "
            f"{size['bytes'] / full:9.1%}"
        )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "install-size.json").write_text(
            json.dumps({"machine": machine, "installs": sizes}, indent=2) + "\n"
        )
        (args.out / "install-size.txt").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
