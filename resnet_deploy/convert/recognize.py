"""Which ResNet of the zoo an outside ONNX graph is, read off its weights: no names, no exporter's habits.

Every ResNet of the zoo (ImageNet 18-152 in v1 and v1.5, CIFAR 20-1202; shortcuts A, B and C; plain
twins) has a signature: the multiset of its convolutions' (out, in, kh, kw, stride) and its classifier's
(classes, features). A graph whose Conv and Gemm/MatMul weights have exactly one zoo model's signature is
that model, whatever its node names, layout or exporter (torch.onnx, timm, tf2onnx, the ONNX model zoo's
ResNets: BatchNorm folded or not). Computed from the configs alone, without torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from resnet_deploy.artifacts.model_spec import ARCHITECTURES, SHORTCUTS, VARIANTS, ResNetConfig, model_config

Conv = tuple[int, int, int, int, int]  # out, in, kh, kw, stride
Signature = tuple[Counter[Conv], tuple[int, int]]  # the convolutions, and the classifier's (classes, features)


def signature(config: ResNetConfig) -> Signature:
    """The convolutions and classifier ``config`` builds (models/resnet.py and blocks.py, counted)."""
    convs: Counter[Conv] = Counter()
    imagenet = config.family == "imagenet"
    stem = config.widths[0]
    convs[(stem, config.in_chans, 7, 7, 2) if imagenet else (stem, config.in_chans, 3, 3, 1)] += 1
    channels = stem
    expansion = 4 if config.block == "bottleneck" else 1
    for stage, (width, blocks) in enumerate(zip(config.widths, config.layers, strict=True)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            out = width * expansion
            if config.block == "basic":
                convs[(width, channels, 3, 3, stride)] += 1
                convs[(width, width, 3, 3, 1)] += 1
            else:
                first, middle = (stride, 1) if config.variant == "v1" else (1, stride)
                convs[(width, channels, 1, 1, first)] += 1
                convs[(width, width, 3, 3, middle)] += 1
                convs[(out, width, 1, 1, 1)] += 1
            projected = config.shortcut == "C" or (config.shortcut == "B" and (stride != 1 or channels != out))
            if not config.plain and projected:
                convs[(out, channels, 1, 1, stride)] += 1
            channels = out
    return convs, (config.num_classes, channels)


def zoo(num_classes: int, in_chans: int) -> Iterator[ResNetConfig]:
    """Every model of the zoo with this classifier and input: each depth, variant, shortcut, plain."""
    for depth, (_, block, _) in ARCHITECTURES.items():
        for variant in VARIANTS if block == "bottleneck" else (None,):
            for shortcut, plain in [*((s, False) for s in SHORTCUTS), (None, True)]:
                yield model_config(
                    depth, variant=variant, shortcut=shortcut, plain=plain, num_classes=num_classes, in_chans=in_chans
                )


def recognize(convs: Iterable[Conv], classifier: tuple[int, int], in_chans: int, residual: bool) -> ResNetConfig | None:
    """The zoo model whose signature is exactly this graph's, None when none is. ``residual``: the graph
    adds shortcuts (a plain twin and shortcut A have the same convolutions, and differ only there)."""
    found = Counter(convs)
    for config in zoo(classifier[0], in_chans):
        if config.plain != (not residual):
            continue
        if signature(config) == (found, classifier):
            return config  # the first: the family's default variant and shortcut where others match too
    return None
