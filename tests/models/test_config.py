import pytest

from resnet_deploy.artifacts.model_spec import ResNetConfig
from resnet_deploy.errors import UnknownModelError
from resnet_deploy.models import get_model, model_config


def test_unknown_depth_lists_every_valid_depth():
    with pytest.raises(UnknownModelError) as err:
        model_config(51)
    message = str(err.value)
    for depth in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110, 1202):
        assert str(depth) in message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"plain": True, "shortcut": "A"}, "plain networks have no shortcuts"),
        ({"variant": "v2"}, "unknown variant"),
        ({"shortcut": "D"}, "unknown shortcut"),
        ({"num_classes": 0}, "number of classes must be at least 1"),
        ({"input_size": 16}, "use at least 32"),
    ],
)
def test_bad_options_are_named(kwargs, needle):
    with pytest.raises(UnknownModelError, match=needle):
        model_config(50, **kwargs)


def test_family_defaults_follow_the_paper():
    imagenet, cifar = model_config(50), model_config(20)
    assert (imagenet.shortcut, imagenet.variant, imagenet.num_classes, imagenet.input_size) == ("B", "v1.5", 1000, 224)
    assert (cifar.shortcut, cifar.num_classes, cifar.input_size, cifar.widths) == ("A", 10, 32, (16, 32, 64))
    assert cifar.layers == (3, 3, 3) and model_config(1202).layers == (200, 200, 200)


def test_names_leave_defaults_out():
    assert model_config(50).name == "resnet50"
    assert model_config(50, variant="v1").name == "resnet50-v1"
    assert model_config(34, plain=True).name == "plain34"
    assert model_config(20, shortcut="C").name == "resnet20-C"
    assert model_config(18, variant="v1").name == "resnet18"  # basic blocks: the variant changes nothing


def test_config_round_trips_through_a_dict():
    config = model_config(101, variant="v1", shortcut="C", num_classes=37, input_size=160)
    assert ResNetConfig.from_dict(config.to_dict()) == config


def test_get_model_parses_names():
    assert get_model("resnet50-v1").config == model_config(50, variant="v1")
    assert get_model("plain20").config.plain
    assert get_model("resnet20-C", num_classes=4).config.num_classes == 4
    with pytest.raises(UnknownModelError, match="unknown model name"):
        get_model("vgg16")
