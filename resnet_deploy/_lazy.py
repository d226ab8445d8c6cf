"""Lazy imports: the one idiom (the pattern of Polygraphy's ``mod/importer.py``).

The rule: a heavy third-party module (torch, onnx, onnxruntime, openvino, TensorRT, cv2, PIL, ...) or one
of our modules that imports one is named in the file's header as a proxy, with its ``TYPE_CHECKING``
twin for mypy and import-linter::

    if TYPE_CHECKING:
        import onnx
        from resnet_deploy.convert import export
    else:
        onnx = lazy_import("onnx")
        export = lazy_module("resnet_deploy.convert.export")

A proxy costs nothing until an attribute is used; then it imports the module, or raises
:class:`MissingDependencyError` saying how to install it. It looks the module up on every use, so a
module replaced or blocked in ``sys.modules`` (a stand-in, a test) is what it uses. A package that
re-exports names lazily builds its ``__getattr__`` with :func:`lazy_attributes`. A function-local
import is left only where an import cycle or a platform requires it, with a comment saying which.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from resnet_deploy.errors import MissingDependencyError

# How to get each optional module; the pip extra is named where one exists.
INSTALL_HINTS = {
    "tensorrt": "NVIDIA TensorRT: on Jetson it comes with JetPack (python3-libnvinfer); on x86 "
    "`pip install tensorrt --extra-index-url https://pypi.nvidia.com`",
    "tensorrt_rtx": 'TensorRT-RTX: `pip install "resnet-deploy[rtx]"` (builds ahead of time, even without a GPU)',
    "cuda": 'cuda-python: `pip install "resnet-deploy[cuda13]"` for a CUDA 13.x driver, `[cuda]` for 12.x, '
    "`[cuda11]` on JetPack 5",
    "pycuda": "pycuda: `pip install pycuda` (needs the CUDA toolkit)",
    "onnxslim": 'onnxslim: `pip install "resnet-deploy[simplify]"`',
    "PIL.Image": "Pillow: `pip install pillow`",
    # PyTriton pins numpy<2: it gets an environment of its own
    **dict.fromkeys(
        ("pytriton.triton", "pytriton.model_config", "pytriton.decorators"),
        "PyTriton in an environment of its own (it requires numpy<2): `bash scripts/serve.sh MODEL` from a clone, "
        'or `pip install "resnet-deploy[serve]"` in a fresh venv',
    ),
}


# The pip extra that brings each optional top-level module (pyproject.toml's optional-dependencies).
EXTRAS = {
    "torch": "train",
    "torchvision": "train",
    "onnxscript": "train",
    "sklearn": "train",
    "onnxruntime": "onnxruntime",
    "onnxconverter_common": "onnxruntime",
    "openvino": "openvino",
    "tensorrt_rtx": "rtx",
    "matplotlib": "plot",
    "onnxslim": "simplify",
    "cv2": "video",
    "tritonclient": "client",
    "pytriton": "serve",
    "cuda": "cuda",
}


def missing_extra(exc: ImportError) -> str | None:
    """``pip install "resnet-deploy[EXTRA]"`` for a module an extra brings that failed to import; None
    for any other module (ours, or one the core install brings: a broken install, not a missing extra)."""
    name = (getattr(exc, "name", None) or "").partition(".")[0]
    extra = EXTRAS.get(name)
    return f'{name}, which is not installed: pip install "resnet-deploy[{extra}]"' if extra else None


def is_available(name: str) -> bool:
    """True when ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class _LazyModule(ModuleType):
    def __init__(self, name: str, hint: str | None) -> None:
        super().__init__(name)
        self._lazy_hint = hint

    def _load(self) -> ModuleType:
        loaded = sys.modules.get(self.__name__)
        if isinstance(loaded, ModuleType):
            return loaded
        try:
            return importlib.import_module(self.__name__)
        except ImportError as exc:
            if self._lazy_hint is None:  # one of ours: its own missing dependency says what it is
                raise
            raise MissingDependencyError(
                f"{self.__name__} is not installed ({exc}); install {self._lazy_hint}"
            ) from exc

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_lazy"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)


def lazy_import(name: str, extra: str | None = None) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute access."""
    hint = INSTALL_HINTS.get(name) or (f'`pip install "resnet-deploy[{extra}]"`' if extra else f"`pip install {name}`")
    return _LazyModule(name, hint)


def lazy_module(name: str) -> Any:
    """A stand-in for our module ``name`` (``resnet_deploy.convert.export``), imported on first attribute access."""
    return _LazyModule(name, None)


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` re-exporting ``names`` (name -> the module that defines it), each imported
    when first asked for: ``__getattr__ = lazy_attributes(__name__, {"Runner": "resnet_deploy.runtime"})``."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
