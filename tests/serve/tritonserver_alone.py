"""Start the Triton server binary PyTriton ships (with its Python backend) on a model repository, outside
PyTriton: the serving tests run a `resnet-deploy triton` repository's Python-backend model in a real Triton.

    .venv-serve/bin/python tests/serve/tritonserver_alone.py REPO HTTP_PORT GRPC_PORT METRICS_PORT MODEL...

Runs in the serving environment (PyTriton's binaries, numpy<2); exits with Triton, SIGTERM stops both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from pytriton.triton import TRITONSERVER_DIST_DIR
from pytriton.utils.distribution import get_libs_path, get_stub_path


def main() -> int:
    repository, http, grpc, metrics, *models = sys.argv[1:]
    work = Path(tempfile.mkdtemp(prefix="tritonserver-alone-"))
    try:
        dist = work / "tritonserver"
        shutil.copytree(TRITONSERVER_DIST_DIR, dist, ignore=shutil.ignore_patterns("python_backend_stubs"))
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        shutil.copy(get_stub_path(version), dist / "backends" / "python" / "triton_python_backend_stub")
        env = dict(os.environ)
        # the stub links libpython: this interpreter's own first (see resnet_deploy.serve.shared_libpython)
        libraries = [sysconfig.get_config_var("LIBDIR"), str(get_libs_path()), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libraries if p)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the stub's Python: this one
        command = [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={repository}",
            f"--backend-directory={dist / 'backends'}",
            "--model-control-mode=explicit",
            *(f"--load-model={model}" for model in models),
            "--http-address=127.0.0.1", f"--http-port={http}",
            "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
            f"--metrics-port={metrics}", "--allow-gpu-metrics=false",
            "--exit-timeout-secs=5",
        ]  # fmt: skip
        server = subprocess.Popen(command, env=env)
        signal.signal(signal.SIGTERM, lambda *_: server.send_signal(signal.SIGINT))
        return server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
