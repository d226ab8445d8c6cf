"""One generic test per registered model name, as torchvision's test_models.py does.

The names come from ``list_models()`` at import time, so a name added to the registry is tested
without touching this file. Parameter counts are those of He et al. 2015 Table 6 (CIFAR, printed
in millions) and torchvision's ImageNet ResNets; the plain twins have the same counts less the
projection shortcuts (option A shortcuts and identities have no parameters).
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import resnet_deploy.models as models
from resnet_deploy.models import get_model, list_models

NAMES = list_models()

IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
PAPER_TABLE_6_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}
# Exact counts of the option-A CIFAR nets: 3x3 convs + BN per the paper's 6n+2 layout, 10-way fc.
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
# Option B projections (1x1 conv, no bias, + BN) where a stage's first block changes the shape.
PROJECTIONS = {
    "basic": ((64, 128), (128, 256), (256, 512)),
    "bottleneck": ((64, 256), (256, 512), (512, 1024), (1024, 2048)),
}
DEFAULT_CLASSES = {"imagenet": 1000, "cifar": 10}
CLASSES = 7  # not either family's default, so the head is rebuilt for both
BATCH = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These inputs are too small to gain from threads; on a busy 2-core machine OpenMP threads
    spinning for each other made the forward passes 8x slower. The setting is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _parse(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(resnet|plain)(\d+)", name)
    assert match, f"registered name {name!r} is not resnet<depth> or plain<depth>"
    return match[1], int(match[2])


def _published_parameters(name: str) -> int:
    """The paper's / torchvision's count for ``name`` at its family's default class count."""
    kind, depth = _parse(name)
    if depth in CIFAR_PARAMS:
        return CIFAR_PARAMS[depth]  # option A: plain and residual nets have the same parameters
    count = TORCHVISION_PARAMS[depth]
    if kind == "plain":
        block = "basic" if depth in (18, 34) else "bottleneck"
        count -= sum(cin * cout + 2 * cout for cin, cout in PROJECTIONS[block])
    return count


def _on_meta(build):
    with torch.device("meta"):  # no memory and no init arithmetic, only module construction
        return build()


@functools.cache
def _meta_model(name: str) -> nn.Module:
    """``get_model(name)`` on the meta device, built once for all the tests that only inspect it."""
    return _on_meta(lambda: get_model(name))


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def test_the_registry_lists_every_depth_once_as_resnet_and_as_plain():
    expected = {f"{kind}{depth}" for kind in ("resnet", "plain") for depth in IMAGENET_DEPTHS + CIFAR_DEPTHS}
    assert len(NAMES) == len(set(NAMES)) == 22
    assert set(NAMES) == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_config_of_a_named_model_matches_its_name(name):
    kind, depth = _parse(name)
    config = _meta_model(name).config
    assert config.name == name
    assert config.depth == depth
    assert config.plain is (kind == "plain")
    assert config.shortcut == (None if kind == "plain" else "B" if depth in IMAGENET_DEPTHS else "A")
    assert config.family == ("imagenet" if depth in IMAGENET_DEPTHS else "cifar")
    assert config.num_classes == DEFAULT_CLASSES[config.family]


@pytest.mark.parametrize("name", NAMES)
def test_the_weighted_layers_of_a_named_model_add_up_to_its_depth(name):
    _, depth = _parse(name)
    model = _meta_model(name)
    weighted = [
        n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and ".downsample." not in f".{n}."
    ]
    assert len(weighted) == depth  # the paper's depth counts convolutions and the fc, not projections


@pytest.mark.parametrize("name", NAMES)
def test_the_parameter_count_of_a_named_model_is_the_published_one(name):
    _, depth = _parse(name)
    params = sum(p.numel() for p in _meta_model(name).parameters())
    assert params == _published_parameters(name)
    if depth in PAPER_TABLE_6_MILLIONS:
        printed = PAPER_TABLE_6_MILLIONS[depth]
        decimals = len(str(printed).split(".")[1])
        assert round(params / 1e6, decimals) == printed


@pytest.mark.parametrize("name", NAMES)
def test_a_named_model_maps_a_batch_to_one_logit_row_per_image(name):
    _, depth = _parse(name)
    size = 64 if depth in IMAGENET_DEPTHS else 32  # ImageNet nets at 64: any side >= their stride of 32 works
    torch.manual_seed(depth)
    model = get_model(name, num_classes=CLASSES, input_size=size).eval()
    family = model.config.family
    features = model.config.feature_channels
    # only the classifier changed: (features + 1) parameters per class
    expected = _published_parameters(name) - (DEFAULT_CLASSES[family] - CLASSES) * (features + 1)
    assert sum(p.numel() for p in model.parameters()) == expected
    x = torch.randn(BATCH, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        alone = model(x[1:])
    assert logits.shape == (BATCH, CLASSES) and logits.dtype == torch.float32
    if name == "resnet1202":
        # randomly initialised residual sums roughly double the signal per block in eval mode (BN with
        # unit running variance does not rescale): after 600 blocks float32 overflows to inf/NaN, so
        # only the shape is meaningful here
        return
    assert torch.isfinite(logits).all()
    scale = float(logits.abs().max())
    # eval mode: an image's logits do not depend on the rest of its batch
    torch.testing.assert_close(logits[1:], alone, rtol=0, atol=1e-4 * max(1.0, scale))


@pytest.mark.parametrize("name", NAMES)
def test_every_listed_name_is_an_entry_point_building_the_same_architecture(name):
    builder = getattr(models, name)
    assert callable(builder)
    ours = _on_meta(lambda: builder(num_classes=CLASSES))  # keyword options pass through
    reference = _meta_model(name)
    assert type(ours) is type(reference)
    assert ours.config == dataclasses.replace(reference.config, num_classes=CLASSES)
    features = reference.config.feature_channels
    head = {"fc.weight": (CLASSES, features), "fc.bias": (CLASSES,)}
    assert _shapes(ours) == {**_shapes(reference), **head}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A few cheap names exported once (opset 17: the TorchScript exporter, ~1 s each)."""
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    root = tmp_path_factory.mktemp("every-model-onnx")
    options = {
        "resnet20": {"depth": 20},
        "plain20": {"depth": 20, "plain": True},
        "resnet18": {"depth": 18, "input_size": 64, "num_classes": CLASSES},
    }
    out = {}
    for name, kwargs in options.items():
        source = open_model(**kwargs)
        result = export_onnx(source.model, root / f"{name}.onnx", source.metadata, opset=17)
        out[name] = (source, result)
    return out


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18"])
@pytest.mark.parametrize("batch", [1, 3])
def test_an_exported_model_has_a_dynamic_batch_and_one_output_per_class(exported, name, batch):
    source, result = exported[name]
    config = source.metadata.config
    assert config.name == name and result.batch == "dynamic"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(result.path), options, providers=["CPUExecutionProvider"])
    (declared_input,), (declared_output,) = session.get_inputs(), session.get_outputs()
    assert declared_input.shape[1:] == [3, config.input_size, config.input_size]
    assert isinstance(declared_input.shape[0], str)  # a symbolic batch, not a baked-in size
    assert isinstance(declared_output.shape[0], str) and declared_output.shape[1] == config.num_classes
    x = torch.randn(batch, 3, config.input_size, config.input_size, generator=torch.Generator().manual_seed(batch))
    (logits,) = session.run(None, {declared_input.name: x.numpy()})
    assert logits.shape == (batch, config.num_classes)
    with torch.no_grad():
        expected = source.model(x).numpy()
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4 * max(1.0, scale))
