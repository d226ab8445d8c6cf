"""Checkpoints that pickle more than tensors: refused unrun, in resnet-deploy's words, never torch's."""

from __future__ import annotations

import pytest
import torch

from resnet_deploy.errors import CheckpointError
from resnet_deploy.models import build_model
from resnet_deploy.models.checkpoint import load_checkpoint
from tests.cli_helpers import assert_one_line_error, invoke

TORCHS_ADVICE = ("weights_only", "will likely succeed", "add_safe_globals")


class RunsCode:
    """A pickle payload: unpickling it would create ``marker``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payloads(marker) -> dict:
    weights = build_model(20).state_dict()
    return {
        "whole file": RunsCode(marker),
        "beside the weights": {**weights, "extra": RunsCode(marker)},
        "wrapped": {"state_dict": weights, "optimizer": RunsCode(marker)},
    }


@pytest.mark.parametrize("kind", ["whole file", "beside the weights", "wrapped"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_checkpoint_that_pickles_objects_is_refused_without_running_them(tmp_path, kind, legacy) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "model.pt"
    torch.save(_payloads(marker)[kind], path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "is not a plain state dict (it pickles " in message and "\n" not in message
    assert "resave it with torch.save(model.state_dict(), path)" in message
    assert "use a checkpoint written by resnet-deploy" in message
    assert not any(advice in message for advice in TORCHS_ADVICE)
    assert caught.value.__cause__ is None  # torch's advice does not ride along in the chain either
    assert not marker.exists()


def test_export_of_a_checkpoint_that_pickles_objects_is_one_line_in_resnet_deploys_words(tmp_path) -> None:
    marker = tmp_path / "payload-ran"
    torch.save(RunsCode(marker), tmp_path / "model.pt")
    result = invoke("export", "--checkpoint", str(tmp_path / "model.pt"), "-o", str(tmp_path / "m.onnx"))
    assert_one_line_error(result, "is not a plain state dict (it pickles ")
    assert not any(advice in result.output for advice in TORCHS_ADVICE)
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


def test_a_plain_pickle_is_no_checkpoint_and_torchs_warning_is_not_relayed(tmp_path) -> None:
    import pickle

    with open(tmp_path / "model.pt", "wb") as fh:
        pickle.dump({"conv1.weight": [1.0]}, fh, protocol=4)
    result = invoke("export", "--checkpoint", str(tmp_path / "model.pt"), "-o", str(tmp_path / "m.onnx"))
    assert_one_line_error(result, "is not a PyTorch checkpoint (it does not unpickle)")
    assert not any(advice in result.output for advice in TORCHS_ADVICE)
    assert "warning" not in result.output.lower()
