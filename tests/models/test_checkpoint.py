import json

import pytest
import torch
import torchvision

from resnet_deploy.errors import CheckpointError
from resnet_deploy.models import build_model
from resnet_deploy.models.checkpoint import (
    infer_layout,
    load_checkpoint,
    metadata_path,
    model_from_checkpoint,
    save_checkpoint,
)
from resnet_deploy.models.source import open_model


@pytest.fixture(scope="module")
def torchvision18(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_our_checkpoint_rebuilds_the_model_from_the_file_alone(tmp_path):
    model = build_model(32, shortcut="C", num_classes=4).eval()
    path = save_checkpoint(model, tmp_path / "model.pt", {"dataset": "digits", "class_names": list("abcd")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]
    assert isinstance(torch.load(path, weights_only=True), dict)  # a plain state dict
    ckpt = load_checkpoint(path)
    assert ckpt.config == model.config and ckpt.class_names == list("abcd")
    rebuilt = model_from_checkpoint(ckpt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_torchvision_state_dict_architecture_is_read_off_its_keys(torchvision18):
    model, path = torchvision18
    source = open_model(path)
    assert source.metadata.config.name == "resnet18"
    assert source.metadata.class_names is not None and len(source.metadata.class_names) == 1000
    assert source.metadata.checkpoint_sha256 == load_checkpoint(path).sha256
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source.model(x), model(x))


def test_wrapped_and_dataparallel_state_dicts_load(tmp_path, torchvision18):
    model, _ = torchvision18
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": prefixed, "epoch": 90}, tmp_path / "wrapped.pth")
    assert open_model(tmp_path / "wrapped.pth").metadata.config.depth == 18


def test_layout_inference():
    assert infer_layout(build_model(152).state_dict()).depth == 152
    assert infer_layout(build_model(20, shortcut="C").state_dict()).shortcut == "C"
    assert infer_layout(build_model(50).state_dict()).shortcut == "B"
    layout = infer_layout(build_model(56, num_classes=100).state_dict())
    assert (layout.depth, layout.num_classes, layout.shortcut) == (56, 100, None)


def test_a_pickled_module_is_refused_without_running_it(tmp_path, torchvision18):
    model, _ = torchvision18
    torch.save(model, tmp_path / "full.pth")
    with pytest.raises(
        CheckpointError, match=r"not a plain state dict \(it pickles torchvision.models.resnet.ResNet\)"
    ):
        load_checkpoint(tmp_path / "full.pth")


def test_files_that_are_not_checkpoints(tmp_path, torchvision18):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    (tmp_path / "cut.pth").write_bytes(torchvision18[1].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    torch.save({"lr": torch.tensor(0.1), "note": "x"}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="not a plain state dict: entries"):
        load_checkpoint(tmp_path / "odd.pt")


def test_mismatches_name_keys_and_the_fix(torchvision18):
    _, path = torchvision18
    with pytest.raises(CheckpointError) as err:
        open_model(path, depth=34)
    assert "missing keys: layer1.2.conv1.weight" in str(err.value) and "pass `depth=18`" in str(err.value)
    with pytest.raises(
        CheckpointError, match=r"fc.weight \(checkpoint \[1000, 512\] vs model \[10, 512\]\).*`num_classes=1000`"
    ):
        open_model(path, num_classes=10)


def test_recorded_options_cannot_be_contradicted(tmp_path):
    path = save_checkpoint(build_model(20), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="records `depth` 20, not 56"):
        open_model(path, depth=56)
    assert open_model(path, input_size=48).metadata.config.input_size == 48  # the deploy size may change


def test_metadata_of_another_file_is_detected(tmp_path):
    path = save_checkpoint(build_model(20), tmp_path / "m.pt")
    torch.save(build_model(20).state_dict(), path)  # replaced without its JSON
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_checkpoint(path)
    metadata_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    metadata_path(path).write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not resnet-deploy checkpoint metadata"):
        load_checkpoint(path)


def test_imagenet_net_without_projections_asks_which_one(tmp_path):
    torch.save(build_model(18, shortcut="A").state_dict(), tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="pass `shortcut=A` or `plain`"):
        open_model(tmp_path / "a.pth")
    assert open_model(tmp_path / "a.pth", shortcut="A").metadata.config.shortcut == "A"
