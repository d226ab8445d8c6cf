"""``build_model`` and the named entry points (``resnet50()``, ``plain20()``, ``get_model("resnet56")``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from resnet_deploy.errors import UnknownModelError
from resnet_deploy.models.config import ARCHITECTURES, ResNetConfig, model_config, valid_depths_text
from resnet_deploy.models.resnet import ResNet


def build_model(
    depth: int | None = None,
    *,
    config: ResNetConfig | None = None,
    variant: str | None = None,
    plain: bool = False,
    shortcut: str | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    in_chans: int = 3,
) -> ResNet:
    """Build a randomly initialised ResNet from a depth and options, or from a saved config.

    Args:
        depth: 18/34/50/101/152 (ImageNet) or 20/32/44/56/110/1202 (CIFAR).
        config: a full config instead of depth and options (as read from a checkpoint).
        variant: "v1" or "v1.5" (bottleneck stride placement); None means the family default.
        plain: drop every shortcut.
        shortcut: "A", "B" or "C"; None means the family default (B ImageNet, A CIFAR).
        num_classes, input_size, in_chans: None means the family default.
    """
    if config is None:
        if depth is None:
            raise UnknownModelError(f"give a depth; valid depths: {valid_depths_text()}")
        config = model_config(
            depth,
            variant=variant,
            plain=plain,
            shortcut=shortcut,
            num_classes=num_classes,
            input_size=input_size,
            in_chans=in_chans,
        )
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


def list_models() -> list[str]:
    return [f"{kind}{depth}" for kind in ("resnet", "plain") for depth in ARCHITECTURES]


def _entry_point(name: str) -> Callable[..., ResNet]:
    def builder(**kwargs: Any) -> ResNet:
        return get_model(name, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{name} (He et al. 2015); keyword options as for ``build_model``."
    return builder


resnet18, resnet34, resnet50, resnet101, resnet152 = (_entry_point(f"resnet{d}") for d in (18, 34, 50, 101, 152))
resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202 = (
    _entry_point(f"resnet{d}") for d in (20, 32, 44, 56, 110, 1202)
)
