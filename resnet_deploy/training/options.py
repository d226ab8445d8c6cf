"""What a training run is asked to do, as one record (torch-free: the CLI reads its defaults)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from resnet_deploy.artifacts.model_spec import ModelSpec


@dataclass
class TrainOptions:
    """What a run is asked to do; None means "the recipe's / the dataset's default"."""

    model: ModelSpec = field(default_factory=ModelSpec)  # the architecture; over --checkpoint, its overrides
    data: str | None = None  # None: the embedded digits, or on --resume the run's own data
    recipe: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None  # None: 0 for a new run, the run's own seed on --resume
    device: str = "auto"
    workers: int | None = None  # ImageFolder decoding processes; None: min(8, CPU cores)
    normalize: str | None = None
    checkpoint: str | None = None  # initialise from these weights (fine-tuning)
    new_head: bool = False  # with checkpoint: a fresh classifier for the dataset's classes
    max_bad_fraction: float = 0.01  # undecodable images tolerated, as a fraction of those read
    eval_batch_size: int = 256
    sync_bn: bool = False  # data parallel on GPUs: BatchNorm statistics over the global batch
    compile: bool = False  # torch.compile the training step's model (first steps slower, later ones faster)
    gpu_decode: bool = False  # ImageFolder training JPEGs decoded and augmented on the GPU (nvJPEG)

    @classmethod
    def of(cls, **options: Any) -> TrainOptions:
        """Options with the model spec's fields given flat: ``TrainOptions.of(depth=20, epochs=3)``."""
        names = {f.name for f in dataclasses.fields(ModelSpec)}
        model = ModelSpec(**{k: options.pop(k) for k in list(options) if k in names})
        return cls(model=model, **options)

    @property
    def decoding_workers(self) -> int:
        """The image-decoding processes of an ImageFolder run: ``workers``, or one per core up to 8."""
        return min(8, os.cpu_count() or 1) if self.workers is None else self.workers
