"""TensorRT / TensorRT-RTX engines: checked against their sidecar, then run with reused buffers.

Life cycle (as Polygraphy's runners): *load* reads and checks the sidecar (the file's sha256, so a
truncated or foreign file is an error and never a crash in TensorRT; the installed TensorRT
version; the GPU's compute capability), sets the DLA core the engine was built for, and
deserialises; *activate* creates the stream, the pinned and device buffers and the execution
context; ``close()`` frees all of it. A refusal or failure at any step frees everything acquired
before it. A mismatch is refused with the command that rebuilds the engine.

Running, always on the runner's own non-blocking stream:

- numpy in, numpy out: the name-based API (``set_input_shape``, ``set_tensor_address``, both
  checked, ``execute_async_v3``), buffers for the profile's max batch allocated once; any batch
  size (above the profile's max: split into max-batch chunks, in order; below its min, e.g. 3
  images for a static-batch-8 engine: zero-padded, the padding's logits dropped);
- ``cuda_graph=True`` (TensorRT with cuda-python): one CUDA graph per batch size, each captured on
  an execution context of its own whose shape never changes again (a graph is valid only for the
  shapes it was captured with), the contexts sharing one block of activation memory where the
  release allows it (launches are serialised on one stream);
- torch CUDA tensors in, a torch CUDA tensor out, without a copy (within the profile): the caller's
  current torch stream and the runner's stream are ordered both ways with events, so TensorRT never
  runs on the legacy default stream and never overlaps the runner's other work; a tensor that is
  not 256-byte aligned (a view with an offset) is copied, one on another GPU refused.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._io import sha256_bytes
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata, check_io
from resnet_deploy.errors import EngineMismatchError, RunnerError
from resnet_deploy.runtime.base import Backend
from resnet_deploy.runtime.cuda_memory import open_cuda
from resnet_deploy.trt.flavours import choose, version_tuple
from resnet_deploy.trt.logger import make_logger

if TYPE_CHECKING:
    import tensorrt as trt_types
    import torch

    from resnet_deploy.runtime.cuda_memory import CudaPython, PyCuda
else:
    torch = lazy_import("torch", extra="train")  # zero-copy torch tensors only: a runner needs no torch

ALIGNMENT = 256  # TensorRT's requirement for every tensor address (NvInferRuntime.h, setTensorAddress)
# Version-compatible engines across majors: the pairs NVIDIA's support matrix lists (8 -> 10, 10 -> 11)
CROSS_MAJOR = {(8, 10), (10, 11)}


def check_engine_file(path: Path, sidecar: EngineSidecar) -> bytes:
    data = path.read_bytes()
    if len(data) != sidecar.engine_bytes or sha256_bytes(data) != sidecar.engine_sha256:
        raise EngineMismatchError(
            f"{path} ({len(data)} bytes) does not match its sidecar ({sidecar.engine_bytes} bytes, "
            f"sha256 {sidecar.engine_sha256[:12]}...): truncated, damaged or replaced; " + sidecar.rebuild_hint()
        )
    return data


def check_version(sidecar: EngineSidecar, installed: str, path: Path) -> None:
    """Same version, or a version-compatible engine on a later release its lean runtime covers."""
    built_text = sidecar.backend_version
    built, here = version_tuple(built_text), version_tuple(installed)
    if built[:3] == here[:3]:
        return
    if sidecar.version_compatible:
        if built[:2] <= here[:2] and (built[0] == here[0] or (built[0], here[0]) in CROSS_MAJOR):
            return
        raise EngineMismatchError(
            f"{path} is version-compatible from {sidecar.backend} {built_text}, but {installed} is installed: "
            "such engines run on later releases of the same major version, and from 8.x on 10.x and from 10.x "
            f"on 11.x only; {sidecar.rebuild_hint()}"
        )
    raise EngineMismatchError(
        f"{path} was built with {sidecar.backend} {built_text} but {installed} is installed; "
        "engines run only on the version that built them (unless built `version_compatible`); "
        + sidecar.rebuild_hint(),
        field="version_compatible",
    )


def check_gpu(sidecar: EngineSidecar, gpu_name: str, compute_capability: str, path: Path) -> None:
    targets = sidecar.targets
    wanted = targets.compute_capabilities  # TensorRT-RTX
    if wanted and wanted != ("current GPU",) and compute_capability not in wanted:
        raise EngineMismatchError(
            f"{path} was built for compute capabilities {', '.join(wanted)} but this GPU ({gpu_name}) is "
            f"{compute_capability}; {sidecar.rebuild_hint()} (or add `target_cc={compute_capability}`)",
            field="target_cc",
        )
    built_cc = targets.compute_capability  # full TensorRT: the GPU it was built on
    if wanted is None and built_cc and built_cc != compute_capability:
        major = int(compute_capability.split(".")[0])
        if not (sidecar.hardware_compat == "ampere+" and major >= 8):
            raise EngineMismatchError(
                f"{path} was built on {targets.gpu} (compute capability {built_cc}) but this GPU "
                f"({gpu_name}) is {compute_capability}; {sidecar.rebuild_hint()} "
                "(or build with `hardware_compat=ampere+`)",
                field="hardware_compat",
            )


def check_engine_io(
    engine: Any, sidecar: EngineSidecar, metadata: ArtifactMetadata, props: dict[str, str], path: Path
) -> None:
    """The engine's tensors (names, per-sample shapes) must be what its sidecar records (``io``) and the
    classifier its model metadata promises: else validate and classify would fail half-way."""
    recorded = sidecar.io or {}
    for kind, name in (("inputs", engine.input_name), ("outputs", engine.output_name)):
        names = [t.get("name") for t in recorded.get(kind) or []]
        if names and names != [name]:
            raise EngineMismatchError(
                f"{path}'s sidecar records {kind} {names} but the engine has {name!r}: the sidecar belongs to "
                f"another engine or was edited; {sidecar.rebuild_hint()}"
            )
    check_io(
        metadata,
        props,
        [(engine.input_name, ("N", *engine.sample_shape), engine.input_type)],  # I/O types checked by the caller
        [(engine.output_name, ("N", engine.num_classes), "float32")],
        f"{path} (against its sidecar's model metadata)",
        fix=f"re-export the model and {sidecar.rebuild_hint()}",
    )


class TensorRTBackend(Backend):
    kind = "tensorrt"
    timer = "cuda-events"

    def __init__(self, path: str | Path, cuda_graph: bool = False) -> None:
        if not isinstance(cuda_graph, bool):
            raise RunnerError(f"cuda_graph is True or False, not {cuda_graph!r}")
        self._resources = ExitStack()  # unwound by close(), or at once when loading or activating fails
        try:
            self._load(Path(path), cuda_graph)
            self._activate()
        except BaseException:
            self._resources.close()
            raise

    # -- load: check, open CUDA, deserialise ---------------------------------------------------
    def _load(self, path: Path, cuda_graph: bool) -> None:
        sidecar = EngineSidecar.read(path)  # its fields' types checked
        model_props = sidecar.model
        metadata = ArtifactMetadata.from_props(model_props, source=f"{path} (its sidecar's model)")
        data = check_engine_file(path, sidecar)
        flavour = choose(sidecar.backend)  # the TensorRT that built it, or how to install it
        check_version(sidecar, flavour.version, path)
        if cuda_graph and flavour.is_rtx:
            raise RunnerError(
                "cuda_graph=True is for TensorRT engines; TensorRT-RTX captures CUDA graphs itself "
                "(its stream capture needs engines built with REQUIRE_USER_ALLOCATION)"
            )
        cuda: CudaPython | PyCuda = open_cuda()
        self._resources.callback(cuda.close)  # unwound last: after every TensorRT object is gone
        self.cuda = cuda
        if cuda_graph and not cuda.supports_graphs:
            raise RunnerError(f"cuda_graph=True needs cuda-python for graph capture; this runner has {cuda.name}")
        gpu_name, compute_capability = cuda.device_properties()
        check_gpu(sidecar, gpu_name, compute_capability, path)

        trt = flavour.module
        self.trt = trt
        self.kind = flavour.name
        self.logger = make_logger(trt)
        mark = self.logger.mark()
        self._resources.callback(self._drop_engine)
        self.runtime: trt_types.Runtime = trt.Runtime(self.logger)
        if sidecar.version_compatible:
            self.runtime.engine_host_code_allowed = True  # the plan carries its lean runtime
        dla_core = sidecar.targets.dla_core
        if dla_core is not None:
            self.runtime.DLA_core = int(dla_core)  # the core it was built for (default -1), as trtexec does
        engine: trt_types.ICudaEngine | None = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineMismatchError(
                f"{flavour.name} {flavour.version} cannot load {path} ({self.logger.since(mark)}); "
                + sidecar.rebuild_hint()
            )
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineMismatchError(f"{path} has inputs {inputs} and outputs {outputs}; expected one of each")
        self.input_name, self.output_name = inputs[0], outputs[0]
        frames = metadata.frame_input is not None and metadata.frame_input.dtype == "uint8"  # uint8 frames in
        self.input_type = "uint8" if frames else "float32"  # float32 frames carry pixel values
        for name, want in ((self.input_name, trt.uint8 if frames else trt.float32), (self.output_name, trt.float32)):
            if engine.get_tensor_dtype(name) != want:
                raise EngineMismatchError(
                    f"{path}: tensor {name!r} is {engine.get_tensor_dtype(name)}, but the runner "
                    f"{'reads' if name == self.output_name else 'feeds'} {str(want).rsplit('.', 1)[-1].lower()} "
                    "(as build-engine makes them); rebuild it with resnet-deploy build-engine"
                )
        low, _, high = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.sample_shape = tuple(int(d) for d in high[1:])
        out_shape = engine.get_tensor_shape(self.output_name)
        self.num_classes = int(out_shape[len(out_shape) - 1])
        self.cuda_graph = cuda_graph
        self.sidecar = sidecar
        self.dla_core = dla_core
        check_engine_io(self, sidecar, metadata, model_props, path)
        super().__init__(path, metadata, sidecar.precision)

    def _drop_engine(self) -> None:
        self.engine = self.runtime = None  # type: ignore[assignment]

    # -- activate: stream, buffers, contexts ---------------------------------------------------
    def _activate(self) -> None:
        cuda = self.cuda
        self._graphs: dict[int, tuple[Any, Any]] = {}  # batch rows -> (its own context, executable graph)
        self._context: Any = None  # the eager context (numpy path without graphs, and the torch path)
        self._events: tuple[Any, Any] | None = None
        self._resources.callback(self._deactivate)
        self.stream = cuda.create_stream()
        self.stream_handle = cuda.handle(self.stream)
        self.host_in = cuda.alloc_pinned((self.max_batch, *self.sample_shape), np.dtype(self.input_type))
        self.host_out = cuda.alloc_pinned((self.max_batch, self.num_classes), np.float32)
        self.device_in = cuda.alloc_device(self.host_in.nbytes)
        self.device_out = cuda.alloc_device(self.host_out.nbytes)
        self._scratch: tuple[int, int] | None = None
        if self.cuda_graph:
            self._scratch = self._shared_memory()
        else:
            self._context = self._new_context()

    def _shared_memory(self) -> tuple[int, int] | None:
        """One block of activation memory for the graph contexts, where the release lets a context
        use memory it is given (10.x/11.x: USER_MANAGED; 8.6: created without device memory)."""
        engine = self.engine
        size = getattr(engine, "device_memory_size_v2", None)
        if size is None:
            size = getattr(engine, "device_memory_size", None)
        can_share = hasattr(self.trt, "ExecutionContextAllocationStrategy") or hasattr(
            engine, "create_execution_context_without_device_memory"
        )
        if not can_share or not size:
            return None
        return self.cuda.alloc_device(int(size)), int(size)

    def _new_context(self, shared: bool = False) -> Any:
        mark = self.logger.mark()
        engine, trt = self.engine, self.trt
        if shared and self._scratch is not None:
            pointer, size = self._scratch
            if hasattr(trt, "ExecutionContextAllocationStrategy"):
                context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            else:
                context = engine.create_execution_context_without_device_memory()
            if context is not None and hasattr(context, "set_device_memory"):
                context.set_device_memory(pointer, size)  # 10.1 and later
            elif context is not None:
                context.device_memory = pointer  # type: ignore[attr-defined]  # 8.6, 10.0 (write-only; not in 10.x stubs)
        else:
            context = engine.create_execution_context()
        if context is None:
            raise RunnerError(
                f"{self.kind} could not create an execution context for {self.path.name}: {self.logger.since(mark)} "
                "(is the GPU out of memory?)"
            )
        if getattr(context, "active_optimization_profile", 0) < 0:  # TensorRT 8.x: every context after the first
            if not context.set_optimization_profile_async(0, self.stream_handle):
                raise RunnerError(
                    f"{self.path.name} gives its optimization profile to one execution context only (TensorRT 8.6 "
                    "without profile sharing), and cuda_graph=True needs one per batch size: "
                    + self.sidecar.rebuild_hint()
                )
            self.cuda.synchronize(self.stream)
        return context

    def _deactivate(self) -> None:
        if getattr(self, "stream", None) is not None:
            try:
                self.cuda.synchronize(self.stream)  # work queued by the torch path may still run
            except Exception:
                pass
        for _, graph in self._graphs.values():
            self.cuda.free(graph)
        self._graphs = {}
        self._context = None
        # nothing of the device outlives close(): the buffers are views of pinned memory about to be freed,
        # and a pycuda stream lives as long as its Python object
        self.stream = self.host_in = self.host_out = self._events = None  # type: ignore[assignment]

    def close(self) -> None:
        if not self._closed:
            with self.cuda.current():
                self._resources.close()
        super().close()

    # -- running -------------------------------------------------------------------------------
    def infer(self, batch: Any) -> Any:
        self._check_open()
        with self.cuda.current():  # the runner's device, whatever the caller made current
            if _is_torch_cuda(batch):
                return self._infer_torch(batch)
            return super().infer(batch)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        chunks = [batch[i : i + self.max_batch] for i in range(0, len(batch), self.max_batch)]
        return np.concatenate([self._run_chunk(c) for c in chunks])  # above max: split, in order

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        rows = max(n, self.min_batch)  # a short last chunk is padded up to the profile's minimum
        in_bytes = rows * int(np.prod(self.sample_shape)) * self.host_in.itemsize
        out_bytes = rows * self.num_classes * 4
        self.host_in[:n] = chunk
        self.host_in[n:rows] = 0
        if self.cuda_graph:
            self.cuda.launch(self._graph(rows, in_bytes, out_bytes), self.stream)
        else:
            self._bind(self._context, rows, self.device_in, self.device_out)
            self.cuda.h2d(self.device_in, self.host_in, in_bytes, self.stream)
            self._execute(self._context, self.stream_handle)
            self.cuda.d2h(self.host_out, self.device_out, out_bytes, self.stream)
        self.cuda.synchronize(self.stream)
        return self.host_out[:n].copy()

    def _graph(self, rows: int, in_bytes: int, out_bytes: int) -> Any:
        """The graph for ``rows``, captured once on a context that keeps this shape for good."""
        if rows in self._graphs:
            return self._graphs[rows][1]
        context = self._new_context(shared=True)
        self._bind(context, rows, self.device_in, self.device_out)
        self._execute(context, self.stream_handle)  # TensorRT wants one run after a shape change, before capture
        self.cuda.synchronize(self.stream)
        self.cuda.begin_capture(self.stream)
        try:
            self.cuda.h2d(self.device_in, self.host_in, in_bytes, self.stream)
            self._execute(context, self.stream_handle)
            self.cuda.d2h(self.host_out, self.device_out, out_bytes, self.stream)
        except BaseException:
            self.cuda.abort_capture(self.stream)  # never leave the stream capturing
            raise
        graph = self.cuda.end_capture(self.stream)
        self._graphs[rows] = (context, graph)
        return graph

    def _bind(self, context: Any, rows: int, input_address: int, output_address: int) -> None:
        mark = self.logger.mark()
        if not context.set_input_shape(self.input_name, (rows, *self.sample_shape)):
            raise RunnerError(
                f"{self.path.name} refused batch {rows} (profile {self.min_batch}..{self.max_batch}): "
                + self.logger.since(mark)
            )
        for name, address in ((self.input_name, input_address), (self.output_name, output_address)):
            if not context.set_tensor_address(name, address):  # else the previous address stays bound
                raise RunnerError(
                    f"TensorRT refused the address {address:#x} of {name!r} for {self.path.name}: "
                    + self.logger.since(mark)
                )

    def _execute(self, context: Any, stream: int) -> None:
        mark = self.logger.mark()
        if not context.execute_async_v3(stream):
            raise RunnerError(f"TensorRT failed to run {self.path.name}: {self.logger.since(mark)}")

    def timed_infer(self, batch: np.ndarray) -> float:
        """Stream time of one call, copies included: events recorded around it on the runner's stream,
        created on the runner's device (an event and its stream must share one)."""
        self._check_open()
        with self.cuda.current():
            if self._events is None:
                self._events = (self.cuda.create_event(timing=True), self.cuda.create_event(timing=True))
            start, end = self._events
            self.cuda.record(start, self.stream)
            self.infer(batch)
            self.cuda.record(end, self.stream)
            return self.cuda.elapsed_seconds(start, end)

    def _infer_torch(self, batch: Any) -> Any:
        """Zero-copy: the caller's CUDA tensor in, a new CUDA tensor out, ordered with the caller's stream."""
        with self._runtime_errors(tuple(batch.shape)):
            return self._infer_torch_checked(batch)

    def _infer_torch_checked(self, batch: Any) -> Any:

        if tuple(batch.shape[1:]) != self.sample_shape or batch.dtype != getattr(torch, self.input_type):
            raise RunnerError(
                f"{self.path.name} expects (N, {', '.join(map(str, self.sample_shape))}) {self.input_type}, "
                f"got {tuple(batch.shape)} {batch.dtype}"
            )
        if batch.device.index != self.cuda.device:
            raise RunnerError(
                f"the tensor is on {batch.device} but {self.path.name} runs on cuda:{self.cuda.device}; "
                f"move it first (tensor.to('cuda:{self.cuda.device}'))"
            )
        if not self.min_batch <= len(batch) <= self.max_batch:
            raise RunnerError(f"{self.path.name} takes batches of {self.min_batch} to {self.max_batch}")
        batch = batch.contiguous()
        if batch.data_ptr() % ALIGNMENT:
            batch = batch.clone()  # a view with an offset: TensorRT needs 256-byte aligned addresses
        caller = torch.cuda.current_stream(batch.device)
        own = torch.cuda.ExternalStream(self.stream_handle, device=batch.device)
        out = torch.empty((len(batch), self.num_classes), dtype=torch.float32, device=batch.device)
        context = self._torch_context()
        own.wait_stream(caller)  # the input is written, and earlier work on out's memory done
        self._bind(context, len(batch), batch.data_ptr(), out.data_ptr())
        self._execute(context, self.stream_handle)
        caller.wait_stream(own)  # the caller's next work sees the logits
        return out

    def _torch_context(self) -> Any:
        """The eager context; with graphs, one of its own (graph contexts never change shape)."""
        if self._context is None:
            self._context = self._new_context()
        return self._context

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "backend_version": self.sidecar.backend_version,
            "batch": f"{self.min_batch}..{self.max_batch}",
            "cuda": self.cuda.name,
            "cuda_graph": self.cuda_graph,
            "dla_core": self.dla_core,
        }


def _is_torch_cuda(batch: Any) -> bool:
    return type(batch).__module__.startswith("torch") and bool(getattr(batch, "is_cuda", False))
