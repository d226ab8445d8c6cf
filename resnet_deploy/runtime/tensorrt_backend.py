"""TensorRT / TensorRT-RTX engines: checked against their sidecar, then run with reused buffers.

Before an engine is deserialised its sidecar (``ENGINE.json`` from ``build-engine``) is checked:
the file's sha256 (a truncated or foreign file is an error, never a crash in TensorRT), the
installed TensorRT version and the GPU's compute capability. A mismatch is refused with the
command that rebuilds the engine.

Running: the name-based API (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``); device and pinned host buffers for the profile's max batch, allocated once;
our own stream and async copies; any batch size (larger than the profile's max: split into
max-batch chunks, in order; smaller than its min, e.g. 3 images for a static-batch-8 engine:
zero-padded, the padding's logits dropped); optional CUDA graph capture per batch size
(``cuda_graph=True``, TensorRT with cuda-python); and torch CUDA tensors in, torch CUDA tensors
out, with no copy (within the profile).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.metadata import ArtifactMetadata
from resnet_deploy.runtime.base import Backend

if TYPE_CHECKING:
    import tensorrt as trt_types

    from resnet_deploy.runtime.cuda_memory import CudaPython, PyCuda


class EngineMismatchError(ResnetDeployError):
    pass


def rebuild_hint(sidecar: dict[str, Any]) -> str:
    command = sidecar.get("rebuild_command")
    if not command:
        precision = sidecar.get("precision", "fp32")
        flag = "" if precision == "fp32" else f" --{precision}"
        command = f"resnet-deploy build-engine --onnx {sidecar.get('source_onnx', 'MODEL.onnx')}{flag}"
    return f"rebuild it here: {command}"


def check_engine_file(path: Path, sidecar: dict[str, Any]) -> bytes:
    from resnet_deploy._io import sha256_bytes

    data = path.read_bytes()
    if len(data) != sidecar.get("engine_bytes") or sha256_bytes(data) != sidecar.get("engine_sha256"):
        raise EngineMismatchError(
            f"{path} ({len(data)} bytes) does not match its sidecar ({sidecar.get('engine_bytes')} bytes, "
            f"sha256 {str(sidecar.get('engine_sha256'))[:12]}...): truncated, damaged or replaced; "
            + rebuild_hint(sidecar)
        )
    return data


def check_version(sidecar: dict[str, Any], installed: str, path: Path) -> None:
    from resnet_deploy.engine.backends import version_tuple

    built = str(sidecar.get("backend_version"))
    same = version_tuple(built)[:3] == version_tuple(installed)[:3]
    later = version_tuple(installed)[:2] >= version_tuple(built)[:2]
    if not same and not (sidecar.get("version_compatible") and later):
        raise EngineMismatchError(
            f"{path} was built with {sidecar.get('backend')} {built} but {installed} is installed; "
            "engines run only on the version that built them (unless built --version-compatible); "
            + rebuild_hint(sidecar)
        )


def check_gpu(sidecar: dict[str, Any], gpu_name: str, compute_capability: str, path: Path) -> None:
    targets = sidecar.get("targets") or {}
    wanted = targets.get("compute_capabilities")  # TensorRT-RTX
    if wanted and wanted != ["current GPU"] and compute_capability not in wanted:
        raise EngineMismatchError(
            f"{path} was built for compute capabilities {', '.join(wanted)} but this GPU ({gpu_name}) is "
            f"{compute_capability}; {rebuild_hint(sidecar)} (or add --target-cc {compute_capability})"
        )
    built_cc = targets.get("compute_capability")  # full TensorRT: the GPU it was built on
    if wanted is None and built_cc and built_cc != compute_capability:
        major = int(compute_capability.split(".")[0])
        if not (sidecar.get("hardware_compat") == "ampere+" and major >= 8):
            raise EngineMismatchError(
                f"{path} was built on {targets.get('gpu')} (compute capability {built_cc}) but this GPU "
                f"({gpu_name}) is {compute_capability}; {rebuild_hint(sidecar)} "
                "(or build with --hardware-compat ampere+)"
            )


class TensorRTBackend(Backend):
    kind = "tensorrt"

    def __init__(self, path: str | Path, cuda_graph: bool = False) -> None:
        from resnet_deploy.engine.backends import choose
        from resnet_deploy.engine.network import make_logger
        from resnet_deploy.engine.sidecar import read_sidecar
        from resnet_deploy.runtime.cuda_memory import open_cuda

        path = Path(path)
        sidecar = read_sidecar(path)
        data = check_engine_file(path, sidecar)
        flavour = choose(sidecar.get("backend"))  # the TensorRT that built it, or how to install it
        check_version(sidecar, flavour.version, path)
        cuda = open_cuda()
        gpu_name, compute_capability = cuda.device_properties()
        check_gpu(sidecar, gpu_name, compute_capability, path)

        trt = flavour.module
        self.kind = flavour.name
        self.logger = make_logger(trt)
        mark = self.logger.mark()
        self.runtime: trt_types.Runtime = trt.Runtime(self.logger)
        if sidecar.get("version_compatible"):
            self.runtime.engine_host_code_allowed = True  # the plan carries its lean runtime
        if cuda_graph and not cuda.supports_graphs:
            raise ResnetDeployError(
                f"cuda_graph=True needs cuda-python for graph capture; this runner has {type(cuda).__name__}"
            )
        if cuda_graph and flavour.is_rtx:
            raise ResnetDeployError(
                "cuda_graph=True is for TensorRT engines; TensorRT-RTX captures CUDA graphs itself "
                "(its stream capture needs engines built with REQUIRE_USER_ALLOCATION)"
            )
        engine: trt_types.ICudaEngine | None = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            errors = self.logger.since(mark)
            raise EngineMismatchError(
                f"{flavour.name} {flavour.version} cannot load {path} ({errors}); {rebuild_hint(sidecar)}"
            )
        self.engine = engine
        self.context: trt_types.IExecutionContext = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineMismatchError(f"{path} has inputs {inputs} and outputs {outputs}; expected one of each")
        self.input_name, self.output_name = inputs[0], outputs[0]
        for name in (self.input_name, self.output_name):
            if engine.get_tensor_dtype(name) != trt.float32:
                raise EngineMismatchError(
                    f"{path}: tensor {name!r} is {engine.get_tensor_dtype(name)}, but the runner feeds and reads "
                    "float32 (engines from build-engine keep float32 I/O); rebuild it with resnet-deploy build-engine"
                )
        low, _, high = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.sample_shape = tuple(int(d) for d in high[1:])
        out_shape = engine.get_tensor_shape(self.output_name)
        self.num_classes = int(out_shape[len(out_shape) - 1])

        self.cuda: CudaPython | PyCuda = cuda
        self.host_in = cuda.alloc_pinned((self.max_batch, *self.sample_shape), np.float32)
        self.host_out = cuda.alloc_pinned((self.max_batch, self.num_classes), np.float32)
        self.device_in = cuda.alloc_device(self.host_in.nbytes)
        self.device_out = cuda.alloc_device(self.host_out.nbytes)
        self.cuda_graph = cuda_graph
        self._graphs: dict[int, Any] = {}
        self._events: tuple[Any, Any] | None = None
        self.sidecar = sidecar
        metadata = ArtifactMetadata.from_props(sidecar.get("model") or {}, source=str(path))
        super().__init__(path, metadata, str(sidecar.get("precision", "fp32")))

    def infer(self, batch: Any) -> Any:
        if _is_torch_cuda(batch):
            self._check_open()
            return self._infer_torch(batch)
        return super().infer(batch)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        chunks = [batch[i : i + self.max_batch] for i in range(0, len(batch), self.max_batch)]
        return np.concatenate([self._run_chunk(c) for c in chunks])  # above max: split, in order

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        rows = max(n, self.min_batch)  # a short last chunk is padded up to the profile's minimum
        in_bytes = rows * int(np.prod(self.sample_shape)) * 4
        out_bytes = rows * self.num_classes * 4
        self.host_in[:n] = chunk
        self.host_in[n:rows] = 0
        self._set_shape(rows)
        self.context.set_tensor_address(self.input_name, self.device_in)
        self.context.set_tensor_address(self.output_name, self.device_out)
        if self.cuda_graph:
            graph = self._graphs.get(rows)
            if graph is None:
                self._execute(self.cuda.stream_handle)  # TensorRT wants one run after a shape change, before capture
                self.cuda.synchronize()
                graph = self._graphs[rows] = self._capture(in_bytes, out_bytes)
            self.cuda.launch(graph)
        else:
            self.cuda.h2d(self.device_in, self.host_in, in_bytes)
            self._execute(self.cuda.stream_handle)
            self.cuda.d2h(self.host_out, self.device_out, out_bytes)
        self.cuda.synchronize()
        return self.host_out[:n].copy()

    def _capture(self, in_bytes: int, out_bytes: int) -> Any:
        self.cuda.begin_capture()
        try:
            self.cuda.h2d(self.device_in, self.host_in, in_bytes)
            self._execute(self.cuda.stream_handle)
            self.cuda.d2h(self.host_out, self.device_out, out_bytes)
        except BaseException:
            self.cuda.abort_capture()  # never leave the stream capturing
            raise
        return self.cuda.end_capture()

    def _set_shape(self, rows: int) -> None:
        mark = self.logger.mark()
        if not self.context.set_input_shape(self.input_name, (rows, *self.sample_shape)):
            raise ResnetDeployError(
                f"{self.path.name} refused batch {rows} (profile {self.min_batch}..{self.max_batch}): "
                + self.logger.since(mark)
            )

    def _execute(self, stream: int) -> None:
        mark = self.logger.mark()
        if not self.context.execute_async_v3(stream):
            raise ResnetDeployError(f"TensorRT failed to run {self.path.name}: {self.logger.since(mark)}")

    timer = "cuda-events"

    def timed_infer(self, batch: np.ndarray) -> float:
        """Stream time of one call, copies included: events recorded around it on the runner's stream."""
        if self._events is None:
            self._events = (self.cuda.event(), self.cuda.event())
        start, end = self._events
        self.cuda.record(start)
        self.infer(batch)
        self.cuda.record(end)
        return self.cuda.elapsed_seconds(start, end)

    def _infer_torch(self, batch: Any) -> Any:
        """Zero-copy: the caller's CUDA tensor in, a new CUDA tensor out, on torch's current stream."""
        import torch

        if tuple(batch.shape[1:]) != self.sample_shape or batch.dtype != torch.float32:
            raise ResnetDeployError(
                f"{self.path.name} expects (N, {', '.join(map(str, self.sample_shape))}) float32, "
                f"got {tuple(batch.shape)} {batch.dtype}"
            )
        if not self.min_batch <= len(batch) <= self.max_batch:
            raise ResnetDeployError(f"{self.path.name} takes batches of {self.min_batch} to {self.max_batch}")
        batch = batch.contiguous()
        out = torch.empty((len(batch), self.num_classes), dtype=torch.float32, device=batch.device)
        self._set_shape(len(batch))
        self.context.set_tensor_address(self.input_name, batch.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        self._execute(torch.cuda.current_stream(batch.device).cuda_stream)
        return out

    def close(self) -> None:
        if not self._closed:
            for graph in self._graphs.values():
                self.cuda.destroy_graph(graph)
            self._graphs = {}
            del self.context, self.engine
            self.cuda.close()
        super().close()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "backend_version": self.sidecar.get("backend_version"),
            "batch": f"{self.min_batch}..{self.max_batch}",
            "cuda": self.cuda.name,
            "cuda_graph": self.cuda_graph,
        }


def _is_torch_cuda(batch: Any) -> bool:
    return type(batch).__module__.startswith("torch") and bool(getattr(batch, "is_cuda", False))
