"""PyTorch: a checkpoint (ours or a torchvision state dict), the reference every artifact is judged by."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_deploy.runtime.base import Backend


class TorchBackend(Backend):
    kind = "pytorch"

    def __init__(self, path: str | Path, device: str = "cpu", **model_options: object) -> None:
        import torch

        from resnet_deploy.model_source import open_model

        source = open_model(path, **model_options)  # type: ignore[arg-type]
        super().__init__(path, source.metadata, "fp32")
        self.device = torch.device(device)
        self.model = source.model.to(self.device).eval()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch).to(self.device))
        return logits.float().cpu().numpy()

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        super().close()
