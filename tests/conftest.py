"""Markers that skip themselves where the hardware or package is absent, and shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnet_deploy._lazy import is_available

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--runslow") or os.environ.get("RESNET_DEPLOY_SLOW") == "1"
    from resnet_deploy.trt.flavours import installed

    # a real import, not find_spec: tensorrt-stubs (for mypy) leaves a bare `tensorrt` namespace
    backends = installed() if is_available("tensorrt") or is_available("tensorrt_rtx") else []
    reasons = {
        "gpu": None if _has_cuda() else "needs an NVIDIA GPU",
        "tensorrt": None if "tensorrt" in backends else "needs full TensorRT (JetPack, or NVIDIA's index)",
        "rtx": None if "tensorrt-rtx" in backends else "needs tensorrt-rtx (pip install 'resnet-deploy[rtx]')",
        "slow": None if run_slow else "slow: run with --runslow",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _child_environment(tmp_path_factory: pytest.TempPathFactory):
    """What every process a test starts inherits: ImageFolder indexes in a session folder, not the user's
    ~/.cache; this checkout first on the path, so `python -m resnet_deploy` and the scripts run this
    code from any working directory, installed or not (a bare checkout on a GPU machine is not)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_DEPLOY_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        yield


@pytest.fixture(autouse=True)
def _cpu_tests_stay_on_the_cpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked `gpu` runs as on a machine without one, GPU or not: `device=auto` picks the CPU
    in it, and in the processes it starts. (The collection above has already started CUDA in this
    process where there is a GPU, so the variable reaches only child processes; `gpu` tests keep it.)"""
    if request.node.get_closest_marker("gpu") is not None:
        return
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    try:
        import torch
    except ImportError:
        return

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture(scope="session")
def resnet20_export(tmp_path_factory: pytest.TempPathFactory):
    """One ResNet-20 built, exported and verified once for the whole session."""
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    torch.manual_seed(0)
    source = open_model(depth=20)
    path = tmp_path_factory.mktemp("export") / "resnet20.onnx"
    result = export_onnx(source.model, path, source.metadata)
    return source, result


@pytest.fixture(scope="session")
def trained_resnet20(tmp_path_factory: pytest.TempPathFactory):
    """A ResNet-20 trained 3 epochs on the embedded digits (~15 s) and its verified FP32 ONNX.

    Returns (checkpoint path, onnx path); shared by the quantization, validation and engine tests.
    """
    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model
    from resnet_deploy.training.trainer import Trainer, TrainOptions

    root = tmp_path_factory.mktemp("trained")
    result = Trainer(TrainOptions.of(depth=20, epochs=3, device="cpu"), root / "run").run()  # the same on any machine
    source = open_model(result.checkpoint)
    export_onnx(source.model, root / "resnet20.onnx", source.metadata)
    return result.checkpoint, root / "resnet20.onnx"


CULPRIT_MODULE = "layer2.1.conv2"  # the layer per-tensor INT8 ruins in `culprit_resnet20`


@pytest.fixture(scope="session")
def culprit_resnet20(trained_resnet20, tmp_path_factory: pytest.TempPathFactory):
    """The trained ResNet-20 with one planted INT8 culprit, its FP32 function unchanged.

    Channel 3 of layer2.1's first BatchNorm is scaled up 10,000x and the weights that read it in
    layer2.1.conv2 scaled down 10,000x: ReLU commutes with the scale, so FP32 logits are the same, but
    the input of layer2.1.conv2 now has one channel 10,000x larger than the rest, and its one per-tensor
    INT8 scale rounds every other channel to zero. Returns the ONNX path.
    """
    checkpoint, _ = trained_resnet20
    return scaled_twin(checkpoint, "layer2", 1, 3, 10_000.0, tmp_path_factory.mktemp("culprit") / "culprit.onnx")


def scaled_twin(checkpoint: Path, stage: str, block: int, channel: int, factor: float, path: Path) -> Path:
    """``checkpoint`` exported to ``path`` with one channel of ``stage[block]``'s Conv->BN->ReLU->Conv chain scaled
    up ``factor`` times into the ReLU (its first BatchNorm's weight and bias) and down in the next conv's weights
    that read it: ReLU commutes with the scale, so the FP32 function is the same (the export verifies it)."""
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    source = open_model(checkpoint)
    chain = getattr(source.model, stage)[block]
    with torch.no_grad():
        chain.bn1.weight[channel] *= factor
        chain.bn1.bias[channel] *= factor
        chain.conv2.weight[:, channel] /= factor
    export_onnx(source.model, path, source.metadata)
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory):
    """A resnet-deploy ONNX (our metadata, dynamic batch) of the smallest CIFAR ResNet at 8x8: for the
    engine runner's tests, whose stand-in engines compute a fixed map whatever the model."""
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    torch.manual_seed(0)
    source = open_model(depth=20, input_size=8)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(source.model, path, source.metadata, verify=False)
    return path
