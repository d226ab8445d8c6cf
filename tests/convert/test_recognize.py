"""The zoo's signatures, computed from configs alone, are the convolutions the models really build."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from resnet_deploy.artifacts.model_spec import model_config
from resnet_deploy.convert.recognize import recognize, signature, zoo
from resnet_deploy.models.resnet import ResNet


def _built(config) -> tuple[Counter, tuple[int, int]]:
    with torch.device("meta"):
        model = ResNet(config)
    convs = Counter(
        (m.out_channels, m.in_channels, *m.kernel_size, m.stride[0])
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    )
    fc = next(m for m in model.modules() if isinstance(m, nn.Linear))
    return convs, (fc.out_features, fc.in_features)


CONFIGS = [c for c in zoo(10, 3) if c.depth != 1202] + [model_config(50, num_classes=1000, in_chans=1)]


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c.name}-{c.variant}" for c in CONFIGS])
def test_the_signature_is_what_the_model_builds(config) -> None:
    assert signature(config) == _built(config)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c.name}-{c.variant}" for c in CONFIGS])
def test_each_model_is_recognised_as_itself_or_its_equal(config) -> None:
    """Itself: depth, shortcut and plain or not; a bottleneck's variant too (a basic block's v1 and v1.5
    are one network)."""
    convs, classifier = _built(config)
    found = recognize(convs.elements(), classifier, config.in_chans, residual=not config.plain)
    assert found is not None and signature(found) == signature(config)
    assert (found.depth, found.plain, found.shortcut) == (config.depth, config.plain, config.shortcut)
    if config.block == "bottleneck":
        assert found.variant == config.variant  # where the stride sits tells v1 from v1.5


def test_an_unknown_network_is_not_forced_into_the_zoo() -> None:
    convs = [(16, 3, 3, 3, 1)] * 5
    assert recognize(convs, (10, 16), 3, residual=True) is None
