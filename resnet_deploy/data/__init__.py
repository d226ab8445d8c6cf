"""Labelled image data for training, calibration and validation.

Every source yields float32 NCHW batches scaled to [0, 1] at the model's input size, plus int64
labels; normalisation (per-channel mean/std) is applied by the consumer, so one dataset serves
models with different preprocessing. Sources, named by a spec string:

- ``digits``: scikit-learn's bundled 8x8 handwritten digits, upsampled to 32x32 RGB (no download).
- ``cifar10:PATH`` / ``cifar100:PATH``: the python-pickle releases (``cifar-10-batches-py``).
- ``imagefolder:PATH``: one sub-folder per class (``PATH/train`` + ``PATH/val`` when present).

``folder:PATH`` (every image below ``PATH``, no labels) serves calibration alone:
:func:`open_unlabelled` lists it, and :func:`open_dataset` refuses it.
"""

from resnet_deploy.data.base import Batch, Dataset, Shard, Split
from resnet_deploy.data.spec import DATASET_SPECS_HELP, open_dataset, open_unlabelled, parse_spec

__all__ = [
    "DATASET_SPECS_HELP",
    "Batch",
    "Dataset",
    "Shard",
    "Split",
    "open_dataset",
    "open_unlabelled",
    "parse_spec",
]
