"""Undecodable images are named wherever they are skipped: batches, training, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_deploy.data import open_dataset
from resnet_deploy.data.base import name_files
from resnet_deploy.errors import DatasetError
from tests.factories import write_image_folder


def _broken(path):
    path.write_bytes(b"\x89PNG broken")
    return str(path.resolve())


def test_name_files_names_the_first_three_and_counts_the_rest() -> None:
    assert name_files([]) == ""
    assert name_files(["a.png"]) == "a.png"
    assert name_files(["a", "b", "c"]) == "a, b, c"
    assert name_files(["a", "b", "c", "d", "e"]) == "a, b, c (+2 more)"
    assert name_files(["a", "b"], total=10) == "a, b (+8 more)"  # only some of the 10 were kept
    assert name_files(["a", "b", "c", "d"], limit=1) == "a (+3 more)"


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_carry_the_paths_of_the_files_they_skipped(tmp_path, workers) -> None:
    write_image_folder(tmp_path / "train", per_class=2, size=16)
    write_image_folder(tmp_path / "val", per_class=2, size=16)
    bad = [_broken(tmp_path / "val" / "dog" / "x.png"), _broken(tmp_path / "val" / "fox" / "y.png")]
    data = open_dataset(f"imagefolder:{tmp_path}", workers=workers)
    batches = list(data.test.batches(3, size=8))
    assert sum(b.skipped for b in batches) == 2 and sum(len(b.labels) for b in batches) == 6
    assert sorted(p for b in batches for p in b.skipped_paths) == bad
    assert all(b.skipped == len(b.skipped_paths) for b in batches)


def test_a_batch_of_only_undecodable_files_is_empty_but_named(tmp_path) -> None:
    write_image_folder(tmp_path / "train", per_class=1, size=16)
    write_image_folder(tmp_path / "val", per_class=1, size=16)
    for image in (tmp_path / "val").rglob("*.png"):
        _broken(image)
    (batch,) = open_dataset(f"imagefolder:{tmp_path}").test.batches(8, size=8)
    assert len(batch.labels) == 0 and batch.skipped == 3
    assert [p.rsplit("/", 2)[-2] for p in batch.skipped_paths] == ["cat", "dog", "fox"]


def test_calibration_names_the_files_that_did_not_decode(tmp_path) -> None:
    from resnet_deploy.artifacts.model_spec import model_config
    from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
    from resnet_deploy.quantize.calib_data import load_calibration_set

    write_image_folder(tmp_path, per_class=10, size=16)  # 27 train images after the 10% holdout
    meta = ArtifactMetadata(config=model_config(20, input_size=8, num_classes=3), mean=(0.5,) * 3, std=(0.25,) * 3)
    spec = f"imagefolder:{tmp_path}"
    train = open_dataset(spec).train
    bad = _broken(Path(train.samples[5][0]))
    with pytest.raises(DatasetError) as caught:
        load_calibration_set(meta, spec, len(train))
    message = str(caught.value)
    assert message.startswith(f"only {len(train) - 1} of the {len(train)} calibration images") and bad in message
    assert "remove or fix the unreadable files" in message
    # every image undecodable: still one clear error naming them (an all-empty batch is not a crash)
    for image in tmp_path.rglob("*.png"):
        _broken(image)
    with pytest.raises(DatasetError, match=r"only 0 of the 4 calibration images .* \(.*\.png.*\(\+1 more\) did not\)"):
        load_calibration_set(meta, spec, 4)


@pytest.fixture
def folder_with_a_broken_image(tmp_path):
    write_image_folder(tmp_path / "d" / "train", per_class=6, size=16)
    write_image_folder(tmp_path / "d" / "val", per_class=2, size=16)
    return tmp_path / "d", _broken(tmp_path / "d" / "train" / "cat" / "bad.png")


def test_training_names_undecodable_files_in_its_epoch_lines_warning_and_log(folder_with_a_broken_image, tmp_path):
    from resnet_deploy.messages import Recorded
    from resnet_deploy.training.log import describe_epoch
    from resnet_deploy.training.trainer import Trainer, TrainOptions

    root, bad = folder_with_a_broken_image
    opts = TrainOptions.of(
        depth=20, data=f"imagefolder:{root}", epochs=2, batch_size=8, input_size=8, max_bad_fraction=0.1
    )
    out = Recorded()
    warnings = out.warnings
    result = Trainer(opts, tmp_path / "r", out=out).run()
    assert [row.skipped_images for row in result.history] == [1, 1]
    assert [row.skipped_paths for row in result.history] == [(bad,), (bad,)]
    assert warnings == [f"skipping 1 undecodable image: {bad}; remove or fix them"]  # once a run, not an epoch
    line = describe_epoch(result.history[0], 2)
    assert line.startswith("epoch   1/2") and line.endswith(f"(1 undecodable skipped: {bad})")
    assert json.loads((tmp_path / "r" / "log.json").read_text())[1]["skipped_paths"] == [bad]
    # the refusal when too many fail names them too
    opts.max_bad_fraction = 0.01
    with pytest.raises(DatasetError, match=rf"1 of 19 training images failed to decode \(more than 1.0%\): {bad}; "):
        Trainer(opts, tmp_path / "r2")._check_skipped(1, 19, "training", [bad])


def test_epoch_line_of_an_old_log_row_without_paths() -> None:
    from resnet_deploy.training.log import describe_epoch

    row = {
        "epoch": 3,
        "lr": 0.1,
        "train_loss": 0.5,
        "train_top1_error": 10.0,
        "test_top1_error": 12.0,
        "test_top5_error": 1.0,
        "images_per_second": 100.0,
        "epoch_seconds": 2.0,
        "skipped_images": 2,
    }
    assert describe_epoch(row, 5).endswith("  (2 undecodable skipped)")
    many = [f"/d/{i}.png" for i in range(100)]  # a row keeps the first 100 of 250
    assert describe_epoch({**row, "skipped_images": 250, "skipped_paths": many}, 5).endswith(
        "(250 undecodable skipped: /d/0.png, /d/1.png, /d/2.png (+247 more))"
    )
    assert "skipped" not in describe_epoch({**row, "skipped_images": 0}, 5)


def test_held_out_images_that_do_not_decode_are_named_not_scored(tmp_path) -> None:
    from resnet_deploy.artifacts.model_spec import model_config
    from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
    from resnet_deploy.quantize.calib_data import load_held_out_set

    write_image_folder(tmp_path / "train", per_class=2, size=16)
    write_image_folder(tmp_path / "val", per_class=3, size=16)
    bad = _broken(tmp_path / "val" / "dog" / "x.png")
    meta = ArtifactMetadata(config=model_config(20, input_size=8, num_classes=3), mean=(0.5,) * 3, std=(0.25,) * 3)
    held_out = load_held_out_set(meta, f"imagefolder:{tmp_path}", 10)  # 9 written + the broken one
    assert held_out.count == 9 and held_out.undecodable == [bad]
    note = held_out.skipped_note()
    assert note is not None and note.startswith("1 held-out test images of imagefolder:") and bad in note
    with pytest.raises(DatasetError, match="pass `images` 10 or fewer"):
        load_held_out_set(meta, f"imagefolder:{tmp_path}", 11, field="images")
