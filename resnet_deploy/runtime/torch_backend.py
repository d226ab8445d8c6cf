"""PyTorch: a checkpoint (ours or a torchvision state dict), the reference every artifact is judged by."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_deploy.runtime.base import Backend


class TorchBackend(Backend):
    kind = "pytorch"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        *,
        threads: int | None = None,
        depth: int | None = None,
        variant: str | None = None,
        num_classes: int | None = None,
        input_size: int | None = None,
    ) -> None:
        """``threads``: torch's CPU threads (process-wide, as torch has them); ``depth`` and friends
        only for foreign state dicts whose keys do not tell them."""
        import torch

        if threads is not None:
            torch.set_num_threads(threads)

        from resnet_deploy.model_source import open_model

        source = open_model(path, depth=depth, variant=variant, num_classes=num_classes, input_size=input_size)
        super().__init__(path, source.metadata, "fp32")
        self.device = torch.device(device)
        self.model = source.model.to(self.device).eval()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch).to(self.device))
        return logits.float().cpu().numpy()

    @property
    def timer(self) -> str:  # type: ignore[override]
        return "cuda-events" if self.device.type == "cuda" else "perf_counter"

    def timed_infer(self, batch: np.ndarray) -> float:
        if self.device.type != "cuda":
            return super().timed_infer(batch)
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.infer(batch)  # host -> device copy, forward, device -> host copy, all on the current stream
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1000

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        super().close()
