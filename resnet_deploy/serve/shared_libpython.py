"""The shared libpython Triton's Python backend stub needs, found for the interpreter that serves.

PyTriton's Triton runs the model through a stub process (``triton_python_backend_stub``) that links
``libpython3.X.so.1.0`` and imports this interpreter's standard library and packages. The dynamic
loader looks for that library in the system's directories first, so under pyenv (or any Python
installed outside them) the stub gets the system's libpython of another patch release beside this
interpreter's standard library, and fails as the model loads (seen: Debian's 3.11.2 library under
pyenv's 3.11.7 stdlib, ``'_thread.RLock' object has no attribute '_recursion_count'``). Putting this
interpreter's own library directory first on ``LD_LIBRARY_PATH`` of the server's environment makes
the stub load the matching library.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from resnet_deploy.errors import MissingDependencyError


def libpython_dir() -> Path:
    """The directory holding this interpreter's shared libpython; one line when it has none."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    libdir = sysconfig.get_config_var("LIBDIR")
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    candidates = [Path(libdir) / f"libpython{version}.so.1.0"] if libdir else []
    if shared and candidates and candidates[0].is_file():
        return candidates[0].parent
    raise MissingDependencyError(
        f"serving through Triton needs a Python {version} built with a shared libpython (libpython{version}.so), "
        f"and {sys.executable} has none (a static build): make the serving environment from the system's Python "
        f"(apt install python{version}-venv; /usr/bin/python{version} -m venv), or build this Python with its "
        "shared library (pyenv: PYTHON_CONFIGURE_OPTS set to enable-shared before pyenv install)"
    )


def environment_for_stub(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with this interpreter's libpython directory first on
    ``LD_LIBRARY_PATH``, for the Triton server and the stub it starts."""
    env = dict(os.environ if environ is None else environ)
    first = str(libpython_dir())
    rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != first]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([first, *rest])
    return env
