"""Architectures as data: what a user asks for (:class:`ModelSpec`) and what it resolves to
(:class:`ResNetConfig`, saved in checkpoints, ONNX metadata and engine sidecars). Pure Python.

ImageNet nets follow Table 1 of He et al. 2015; CIFAR nets follow section 4.2 (6n+2 layers,
16/32/64 filters, feature maps 32/16/8, global average pool, 10 classes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from resnet_deploy.errors import UnknownModelError

# depth -> (family, block, blocks per stage)
ARCHITECTURES: dict[int, tuple[str, str, tuple[int, ...]]] = {
    18: ("imagenet", "basic", (2, 2, 2, 2)),
    34: ("imagenet", "basic", (3, 4, 6, 3)),
    50: ("imagenet", "bottleneck", (3, 4, 6, 3)),
    101: ("imagenet", "bottleneck", (3, 4, 23, 3)),
    152: ("imagenet", "bottleneck", (3, 8, 36, 3)),
    **{6 * n + 2: ("cifar", "basic", (n, n, n)) for n in (3, 5, 7, 9, 18, 200)},
}

FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "imagenet": {
        "widths": (64, 128, 256, 512),
        "shortcut": "B",
        "variant": "v1.5",
        "num_classes": 1000,
        "input_size": 224,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
    "cifar": {
        "widths": (16, 32, 64),
        "shortcut": "A",
        "variant": "v1",
        "num_classes": 10,
        "input_size": 32,
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
}

EXTERNAL = "external"  # a classifier imported as it is: not a ResNet of the zoo, so nothing here rebuilds it
VARIANTS = ("v1", "v1.5")
SHORTCUTS = ("A", "B", "C")


def valid_depths_text() -> str:
    by_family: dict[str, list[str]] = {}
    for depth, (family, _, _) in ARCHITECTURES.items():
        by_family.setdefault(family, []).append(str(depth))
    return "; ".join(f"{', '.join(d)} ({'ImageNet' if f == 'imagenet' else 'CIFAR'})" for f, d in by_family.items())


@dataclass(frozen=True)
class ResNetConfig:
    """Everything needed to rebuild a model; saved into checkpoints and ONNX metadata.

    Args:
        depth: weighted layers (18/34/50/101/152 ImageNet, 20/32/44/56/110/1202 CIFAR).
        family: "imagenet" (7x7 stem + max pool, 4 stages) or "cifar" (3x3 stem, 3 stages).
        block: "basic" (two 3x3) or "bottleneck" (1x1-3x3-1x1, expansion 4).
        layers: blocks per stage.
        widths: base channels per stage.
        variant: "v1" (paper: stride in the bottleneck's first 1x1) or "v1.5" (torchvision: in the 3x3).
            Basic blocks are the same in both.
        plain: no shortcuts at all (the paper's plain baselines).
        shortcut: "A", "B" or "C" (see ``blocks.py``); None for plain nets.
        num_classes: classifier outputs.
        input_size: square input side the model is deployed at (any size >= total stride works).
        in_chans: input channels.
        pixel_mean: the model subtracts a per-pixel mean image (buffer ``pixel_mean``, shape
            ``(in_chans, input_size, input_size)``) from its input, as the paper's CIFAR recipe does;
            such a model then takes only ``input_size`` inputs, scaled to [0, 1].
    """

    depth: int
    family: str
    block: str
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    variant: str
    plain: bool
    shortcut: str | None
    num_classes: int
    input_size: int
    in_chans: int = 3
    pixel_mean: bool = False

    @property
    def name(self) -> str:
        """e.g. ``resnet50``, ``plain34``, ``resnet50-v1``, ``resnet20-B``; defaults are left out."""
        if self.family == EXTERNAL:
            return EXTERNAL
        defaults = FAMILY_DEFAULTS[self.family]
        name = f"{'plain' if self.plain else 'resnet'}{self.depth}"
        if self.block == "bottleneck" and self.variant != defaults["variant"]:
            name += f"-{self.variant}"
        if not self.plain and self.shortcut != defaults["shortcut"]:
            name += f"-{self.shortcut}"
        return name

    @property
    def total_stride(self) -> int:
        if self.family == EXTERNAL:
            return 1
        stem = 4 if self.family == "imagenet" else 1
        return stem * 2 ** (len(self.layers) - 1)

    @property
    def feature_channels(self) -> int:
        return self.widths[-1] * (4 if self.block == "bottleneck" else 1)

    @property
    def default_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        defaults = FAMILY_DEFAULTS["imagenet" if self.family == EXTERNAL else self.family]
        return defaults["mean"], defaults["std"]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["layers"], out["widths"] = list(self.layers), list(self.widths)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetConfig:
        """Rebuild and re-validate a config read from a checkpoint or an ONNX file."""
        try:
            config = model_config(
                int(data["depth"]),
                variant=data.get("variant"),
                plain=bool(data.get("plain", False)),
                shortcut=data.get("shortcut"),
                num_classes=data.get("num_classes"),
                input_size=data.get("input_size"),
                in_chans=int(data.get("in_chans", 3)),
                pixel_mean=bool(data.get("pixel_mean", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnknownModelError(f"model config {data!r} is malformed ({exc})") from exc
        return config


@dataclass(frozen=True)
class ModelSpec:
    """The architecture asked for: one bundle from the CLI's options to the model builder.

    None means "the family's default" (or, when a checkpoint is given, "what the checkpoint records").
    """

    depth: int | None = None
    variant: str | None = None  # "v1" or "v1.5"
    plain: bool = False
    shortcut: str | None = None  # "A", "B" or "C"
    num_classes: int | None = None
    input_size: int | None = None
    in_chans: int | None = None

    def given(self) -> dict[str, Any]:
        """The options set to other than their defaults (what a user typed)."""
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) != f.default}

    @classmethod
    def of(cls, spec: ModelSpec | int | None = None, **options: Any) -> ModelSpec:
        """``spec`` itself, or one made from a depth and keyword options (``of(50, num_classes=10)``)."""
        if isinstance(spec, ModelSpec):
            if options:
                return dataclasses.replace(spec, **options)
            return spec
        try:
            return cls(**options) if spec is None else cls(spec, **options)
        except TypeError:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            unknown = ", ".join(sorted(set(options) - {f.name for f in dataclasses.fields(cls)})) or "depth twice"
            raise UnknownModelError(f"unknown model option {unknown}; the options are {known}") from None


def at_input_size(config: ResNetConfig, input_size: int | None) -> ResNetConfig:
    """``config`` deployed at ``input_size`` (None: its own), re-validated: a size the network's strides
    cannot take is refused."""
    return model_config(
        config.depth,
        variant=config.variant,
        plain=config.plain,
        shortcut=config.shortcut,
        num_classes=config.num_classes,
        in_chans=config.in_chans,
        input_size=input_size,
        pixel_mean=config.pixel_mean,
    )


def external_config(num_classes: int, input_size: int, in_chans: int = 3) -> ResNetConfig:
    """The config of a classifier imported as it is: its classes and input, no architecture of ours."""
    if num_classes < 1 or input_size < 1 or in_chans < 1:
        raise UnknownModelError(
            f"an imported classifier needs classes, input size and channels of at least 1, got "
            f"{num_classes}, {input_size}, {in_chans}"
        )
    return ResNetConfig(
        depth=0,
        family=EXTERNAL,
        block="unknown",
        layers=(),
        widths=(),
        variant="",
        plain=False,
        shortcut=None,
        num_classes=num_classes,
        input_size=input_size,
        in_chans=in_chans,
    )


def model_config(spec: ModelSpec | int, *, pixel_mean: bool = False, **options: Any) -> ResNetConfig:
    """Validate the options and fill the family's defaults; None means default.

    ``spec``: a :class:`ModelSpec`, or a depth with the spec's fields as keyword options.
    """
    spec = ModelSpec.of(spec, **options)
    depth = spec.depth
    if depth not in ARCHITECTURES:
        raise UnknownModelError(f"unknown depth {depth}; valid depths: {valid_depths_text()}", field="depth")
    family, block, layers = ARCHITECTURES[depth]
    defaults = FAMILY_DEFAULTS[family]
    variant = spec.variant or defaults["variant"]
    if variant not in VARIANTS:
        raise UnknownModelError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}", field="variant")
    shortcut = spec.shortcut
    if spec.plain:
        if shortcut is not None:
            raise UnknownModelError(
                "plain networks have no shortcuts; give `shortcut` or `plain`, not both", field="shortcut"
            )
    else:
        shortcut = (shortcut or defaults["shortcut"]).upper()
        if shortcut not in SHORTCUTS:
            raise UnknownModelError(f"unknown shortcut option {shortcut!r}; choose A, B or C", field="shortcut")
    num_classes = defaults["num_classes"] if spec.num_classes is None else int(spec.num_classes)
    if num_classes < 1:
        raise UnknownModelError(f"the number of classes must be at least 1, got {num_classes}", field="num_classes")
    in_chans = 3 if spec.in_chans is None else int(spec.in_chans)
    if in_chans < 1:
        raise UnknownModelError(f"input channels must be at least 1, got {in_chans}")
    config = ResNetConfig(
        depth=depth,
        family=family,
        block=block,
        layers=layers,
        widths=tuple(defaults["widths"]),
        variant=variant,
        plain=spec.plain,
        shortcut=shortcut,
        num_classes=num_classes,
        input_size=defaults["input_size"] if spec.input_size is None else int(spec.input_size),
        in_chans=in_chans,
        pixel_mean=pixel_mean,
    )
    if config.input_size < config.total_stride:
        raise UnknownModelError(
            f"input size {config.input_size} is too small for {config.name}: "
            f"it subsamples by {config.total_stride}, so use at least {config.total_stride}",
            field="input_size",
        )
    return config
