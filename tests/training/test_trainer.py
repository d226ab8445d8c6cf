"""Training runs on tiny real-format data: checkpoints, logs, resume bit for bit, clear refusals."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from resnet_deploy.errors import CheckpointError, TrainingError
from resnet_deploy.models.checkpoint import load_checkpoint
from resnet_deploy.training.trainer import Trainer, TrainOptions
from tests.factories import write_tiny_cifar


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"), train=70, test=30)


def options(cifar_dir, **kw) -> TrainOptions:
    return TrainOptions.of(**{"depth": 20, "data": f"cifar10:{cifar_dir}", "epochs": 2, "batch_size": 32, **kw})


def run(opts: TrainOptions, run_dir, **kw):
    return Trainer(opts, run_dir, **kw).run()


def test_run_writes_checkpoint_metadata_and_logs(cifar_dir, tmp_path) -> None:
    result = run(options(cifar_dir), tmp_path / "r")
    assert result.epochs == 2 and len(result.history) == 2
    ckpt = load_checkpoint(tmp_path / "r" / "model.pt")
    meta = ckpt.metadata
    assert meta["dataset"] == f"cifar10:{cifar_dir.resolve()}"
    assert meta["class_names"] == [f"class{i}" for i in range(10)]
    assert meta["epochs"] == 2 and meta["recipe"] == "paper-cifar" and meta["normalize"] == "pixel-mean"
    assert (meta["mean"], meta["std"]) == ([0.0] * 3, [1.0] * 3)  # the model subtracts its mean image itself
    assert result.final is not None
    assert meta["test_top1_error"] == pytest.approx(result.final.test_top1_error, abs=1e-3)
    assert ckpt.config is not None and ckpt.config.pixel_mean and ckpt.config.num_classes == 10
    # the pixel mean is the training set's mean image, stored in the checkpoint
    from resnet_deploy.data import open_dataset

    expected = open_dataset(f"cifar10:{cifar_dir}").train.pixel_mean(32)
    assert torch.allclose(ckpt.state_dict["pixel_mean"], expected)
    rows = list(csv.DictReader(open(tmp_path / "r" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) >= {"train_loss", "train_top1_error", "test_top1_error", "test_top5_error", "lr"}
    assert json.loads((tmp_path / "r" / "log.json").read_text())[1]["epoch"] == 2
    # lr: 3 steps/epoch of 32 on 70 images, 6 steps, drops at 3 and 4 (50%, 75%)
    assert [r.lr for r in result.history] == pytest.approx([0.025, 0.00025])


def test_same_seed_same_weights_other_seed_other_weights(cifar_dir, tmp_path) -> None:
    a = run(options(cifar_dir, epochs=1), tmp_path / "a")
    b = run(options(cifar_dir, epochs=1), tmp_path / "b")
    c = run(options(cifar_dir, epochs=1, seed=1), tmp_path / "c")
    sa, sb, sc = (load_checkpoint(r.checkpoint).state_dict for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc.weight"], sc["fc.weight"])


@pytest.mark.parametrize("kw", [{}, {"seed": 7, "plain": True}], ids=["resnet", "plain-seed7"])
def test_resume_after_interrupt_is_bit_for_bit(cifar_dir, tmp_path, kw) -> None:
    straight = run(options(cifar_dir, epochs=3, **kw), tmp_path / "straight")

    def interrupt(row):
        if row.epoch == 2:
            raise KeyboardInterrupt

    trainer = Trainer(options(cifar_dir, epochs=3, **kw), tmp_path / "cut", on_epoch=interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert trainer.epochs_done == 2
    assert load_checkpoint(tmp_path / "cut" / "model.pt").metadata["epochs"] == 2  # last good epoch intact
    assert not [p for p in (tmp_path / "cut").iterdir() if p.name.startswith(".")]  # no temp files left
    # resumed with no options at all: seed, plain, data and plan all come from the saved state
    resumed = Trainer(TrainOptions.of(), tmp_path / "cut", resume=tmp_path / "cut").run()
    assert resumed.resumed_from == 2 and len(resumed.history) == 3
    a = load_checkpoint(straight.checkpoint).state_dict
    b = load_checkpoint(resumed.checkpoint).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[-1].test_loss == straight.history[-1].test_loss


def test_resume_of_a_finished_run_does_nothing(cifar_dir, tmp_path) -> None:
    run(options(cifar_dir, epochs=1), tmp_path / "r")
    again = Trainer(TrainOptions.of(), tmp_path / "r", resume=tmp_path / "r").run()
    assert again.resumed_from == 1 and len(again.history) == 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"depth": 56}, r"trains resnet20 with `depth` 20, not 56; drop `depth`"),
        ({"plain": True}, r"trains resnet20, not a plain network; drop `plain`"),
        ({"seed": 3}, r"with `seed` 0, not 3"),
        ({"epochs": 9}, r"with `epochs` 1, not 9"),
        ({"shortcut": "B"}, r"with `shortcut` A, not B"),
    ],
)
def test_resume_refuses_another_architecture_or_plan(cifar_dir, tmp_path, kw, message) -> None:
    run(options(cifar_dir, epochs=1), tmp_path / "r")
    with pytest.raises(TrainingError, match=message):
        Trainer(TrainOptions.of(**kw), tmp_path / "r", resume=tmp_path / "r")


def test_resume_needs_a_run(tmp_path) -> None:
    with pytest.raises(TrainingError, match="nothing to resume"):
        Trainer(TrainOptions.of(), tmp_path, resume=tmp_path)


def test_existing_run_is_not_overwritten(cifar_dir, tmp_path) -> None:
    run(options(cifar_dir, epochs=1), tmp_path / "r")
    with pytest.raises(TrainingError, match="already holds a training run; continue it with `resume="):
        Trainer(options(cifar_dir), tmp_path / "r")


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"batch_size": 1}, "at least 2"), ({"lr": -1.0}, "positive number"), ({"lr": float("nan")}, "positive")],
)
def test_bad_hyperparameters(cifar_dir, tmp_path, kw, message) -> None:
    with pytest.raises(TrainingError, match=message):
        run(options(cifar_dir, **kw), tmp_path / "r")


def test_bad_run_directory_and_device(cifar_dir, tmp_path) -> None:
    from resnet_deploy.errors import OutputPathError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError, match="is a file"):
        Trainer(options(cifar_dir), tmp_path / "afile")
    with pytest.raises(OutputPathError, match="cannot create run directory"):
        run(options(cifar_dir), tmp_path / "afile" / "sub")
    with pytest.raises(TrainingError, match="unknown `device='gpu0'`"):
        Trainer(options(cifar_dir, device="gpu0"), tmp_path / "r")


def test_class_count_disagreeing_with_the_data(cifar_dir, tmp_path) -> None:
    with pytest.raises(TrainingError, match="has 10 classes, not 7; drop `num_classes`"):
        run(options(cifar_dir, num_classes=7), tmp_path / "r")


def test_fine_tune_needs_new_head_for_other_classes(cifar_dir, tmp_path) -> None:
    from resnet_deploy import build_model, save_checkpoint

    save_checkpoint(build_model(20, num_classes=100), tmp_path / "c100.pt")
    with pytest.raises(TrainingError, match="has 100 classes but dataset cifar10 has 10; pass `new_head`"):
        run(options(cifar_dir, depth=None, checkpoint=str(tmp_path / "c100.pt")), tmp_path / "r")
    result = run(
        options(cifar_dir, depth=None, epochs=1, checkpoint=str(tmp_path / "c100.pt"), new_head=True), tmp_path / "r2"
    )
    assert result.config.num_classes == 10 and not result.config.pixel_mean


def test_divergence_is_a_clear_error(cifar_dir, tmp_path) -> None:
    with pytest.raises(TrainingError, match="training diverged: loss nan"):
        run(options(cifar_dir, lr=1e12), tmp_path / "r")


def test_channel_normalisation_records_mean_and_std(cifar_dir, tmp_path) -> None:
    result = run(options(cifar_dir, epochs=1, normalize="channel"), tmp_path / "r")
    meta = load_checkpoint(result.checkpoint).metadata
    assert meta["normalize"] == "channel" and meta["std"][0] > 0.05 and not result.config.pixel_mean


def test_pixel_mean_checkpoint_refuses_other_input_sizes(cifar_dir, tmp_path) -> None:
    from resnet_deploy.models.source import open_model

    result = run(options(cifar_dir, epochs=1), tmp_path / "r")
    with pytest.raises(CheckpointError, match="takes only 32x32 inputs; drop `input_size`"):
        open_model(result.checkpoint, input_size=64)


def test_imagefolder_training_with_a_broken_image(tmp_path) -> None:
    from tests.factories import write_image_folder

    write_image_folder(tmp_path / "d" / "train", per_class=6)
    write_image_folder(tmp_path / "d" / "val", per_class=2)
    (tmp_path / "d" / "train" / "cat" / "bad.png").write_bytes(b"\x89PNG broken")
    opts = TrainOptions.of(depth=20, data=f"imagefolder:{tmp_path / 'd'}", epochs=1, batch_size=8, input_size=32)
    with pytest.raises(Exception, match=r"1 of 19 training images failed to decode"):
        run(opts, tmp_path / "r")
    opts.max_bad_fraction = 0.1
    result = run(opts, tmp_path / "r2")
    assert result.history[0].skipped_images == 1 and result.config.input_size == 32
    assert load_checkpoint(result.checkpoint).metadata["class_names"] == ["cat", "dog", "fox"]
    # every test image undecodable: refused even with a lenient limit (errors would be NaN)
    for image in (tmp_path / "d" / "val").rglob("*.png"):
        image.write_bytes(b"not an image")
    opts.max_bad_fraction = 1.0
    with pytest.raises(Exception, match=r"none of the 6 test images decoded"):
        run(opts, tmp_path / "r3")
    assert not (tmp_path / "r3" / "model.pt").exists()


def test_on_cuda_determinism_is_set_without_the_nan_fill_and_restored_here(monkeypatch) -> None:
    """What make_deterministic sets on CUDA (none of it needs a GPU to set): deterministic cuDNN without
    autotuning and PyTorch's deterministic kernels, not the NaN fill of every new tensor (a debugging aid
    that writes each activation twice)."""
    from resnet_deploy.training import trainer

    cudnn, fill = torch.backends.cudnn, torch.utils.deterministic
    saved = (
        cudnn.benchmark,
        cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        fill.fill_uninitialized_memory,
    )
    try:
        assert trainer.make_deterministic(torch.device("cpu")) is None and fill.fill_uninitialized_memory == saved[3]
        monkeypatch.setattr(trainer, "_CUBLAS_SET_LATE", False)
        assert trainer.make_deterministic(torch.device("cuda")) is None
        assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == (
            False,
            True,
            True,
        )
        assert torch.is_deterministic_algorithms_warn_only_enabled() and fill.fill_uninitialized_memory is False
        monkeypatch.setattr(trainer, "_CUBLAS_SET_LATE", True)
        late = trainer.make_deterministic(torch.device("cuda"))
        assert late is not None and "set CUBLAS_WORKSPACE_CONFIG=:4096:8 before any CUDA work" in late
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2])
        fill.fill_uninitialized_memory = saved[3]


def test_cublas_gets_its_reproducible_workspace_when_the_trainer_is_imported(tmp_path) -> None:
    """cuBLAS reads the variable once, at its first handle: set at import, not when training starts,
    so an application that imports the trainer before its own CUDA work trains reproducibly."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    code = "import os, resnet_deploy.training.trainer as t; print(os.environ['CUBLAS_WORKSPACE_CONFIG'])"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.stdout.split() == [":4096:8"], done.stderr[-2000:]


def test_a_gpu_this_machine_does_not_have_is_refused_in_one_line(monkeypatch) -> None:
    from resnet_deploy.training.trainer import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(
        TrainingError, match=r"^`device=cuda:3` asked for, but this machine has 2 GPU\(s\): use cuda:0 to cuda:1$"
    ):
        pick_device("cuda:3")
