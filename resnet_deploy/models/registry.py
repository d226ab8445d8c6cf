"""``build_model`` and the registered entry points (``resnet50()``, ``plain20()``, ``get_model("resnet56")``)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from resnet_deploy.artifacts.model_spec import ARCHITECTURES, ModelSpec, ResNetConfig, model_config, valid_depths_text
from resnet_deploy.errors import UnknownModelError
from resnet_deploy.models.resnet import ResNet


def build_model(spec: ModelSpec | int | None = None, *, config: ResNetConfig | None = None, **options: Any) -> ResNet:
    """A randomly initialised ResNet from a :class:`ModelSpec` (or a depth and the spec's fields as
    keyword options: ``build_model(50, num_classes=10)``), or from a saved ``config``."""
    if config is None:
        spec = ModelSpec.of(spec, **options)
        if spec.depth is None:
            raise UnknownModelError(f"give a depth; valid depths: {valid_depths_text()}")
        config = model_config(spec)
    return ResNet(config)


_NAME = re.compile(r"^(resnet|plain)(\d+)(?:-(v1|v1\.5))?(?:-([ABC]))?$")


def get_model(name: str, **kwargs: Any) -> ResNet:
    """Build by name: ``resnet50``, ``plain34``, ``resnet50-v1``, ``resnet20-C``."""
    match = _NAME.match(name)
    if not match:
        raise UnknownModelError(
            f"unknown model name {name!r}; use resnet<depth> or plain<depth>, "
            f"optionally -v1/-v1.5 and -A/-B/-C; depths: {valid_depths_text()}"
        )
    kind, depth, variant, shortcut = match.groups()
    return build_model(int(depth), plain=kind == "plain", variant=variant, shortcut=shortcut, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Every registered name (``resnet18`` ... ``plain1202``), or those matching a shell pattern."""
    return [name for name in ENTRY_POINTS if fnmatch.fnmatchcase(name, pattern)]


def _entry_point(name: str) -> Callable[..., ResNet]:
    def builder(**kwargs: Any) -> ResNet:
        return get_model(name, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{name} (He et al. 2015); keyword options as for ``build_model``."
    return builder


# One registry: every depth as a ResNet and as its plain twin; ``resnet_deploy.models.<name>`` and
# ``list_models()`` both read it, so a name is listed exactly when it can be called.
ENTRY_POINTS: dict[str, Callable[..., ResNet]] = {
    f"{kind}{depth}": _entry_point(f"{kind}{depth}") for kind in ("resnet", "plain") for depth in ARCHITECTURES
}


def __getattr__(name: str) -> Callable[..., ResNet]:
    if name in ENTRY_POINTS:
        return ENTRY_POINTS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
