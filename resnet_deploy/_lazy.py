"""Lazy imports of heavy optional dependencies (the pattern of Polygraphy's ``mod/importer.py``).

``tensorrt = lazy_import("tensorrt", extra="tensorrt")`` costs nothing until an attribute is used;
then it imports the module or raises :class:`MissingDependencyError` saying how to install it.

Our own modules that pull in torch or onnx are imported the same way, so ``import resnet_deploy``
and ``--help`` stay instant while each file's header still lists what it depends on::

    if TYPE_CHECKING:  # seen by mypy and import-linter
        from resnet_deploy.convert import export
    else:
        export = lazy_module("resnet_deploy.convert.export")
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

from resnet_deploy.errors import MissingDependencyError

# How to get each optional module; the pip extra is named where one exists.
INSTALL_HINTS = {
    "tensorrt": "NVIDIA TensorRT: on Jetson it comes with JetPack (python3-libnvinfer); on x86 "
    "`pip install tensorrt --extra-index-url https://pypi.nvidia.com`",
    "tensorrt_rtx": 'TensorRT-RTX: `pip install "resnet-deploy[rtx]"` (builds ahead of time, even without a GPU)',
    "cuda": 'cuda-python: `pip install "resnet-deploy[cuda]"` (`[cuda11]` on JetPack 5)',
    "pycuda": "pycuda: `pip install pycuda` (needs the CUDA toolkit)",
    "onnxslim": "onnxslim: `pip install onnxslim`",
    "PIL.Image": "Pillow: `pip install pillow`",
}


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
        self._lazy_module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._lazy_module is None:
            try:
                self._lazy_module = importlib.import_module(self.__name__)
            except ImportError as exc:
                if self._lazy_hint is None:  # one of ours: its own missing dependency says what it is
                    raise
                raise MissingDependencyError(
                    f"{self.__name__} is not installed ({exc}); install {self._lazy_hint}"
                ) from exc
        return self._lazy_module

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
