import pytest
import torch
import torchvision
from torch import nn

from resnet_deploy.models import BasicBlock, Bottleneck, ZeroPadShortcut, build_model


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_default_variant_loads_torchvision_weights_with_identical_outputs(depth):
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    with torch.no_grad():  # non-trivial BN statistics, so a mis-wired BN cannot hide
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    ours = build_model(depth).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


def test_paper_v1_has_the_same_weights_but_strides_in_the_first_1x1():
    v1, v15 = build_model(50, variant="v1"), build_model(50)
    assert {k: v.shape for k, v in v1.state_dict().items()} == {k: v.shape for k, v in v15.state_dict().items()}
    first = v1.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    v1.load_state_dict(v15.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(v1.eval()(x), v15.eval()(x))


def test_option_a_subsamples_and_appends_zero_channels():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    y = shortcut(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


def _downsamples(model):
    return [type(block.downsample).__name__ for stage in model.stage_names for block in getattr(model, stage)]


def test_shortcut_options_place_projections_as_the_paper_says():
    # CIFAR ResNet-20: 9 blocks, the shape changes at blocks 4 and 7.
    assert _downsamples(build_model(20, shortcut="A")).count("ZeroPadShortcut") == 2
    assert _downsamples(build_model(20, shortcut="B")).count("Sequential") == 2
    assert _downsamples(build_model(20, shortcut="C")) == ["Sequential"] * 9
    assert _downsamples(build_model(20, plain=True)) == ["NoneType"] * 9
    # ResNet-50 option A: layer1's 64->256 widening is zero-padded too.
    assert _downsamples(build_model(50, shortcut="A")).count("ZeroPadShortcut") == 4


@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_a_plain_block_has_no_identity_path(block_cls):
    channels = 64 if block_cls is BasicBlock else 16
    residual = block_cls(channels * block_cls.expansion, channels, shortcut="B").eval()
    plain = block_cls(channels * block_cls.expansion, channels, shortcut=None).eval()
    for block in (residual, plain):  # zero every conv: only the shortcut can carry signal
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.zeros_(module.weight)
    x = torch.rand(1, channels * block_cls.expansion, 8, 8)
    with torch.no_grad():
        assert torch.equal(residual(x), x)  # identity shortcut, then ReLU of a non-negative input
        assert torch.count_nonzero(plain(x)) == 0


def test_any_class_count_and_input_size():
    model = build_model(50, num_classes=7, input_size=96).eval()
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (3, 2048, 3, 3)
        assert model.forward_head(features, pre_logits=True).shape == (3, 2048)
        assert model(x).shape == (3, 7)
    cifar = build_model(56, num_classes=100, input_size=40).eval()
    with torch.no_grad():
        assert cifar(torch.randn(2, 3, 40, 40)).shape == (2, 100)


def test_resnet1202_builds_and_runs():
    model = build_model(1202).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
