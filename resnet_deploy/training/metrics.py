"""Top-k error and an evaluation pass over a labelled split."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resnet_deploy.artifacts.preprocess import for_family
from resnet_deploy.data.base import Shard, Split


@dataclass
class EvalResult:
    images: int
    loss: float
    top1_error: float  # percent
    top5_error: float  # percent (top-k with k = min(5, classes))
    skipped: int = 0  # undecodable images left out
    skipped_paths: tuple[str, ...] = ()


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    split: Split,
    *,
    size: int,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 256,
    autocast: bool = False,
    shard: Shard | None = None,
    total: Callable[[Sequence[float]], list[float]] = list,
) -> EvalResult:
    """Loss and top-1/top-5 error over ``split``; with ``shard``, this process scores its part of each
    batch and ``total`` sums the counts over the processes (``World.sum``)."""
    model.eval()
    seen = top1 = top5 = skipped = 0
    skipped_paths: list[str] = []
    loss = 0.0
    config = getattr(model, "config", None)  # our ResNet: evaluated as its export will be preprocessed
    policy = for_family(config.family) if config is not None else None
    for batch in split.batches(batch_size, size=size, device=device, preprocess=policy, shard=shard):
        skipped += batch.skipped
        skipped_paths.extend(batch.skipped_paths)
        if not len(batch.labels):
            continue
        x = normalize(batch.images).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x).float()
        loss += float(F.cross_entropy(logits, batch.labels, reduction="sum"))
        top1 += topk_correct(logits, batch.labels, 1)
        top5 += topk_correct(logits, batch.labels, 5)
        seen += len(batch.labels)
    sums = total([seen, loss, top1, top5, skipped])
    seen, top1, top5, skipped, loss = int(sums[0]), int(sums[2]), int(sums[3]), int(sums[4]), sums[1]
    if seen == 0:
        return EvalResult(0, float("nan"), float("nan"), float("nan"), skipped, tuple(skipped_paths))
    return EvalResult(
        seen, loss / seen, 100 * (1 - top1 / seen), 100 * (1 - top5 / seen), skipped, tuple(skipped_paths)
    )
