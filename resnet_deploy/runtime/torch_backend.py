"""PyTorch: a checkpoint (ours or a torchvision state dict), the reference every artifact is judged by."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.model_spec import ModelSpec
from resnet_deploy.errors import RunnerError
from resnet_deploy.models.source import open_model
from resnet_deploy.runtime import machine
from resnet_deploy.runtime.base import Backend, one_line

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch", extra="train")

DEVICES = "'cpu', 'cuda' or 'cuda:N' (or 'mps' on Apple silicon)"


def check_device(device: Any) -> Any:
    """``device`` as a ``torch.device`` this process can run on; one line saying why not otherwise."""

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise RunnerError(f"device {device!r} is not a torch device; use {DEVICES}") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise RunnerError(f"device {str(device)!r}: this machine has no Apple GPU (MPS); use device='cpu'")
        return parsed
    if parsed.type != "cuda":
        raise RunnerError(f"device {str(device)!r} is not one the runner supports; use {DEVICES}")
    if not torch.cuda.is_available():
        raise RunnerError(f"device {str(device)!r} asked for, but {_why_no_cuda(torch)}")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise RunnerError(
            f"device {str(device)!r} asked for, but torch sees {count} GPU{'s' if count != 1 else ''} "
            f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}); check CUDA_VISIBLE_DEVICES"
        )
    return parsed


def _why_no_cuda(torch: Any) -> str:
    """Why torch cannot use CUDA here, and what to do about it."""

    cpu = "or run on the CPU with device='cpu'"
    if torch.version.cuda is None:
        return f"this torch {torch.__version__} is a CPU-only build: install a CUDA build of torch, {cpu}"
    reason = machine.no_gpu_reason()
    if reason is not None:
        return f"{reason}, {cpu}"
    driver = machine.driver_cuda_version() or 0
    driver_text = machine.cuda_version_text(driver)
    if driver // 1000 < int(str(torch.version.cuda).split(".")[0]):  # CUDA runs on drivers of its major or later
        return (
            f"torch {torch.__version__} is built for CUDA {torch.version.cuda} and this NVIDIA driver supports only "
            f"CUDA {driver_text}: update the driver or install a torch build for CUDA {driver_text}, {cpu}"
        )
    return f"torch cannot initialise CUDA on this GPU (driver for CUDA {driver_text}; see torch's warning), {cpu}"


class TorchBackend(Backend):
    kind = "pytorch"

    def __init__(
        self,
        path: str | Path,
        device: Any = "cpu",
        *,
        threads: int | None = None,
        spec: ModelSpec | None = None,
    ) -> None:
        """``threads``: torch's CPU threads (process-wide, as torch has them); ``spec`` only for
        foreign state dicts whose keys do not tell the architecture."""

        torch_device = check_device(device)  # before the checkpoint is read: a wrong device is refused at once
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise RunnerError(f"threads must be a whole number of at least 1, got {threads!r}")
            torch.set_num_threads(threads)

        source = open_model(path, spec)
        super().__init__(path, source.metadata, "fp32")
        self.device = torch_device
        try:
            self.model = source.model.to(self.device).eval()
        except Exception as exc:  # out of device memory, mostly
            raise RunnerError(f"cannot move {self.path.name} to {self.device} ({one_line(exc)})") from None

    def _infer(self, batch: np.ndarray) -> np.ndarray:

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch).to(self.device))
        return logits.float().cpu().numpy()  # errors become RunnerError in Backend.infer

    @property
    def timer(self) -> str:  # type: ignore[override]
        return "cuda-events" if self.device.type == "cuda" else "perf_counter"

    def timed_infer(self, batch: np.ndarray) -> float:
        if self.device.type != "cuda":
            return super().timed_infer(batch)

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.infer(batch)  # host -> device copy, forward, device -> host copy, all on the current stream
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1000

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        super().close()
