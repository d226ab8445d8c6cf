"""OpenVINO on the CPU: FP32, FP16 and both INT8 forms (CPU QLinear and TensorRT Q/DQ) of our ONNX files.

An optional extra (``pip install "resnet-deploy[openvino]"``), imported when an artifact is opened
here. The artifact's precision is what runs: OpenVINO's CPU plugin would otherwise compute FP32 and
FP16 graphs in bfloat16 on CPUs that have it (AVX-512 BF16, AMX), which is faster and changes the
logits by far more than FP32 rounding (0.39 on a random-weight ResNet-50 here). Ask for
``inference_precision="bf16"`` to run that way and ``validate`` what it costs.

``streams`` > 1 compiles with OpenVINO's throughput hint and that many streams, and ``infer_many``
keeps one request per stream in flight.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import is_available, lazy_import
from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, load_onnx, read_lineage
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import MissingDependencyError, RunnerError
from resnet_deploy.runtime.base import Backend, check_threads_and_streams, one_line, run_in_chunks

if TYPE_CHECKING:
    import openvino
else:
    openvino = lazy_import("openvino", extra="openvino")

INSTALL = 'pip install "resnet-deploy[openvino]"'
USE_ONNXRUNTIME = "; run it on ONNX Runtime (`backend=onnxruntime`)"  # ends every failure of OpenVINO's
PRECISIONS = ("f32", "bf16")  # OpenVINO's names; f16 computes in half only on CPUs with AMX-FP16


def import_openvino() -> Any:
    """The ``openvino`` module; one line naming the extra to install when it is absent."""
    try:
        _ = openvino.__version__  # the proxy imports it here
    except MissingDependencyError:
        raise RunnerError(
            f"OpenVINO is not installed: {INSTALL}, or run ONNX files on ONNX Runtime (`backend=onnxruntime`)",
            field="backend",
        ) from None
    return openvino


@functools.lru_cache(maxsize=1)
def openvino_core() -> Any:
    """One ``openvino.Core`` for the process, never unloading its CPU plugin. With a Core per artifact
    (the plugin loaded and unloaded over and over) the test suite's process died with SIGSEGV, twice
    in the same later ``subprocess.run``; with one Core it has not. Fork handlers left behind by an
    unloaded plugin are the likely cause (not proven)."""
    return import_openvino().Core()


def openvino_installed() -> bool:
    return is_available("openvino")


def openvino_failure(exc: BaseException) -> str:
    """What OpenVINO could not do, from its multi-line report: the operations it has no conversion for,
    or the ONNX node that failed, with the first line of why; else its message on one line."""
    text = str(exc)
    missing = re.search(r"No conversion rule found for operations:\s*([^\n]+)", text)
    if missing:
        return f"it has no conversion for {missing.group(1).strip()}"
    node = re.search(r"ONNX node '<Node\(([^)]*)\): ([^>]*)>'", text)
    if node:
        reason = [line.strip() for line in text.splitlines() if line.strip() and "failed at" not in line]
        detail = next((line for line in reversed(reason) if not line.startswith(("While", "Summary", "--"))), "")
        return f"the {node.group(1)} node that outputs {node.group(2)} failed" + (f": {detail[:200]}" if detail else "")
    return one_line(exc)


class OpenVinoBackend(Backend):
    kind = "openvino"

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        streams: int = 1,
        inference_precision: str = "f32",
        _checked: tuple[ArtifactMetadata, str] | None = None,  # metadata and precision, when already read
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise RunnerError(f"ONNX file {path} not found")
        self.streams = check_threads_and_streams(threads, streams)
        if inference_precision not in PRECISIONS:
            raise RunnerError(
                f"inference_precision {inference_precision!r} is not one OpenVINO's CPU takes here; "
                f"use {' or '.join(PRECISIONS)}"
            )
        ov = import_openvino()
        metadata, precision = _checked or self._read_metadata(path)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": inference_precision,
            "PERFORMANCE_HINT": "THROUGHPUT" if self.streams > 1 else "LATENCY",
        }
        if self.streams > 1:
            config["NUM_STREAMS"] = self.streams
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            core = openvino_core()
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with a multi-line report
            raise RunnerError(
                f"OpenVINO cannot compile {path.name}: {openvino_failure(exc)}{USE_ONNXRUNTIME}"
            ) from None
        if self.streams > 1:  # OpenVINO quietly runs fewer streams than asked when threads are too few
            compiled_streams = int(self.compiled.get_property("NUM_STREAMS"))
            if compiled_streams != self.streams:
                raise RunnerError(
                    f"OpenVINO runs {compiled_streams} stream{'s' if compiled_streams != 1 else ''}, not "
                    f"{self.streams}, with {threads or 'all'} thread{'s' if threads != 1 else ''} on this CPU: ask for "
                    f"streams={compiled_streams}, or for as many threads as streams"
                )
        super().__init__(path, metadata, precision)
        self.inference_precision = inference_precision
        self.version = ov.__version__.split("-")[0]
        first = self.compiled.inputs[0].get_partial_shape()[0]
        self.static_batch = first.get_length() if first.is_static else None
        self.request = self.compiled.create_infer_request()
        self.stream_requests = [self.request] + [self.compiled.create_infer_request() for _ in range(self.streams - 1)]

    @staticmethod
    def _read_metadata(path: Path) -> tuple[ArtifactMetadata, str]:
        model = load_onnx(path, external_data=False)  # shapes and props: the weights are OpenVINO's to read
        return check_graph_matches_metadata(model, source=str(path)), read_lineage(model, str(path)).precision

    def _run(self, request: Any, batch: np.ndarray) -> np.ndarray:
        request.infer({0: batch})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request reuses it

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return run_in_chunks(batch, self.static_batch, lambda chunk: self._run(self.request, chunk))

    def _infer_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """One request per stream kept busy: each starts a batch (a chunk of a fixed-batch graph) as soon as
        its previous one is collected. Collecting waits on the request, which lets go of the GIL; no
        callbacks, which would need the GIL on OpenVINO's threads."""
        if self.streams == 1:
            return super()._infer_many(batches)
        size = self.static_batch
        jobs: list[tuple[int, int, np.ndarray]] = []  # (batch, rows, input) with fixed-batch graphs chunked
        for index, batch in enumerate(batches):
            step = size or len(batch)
            for start in range(0, len(batch), step):
                chunk = batch[start : start + step]
                rows = len(chunk)
                if size and rows < size:
                    chunk = np.concatenate([chunk, np.zeros((size - rows, *chunk.shape[1:]), chunk.dtype)])
                jobs.append((index, rows, chunk))
        results: list[np.ndarray] = [np.empty(0, np.float32)] * len(jobs)
        free = deque(self.stream_requests)
        running: deque[tuple[Any, int]] = deque()

        def collect() -> None:
            request, job = running.popleft()
            try:
                request.wait()
                results[job] = np.array(request.get_output_tensor(0).data, dtype=np.float32)[: jobs[job][1]]
            finally:
                free.append(request)

        try:
            for job, (_, _, chunk) in enumerate(jobs):
                if not free:
                    collect()
                request = free.popleft()
                request.start_async({0: chunk})
                running.append((request, job))
            while running:
                collect()
        finally:
            for request, _ in running:  # after a failure: let the others finish before their inputs go
                request.wait()
        outputs: list[list[np.ndarray]] = [[] for _ in batches]
        for (index, _, _), logits in zip(jobs, results, strict=True):
            outputs[index].append(logits)
        return [np.concatenate(parts) for parts in outputs]

    def close(self) -> None:
        self.request = None
        self.stream_requests = []
        self.compiled = None
        super().close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "openvino": self.version, "inference_precision": self.inference_precision}
