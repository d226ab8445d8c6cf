"""A real Triton server with our runner behind it, through PyTriton (which embeds Triton's own server).

    from resnet_deploy.serve.server import ServeSettings, TritonServer

    with TritonServer("r50.onnx", ServeSettings(http_port=8000)) as server:
        server.wait()                                   # until Ctrl-C, SIGTERM, or Triton stops

Clients speak Triton's HTTP and gRPC protocol (KServe v2) with any client, ``tritonclient`` among them.
Each artifact is served as two models:

- ``NAME``: the artifact's own input ``input``: normalised float32 (3, S, S), or raw (H, W, 3) frames
  (uint8, or float32 as converted) for a model with its preprocessing inside; dynamically batched;
  outputs ``logits`` and ``probabilities`` (softmax, the runner's scores). Triton's classification
  extension works on both: ask for an output with ``class_count=k`` and get ``"score:index"`` strings,
  best first.
- ``NAME_images``: encoded images (``image``, BYTES: JPEG, PNG, any file Pillow decodes), preprocessed
  here with the runner's one preprocessing; outputs ``logits``, ``probabilities`` and ``top``
  (``"score:index:label"``, the ``topk`` best). Each request is processed alone, so one request's bad
  image fails that request only.

``instances`` runners serve each model (one per Triton instance); Triton's health (``/v2/health/ready``)
and Prometheus metrics (``/metrics`` on ``metrics_port``) endpoints come with the server. Stopping it
(Ctrl-C, SIGTERM, ``close()``) lets requests in flight finish. Needs the ``serve`` extra, in its own
environment (PyTriton pins numpy<2), and a Python with a shared libpython (see ``shared_libpython``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import ResnetDeployError, RunnerError
from resnet_deploy.runtime import Runner
from resnet_deploy.serve.encoded_image import decode_image
from resnet_deploy.serve.shared_libpython import environment_for_stub

if TYPE_CHECKING:
    import pytriton.decorators as pytriton_decorators
    import pytriton.model_config as pytriton_model_config
    import pytriton.triton as pytriton_triton
    from PIL import Image
else:
    pytriton_triton = lazy_import("pytriton.triton", extra="serve")
    pytriton_model_config = lazy_import("pytriton.model_config", extra="serve")
    pytriton_decorators = lazy_import("pytriton.decorators", extra="serve")
    Image = lazy_import("PIL.Image")

IMAGES_SUFFIX = "_images"
HANDSHAKE_TRIES = 3
INPUT_NAME = "input"
# Triton's APIs that change the server, kept to PyTriton's own token; statistics and the model list stay
# open (read-only): load-test and perf_analyzer read them
RESTRICTED_ENDPOINTS = ("shared-memory", "model-repository", "trace", "logging")


@dataclass(frozen=True)
class ServeSettings:
    """How to serve: where (``host``, ports), how many runners (``instances``), how Triton batches.

    ``max_batch``: the largest batch Triton forms (an engine's profile caps it); ``max_queue_delay_us``:
    how long a request waits for others to join its batch; ``preferred_batch``: batch sizes Triton aims
    for (none: any up to ``max_batch``). ``threads``: CPU threads of each ONNX runner (None: the
    runtime's default). ``exit_timeout_s``: how long stopping waits for requests in flight."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    name: str | None = None
    backend: str = "auto"
    instances: int = 1
    max_batch: int = 8
    max_queue_delay_us: int = 500
    preferred_batch: tuple[int, ...] = ()
    threads: int | None = None
    topk: int = 5
    exit_timeout_s: int = 10
    log_file: Path | None = None  # Triton's own log (None: a file in the server's workspace)


def model_name(path: str | Path, name: str | None = None) -> str:
    """Triton's name for the artifact: ``name``, or the file's stem with what Triton refuses replaced."""
    raw = name if name is not None else Path(path).name.split(".")[0]
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in raw).strip("_") or "model"
    if name is not None and cleaned != name:
        raise RunnerError(
            f"model name {name!r} has characters Triton refuses: use letters, digits, '-' and '_'", field="name"
        )
    return cleaned


def softmax(logits: np.ndarray) -> np.ndarray:
    """The runner's scores (``Runner.predictions``): softmax in float64, then float32."""
    wide = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(wide - wide.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


class TritonServer:
    """Triton serving one artifact (as ``NAME`` and ``NAME_images``), our runners behind it."""

    def __init__(self, path: str | Path, settings: ServeSettings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or ServeSettings()
        self.name = model_name(self.path, self.settings.name)
        self.runners: list[Runner] = []
        self._triton: Any = None
        self._workspace: Path | None = None
        self._stop = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> TritonServer:
        """Open the runners, start Triton on ``host`` and load both models; returns when they are ready."""
        options = {"threads": self.settings.threads} if self.settings.threads else {}
        suffix = self.path.name.lower()
        backend = self.settings.backend if suffix.endswith(".onnx") else "auto"
        try:
            for _ in range(self.settings.instances):
                self.runners.append(Runner.load(self.path, backend=backend, **options))
            os.environ["LD_LIBRARY_PATH"] = environment_for_stub()["LD_LIBRARY_PATH"]  # Triton copies it
            logging.getLogger("pytriton").setLevel(logging.CRITICAL)  # Triton's own log goes to log_file
            for attempt in range(1, HANDSHAKE_TRIES + 1):
                try:
                    self._start_triton()
                    break
                except ResnetDeployError:  # ours, in one line already (PyTriton missing, a bad model)
                    raise
                except Exception as exc:
                    # PyTriton's instances after the first wait 1 s for the first one's handshake socket;
                    # on a loaded machine that can be too short: start again
                    if attempt == HANDSHAKE_TRIES or "handshake" not in str(exc):
                        raise RunnerError(
                            f"Triton did not load {self.name}: {str(exc).strip().splitlines()[-1]}{self._log_hint()}"
                        ) from None
                    self._stop_triton()
        except BaseException:
            self.close()
            raise
        return self

    def _start_triton(self) -> None:
        self._workspace = Path(tempfile.mkdtemp(prefix="resnet-deploy-triton-"))
        log = self.settings.log_file or self._workspace / "triton.log"
        with _children_write_to(processes_log(log)):
            self._triton = pytriton_triton.Triton(
                config=self._config(),
                workspace=self._workspace / "workspace",
                security_config=pytriton_triton.TritonSecurityConfig(restricted_endpoints=list(RESTRICTED_ENDPOINTS)),
            )
            self._triton.__enter__()
            self._bind()
            self._triton.run()

    def _stop_triton(self) -> None:
        triton, self._triton = self._triton, None
        if triton is not None and self._workspace is not None:
            log = self.settings.log_file or self._workspace / "triton.log"
            with _children_write_to(processes_log(log)):  # Triton says "Signal (2) received."
                triton.stop()
        if self._workspace is not None and self.settings.log_file is None:
            shutil.rmtree(self._workspace, ignore_errors=True)
        self._workspace = None

    def wait(self, poll_s: float = 0.5) -> None:
        """Serve until ``stop()`` (another thread, a signal handler), Ctrl-C, or Triton stopping on its own."""
        while not self._stop.is_set():
            time.sleep(poll_s)  # not Event.wait: a KeyboardInterrupt inside its lock breaks the lock
            if not self._stop.is_set() and not self._triton.is_alive():
                raise RunnerError(f"the Triton server stopped on its own{self._log_hint()}")

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop Triton (requests in flight finish, up to ``exit_timeout_s``), then close the runners."""
        self._stop_triton()
        for runner in self.runners:
            runner.close()
        self.runners = []

    def _log_hint(self) -> str:
        if self.settings.log_file is not None:
            return f"; Triton's log: {self.settings.log_file}"
        return "; serve again with `log_file` set to keep Triton's log"

    @property
    def urls(self) -> dict[str, str]:
        s = self.settings
        return {
            "http": f"http://{s.host}:{s.http_port}",
            "grpc": f"{s.host}:{s.grpc_port}",
            "metrics": f"http://{s.host}:{s.metrics_port}/metrics",
        }

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- what Triton serves -----------------------------------------------------------------------
    @property
    def input_name(self) -> str:
        return INPUT_NAME  # the artifact's own name, as in a `triton` repository: clients move between them

    def _config(self) -> Any:
        s = self.settings
        assert self._workspace is not None
        return pytriton_triton.TritonConfig(
            http_address=s.host,
            http_port=s.http_port,
            grpc_address=s.host,
            grpc_port=s.grpc_port,
            metrics_address=s.host,
            metrics_port=s.metrics_port,
            allow_metrics=True,
            allow_gpu_metrics=False,
            exit_timeout_secs=s.exit_timeout_s,
            log_file=s.log_file or self._workspace / "triton.log",
        )

    def _max_batch(self) -> int:
        """``max_batch``, capped by what an engine's optimisation profile allows."""
        cap = getattr(self.runners[0].backend, "max_batch", None)  # TensorRT: the profile's max
        return min(self.settings.max_batch, int(cap)) if isinstance(cap, int) and cap > 0 else self.settings.max_batch

    def _bind(self) -> None:
        mc = pytriton_model_config
        runner = self.runners[0]
        shape = tuple(int(d) for d in runner.backend.input_shape)
        dtype = runner.backend.input_dtype.type  # float32; uint8 or float32 frames for a frames model
        classes = len(runner.class_names)
        scores = [
            mc.Tensor(name="logits", dtype=np.float32, shape=(classes,)),
            mc.Tensor(name="probabilities", dtype=np.float32, shape=(classes,)),
        ]
        batch = self._max_batch()
        preferred = [b for b in self.settings.preferred_batch if b <= batch] or None
        batcher = mc.DynamicBatcher(
            max_queue_delay_microseconds=self.settings.max_queue_delay_us, preferred_batch_size=preferred
        )
        self._triton.bind(
            model_name=self.name,
            infer_func=[self._tensor_infer(r) for r in self.runners],
            inputs=[mc.Tensor(name=self.input_name, dtype=dtype, shape=shape)],
            outputs=scores,
            config=mc.ModelConfig(max_batch_size=batch, batcher=batcher),
            strict=True,
        )
        self._triton.bind(
            model_name=self.name + IMAGES_SUFFIX,
            infer_func=[self._images_infer(r) for r in self.runners],
            inputs=[mc.Tensor(name="image", dtype=bytes, shape=(1,))],
            outputs=[*scores, mc.Tensor(name="top", dtype=bytes, shape=(min(self.settings.topk, classes),))],
            # no dynamic batching: a request is processed alone, so its bad image fails it alone
            config=mc.ModelConfig(max_batch_size=batch, batcher=mc.DynamicBatcher(max_queue_delay_microseconds=0)),
            strict=True,
        )

    def _tensor_infer(self, runner: Runner) -> Callable[..., Any]:
        name = self.input_name

        @pytriton_decorators.batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            logits = np.asarray(runner.infer(inputs[name]), dtype=np.float32)
            return {"logits": logits, "probabilities": softmax(logits)}

        return infer

    def _images_infer(self, runner: Runner) -> Callable[..., Any]:
        topk = self.settings.topk

        def infer(requests: list[Any]) -> list[dict[str, np.ndarray]]:
            responses = []
            for request in requests:
                items = np.asarray(request["image"]).reshape(-1)
                images = [decode_image(item, i) for i, item in enumerate(items)]
                logits = np.asarray(runner.infer(runner.preprocess(images)), dtype=np.float32)
                top = [
                    [f"{p.score:.6f}:{p.index}:{p.label}".encode() for p in row]
                    for row in runner.predictions(logits, topk)
                ]
                responses.append(
                    {"logits": logits, "probabilities": softmax(logits), "top": np.array(top, dtype=np.object_)}
                )
            return responses

        return infer


PROCESSES_SUFFIX = ".processes"
_TRITON_LOG_LINE = re.compile(rb"[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\] ")  # glog's prefix


def processes_log(log: Path) -> Path:
    """Where what Triton's processes print goes, beside its log."""
    return log.with_name(log.name + PROCESSES_SUFFIX)


def is_triton_log(path: Path) -> bool:
    """``path`` is a log Triton wrote (its first line has glog's prefix), or empty: a rerun may replace it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return not head or _TRITON_LOG_LINE.match(head) is not None


@contextlib.contextmanager
def _children_write_to(path: Path) -> Iterator[None]:
    """Processes started inside (Triton, its Python stubs, PyTriton's tensor store) write their stdout and
    stderr to ``path``, not this process's: ``serve --json`` keeps its stdout for its JSON lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


@dataclass(frozen=True)
class ServedModel:
    """What a client needs: the model names and inputs (``ServeReport`` and ``serve --json`` carry it)."""

    name: str
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    classes: int
    max_batch: int
    urls: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "images_model": self.name + IMAGES_SUFFIX,
            "input": {"name": self.input_name, "shape": list(self.input_shape), "datatype": self.input_dtype},
            "classes": self.classes,
            "max_batch": self.max_batch,
            "urls": self.urls,
        }


def served_model(server: TritonServer) -> ServedModel:
    runner = server.runners[0]
    return ServedModel(
        name=server.name,
        input_name=server.input_name,
        input_shape=tuple(int(d) for d in runner.backend.input_shape),
        input_dtype="UINT8" if runner.backend.input_dtype == np.uint8 else "FP32",
        classes=len(runner.class_names),
        max_batch=server._max_batch(),
        urls=server.urls,
    )
