"""Every script runs from a bare checkout: on a lent GPU machine the project is not installed, and a
script that imports resnet_deploy must find it in the checkout it lies in, from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "scripts").glob("*.py") if "resnet_deploy" in p.read_text())

# resnet_deploy made unimportable but through the script's own doing: the editable install's finder,
# the checkout on the path and any PYTHONPATH gone; then each script loaded (its main not run)
PROBE = """
import importlib.util, json, runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__ + repr(f)]
sys.path[:] = [p for p in sys.path if p not in ("", ROOT) and "__editable__" not in p]
assert importlib.util.find_spec("resnet_deploy") is None, "the probe failed to hide the install"
found = {}
for script in SCRIPTS:
    saved = list(sys.path)
    runpy.run_path(script, run_name="__loaded__")
    spec = importlib.util.find_spec("resnet_deploy")
    found[script] = spec.origin if spec else None
    sys.path[:] = saved
    for name in [m for m in sys.modules if m == "resnet_deploy" or m.startswith("resnet_deploy.")]:
        del sys.modules[name]
print(json.dumps(found))
"""


def test_every_script_finds_this_checkouts_package_without_an_install(tmp_path: Path) -> None:
    assert len(SCRIPTS) >= 10
    code = f"ROOT = {str(ROOT)!r}\nSCRIPTS = {[str(s) for s in SCRIPTS]!r}\n{PROBE}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    origins = json.loads(done.stdout.splitlines()[-1])
    assert origins == {str(s): str(ROOT / "resnet_deploy" / "__init__.py") for s in SCRIPTS}
