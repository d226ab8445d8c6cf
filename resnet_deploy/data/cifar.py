"""CIFAR-10 and CIFAR-100 in their python-pickle releases, read from the user's disk.

Layouts (as unpacked from ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``):

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``
- ``cifar-100-python/``: ``train``, ``test``, ``meta`` (fine labels are used)

``PATH`` may be that directory or its parent. The files are pickles; they are read with an
unpickler that admits only numpy arrays and plain containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet_deploy.data.base import Dataset
from resnet_deploy.data.tensor_split import TensorSplit
from resnet_deploy.errors import DatasetError

LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "dir": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": "labels",
        "names": "label_names",
        "classes": 10,
    },
    "cifar100": {
        "dir": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": "fine_labels",
        "names": "fine_label_names",
        "classes": 100,
    },
}

# What numpy needs to rebuild an array from a pickle (numpy 1.x and 2.x spell the module differently).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _Refused(pickle.UnpicklingError):
    pass


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"refusing to load {module}.{name}: CIFAR files hold only arrays")


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(io.BufferedReader(fh), encoding="bytes").load()
    except _Refused as exc:
        raise DatasetError(f"{path} is not a CIFAR batch file ({exc}); re-extract the official archive") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        LookupError,  # a codec name that is no codec
        MemoryError,  # a length prefix claiming exabytes
        OverflowError,
        RecursionError,
        SystemError,  # numpy's own unpickling, handed a flipped dtype description
    ) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__  # the unpickler's messages span lines
        raise DatasetError(f"{path} is truncated or not a CIFAR batch file ({why[:200]}); re-extract it") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} is not a CIFAR batch file (holds a {type(obj).__name__}); re-extract it")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def resolve_dir(kind: str, path: str | Path) -> Path:
    """The directory holding the batch files: ``path`` itself or ``path/cifar-10-batches-py``."""
    layout = LAYOUTS[kind]
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"{kind} directory {root} does not exist; extract {layout['dir']} there")
    if not root.is_dir():
        raise DatasetError(f"{kind} path {root} is not a directory; give the extracted {layout['dir']} directory")
    first = layout["train"][0]
    if not (root / first).exists() and (root / layout["dir"]).is_dir():
        root = root / layout["dir"]
    needed = [*layout["train"], *layout["test"], layout["meta"]]
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        raise DatasetError(
            f"{kind} directory {root} is missing {', '.join(missing)}; it must hold the files of "
            f"{layout['dir']} ({', '.join(needed)})"
        )
    return root.resolve()


def _read_split(root: Path, files: list[str], label_key: str, num_classes: int) -> TensorSplit:
    images, labels = [], []
    for name in files:
        batch = _read_pickle(root / name)
        if "data" not in batch or label_key not in batch:
            raise DatasetError(
                f"{root / name} has no '{'data' if 'data' not in batch else label_key}' entry; "
                "is it a CIFAR-10 file given as CIFAR-100 or the other way round?"
            )
        data = np.asarray(batch["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DatasetError(f"{root / name}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
        try:
            target = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        except (ValueError, TypeError, OverflowError):
            raise DatasetError(f"{root / name}: '{label_key}' is not a list of integer labels; re-extract it") from None
        if len(target) != len(data):
            raise DatasetError(f"{root / name}: {len(data)} images but {len(target)} labels")
        if len(target) and (target.min() < 0 or target.max() >= num_classes):
            raise DatasetError(f"{root / name}: labels outside 0..{num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(target)
    return TensorSplit(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def load_cifar(kind: str, path: str | Path) -> Dataset:
    layout = LAYOUTS[kind]
    root = resolve_dir(kind, path)
    meta = _read_pickle(root / layout["meta"])
    raw_names = meta.get(layout["names"])
    if raw_names is None:
        raise DatasetError(f"{root / layout['meta']} has no '{layout['names']}' entry; re-extract the archive")
    if not isinstance(raw_names, (list, tuple)):
        raise DatasetError(f"{root / layout['meta']}: '{layout['names']}' is not a list of names; re-extract it")
    names = tuple(n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in raw_names)
    if len(names) != layout["classes"]:
        raise DatasetError(f"{root / layout['meta']} names {len(names)} classes, expected {layout['classes']}")
    return Dataset(
        spec=f"{kind}:{root}",
        name=kind,
        train=_read_split(root, layout["train"], layout["labels"], len(names)),
        test=_read_split(root, layout["test"], layout["labels"], len(names)),
        class_names=names,
        native_size=32,
        hflip=True,
    )


def write_cifar(
    kind: str,
    root: str | Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    *,
    train_files: int | None = None,
) -> Path:
    """Write arrays in the official layout (for tests and for converting other data): returns the directory.

    ``train``/``test`` are ``(images (N, 32, 32, 3) uint8, labels (N,))``; keys are bytes as in the releases.
    """
    layout = LAYOUTS[kind]
    directory = Path(root) / layout["dir"]
    directory.mkdir(parents=True, exist_ok=True)
    label_key = layout["labels"].encode()

    def dump(name: str, images: np.ndarray, labels: np.ndarray) -> None:
        data = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)
        with open(directory / name, "wb") as fh:
            pickle.dump({b"data": data, label_key: [int(v) for v in labels], b"batch_label": name.encode()}, fh, 2)

    files = layout["train"]
    parts = np.array_split(np.arange(len(train[0])), train_files or len(files))
    for name, index in zip(files, parts, strict=True):
        dump(name, train[0][index], train[1][index])
    dump(layout["test"][0], *test)
    with open(directory / layout["meta"], "wb") as fh:
        pickle.dump({layout["names"].encode(): [n.encode() for n in class_names]}, fh, 2)
    return directory
