"""Unit tests of the training log (``training.log``) and the top-k metrics (``training.metrics``).

The metrics run on hand-made logits; ``evaluate`` runs a lookup "model" whose logits for an image
are a row of a table chosen by the image's pixel value, so every count, error and loss is known
exactly beforehand.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

from resnet_deploy.artifacts.train_state import EpochRecord
from resnet_deploy.data.base import Batch
from resnet_deploy.data.tensor_split import TensorSplit
from resnet_deploy.errors import OutputPathError
from resnet_deploy.models import get_model
from resnet_deploy.training.log import COLUMNS, describe_epoch, write_log
from resnet_deploy.training.metrics import evaluate, topk_correct

CPU = torch.device("cpu")

# ---- topk_correct --------------------------------------------------------------------------------

# 4 images, 5 classes; the label's rank (1 = top) in each row is 1, 2, 4, 5
LOGITS = torch.tensor(
    [
        [9.0, 1.0, 2.0, 3.0, 4.0],  # label 0: rank 1
        [1.0, 8.0, 9.0, 2.0, 3.0],  # label 1: rank 2
        [5.0, 4.0, 3.0, 2.0, 1.0],  # label 3: rank 4
        [0.5, 0.4, 0.3, 0.2, 0.1],  # label 4: rank 5
    ]
)
LABELS = torch.tensor([0, 1, 3, 4])


@pytest.mark.parametrize(("k", "correct"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4)])
def test_topk_correct_counts_the_images_whose_label_is_among_the_k_highest_logits(k, correct):
    count = topk_correct(LOGITS, LABELS, k)
    assert count == correct and type(count) is int


def test_topk_correct_takes_every_class_when_k_exceeds_the_class_count():
    assert topk_correct(LOGITS[:, :3], torch.tensor([2, 2, 2, 2]), 5) == 4  # k = min(5, 3 classes)
    assert topk_correct(LOGITS, LABELS, 100) == 4


def test_topk_correct_counts_one_of_two_tied_labels_at_the_cut_and_both_inside_it():
    tied = torch.tensor([[2.0, 2.0, 0.0]])
    # which of two equal logits is "first" is up to topk, but exactly one of them is taken
    assert topk_correct(tied, torch.tensor([0]), 1) + topk_correct(tied, torch.tensor([1]), 1) == 1
    assert topk_correct(tied, torch.tensor([0]), 2) == topk_correct(tied, torch.tensor([1]), 2) == 1
    assert topk_correct(tied, torch.tensor([2]), 2) == 0
    # a row of all-equal logits is top-3 correct for any label
    assert topk_correct(torch.zeros(3, 3), torch.tensor([0, 1, 2]), 3) == 3


def test_topk_correct_of_an_empty_batch_is_zero():
    assert topk_correct(torch.empty(0, 10), torch.empty(0, dtype=torch.int64), 5) == 0


# ---- evaluate ------------------------------------------------------------------------------------

# 8 images over 6 classes: image i gets row i; labels chosen for 3 top-1 and 6 top-5 hits
TABLE = [
    [5.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # label 0: top-1
    [0.0, 3.0, 1.0, 0.0, 0.0, 0.0],  # label 1: top-1
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 5: top-1
    [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # label 1: rank 2, top-5
    [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # label 4: rank 5, top-5
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # label 2: rank 4, top-5
    [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # label 5: rank 6, missed
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # label 0: rank 6, missed
]
TABLE_LABELS = [0, 1, 5, 1, 4, 2, 5, 0]


def _cross_entropy(row: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[label]


class Lookup(nn.Module):
    """Logits = ``table[pixel value]``: the model reads the normalised first pixel as a row index."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("table", torch.tensor(table))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0, 0, 0].round().long()]


def _split(labels: list[int], size: int = 4) -> TensorSplit:
    """Image i is a constant image of value i."""
    images = torch.arange(len(labels), dtype=torch.uint8)[:, None, None, None].expand(-1, 1, size, size)
    return TensorSplit(images.contiguous(), torch.tensor(labels))


def _to_pixel_values(x: torch.Tensor) -> torch.Tensor:
    return x * 255  # undo the split's [0, 1] scaling, so the lookup sees 0, 1, 2, ...


@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_evaluate_reports_exact_top1_top5_errors_and_mean_loss_at_any_batch_size(batch_size):
    result = evaluate(
        Lookup(TABLE), _split(TABLE_LABELS), size=4, normalize=_to_pixel_values, device=CPU, batch_size=batch_size
    )
    assert result.images == 8
    assert result.top1_error == pytest.approx(100 * (1 - 3 / 8))  # 62.5
    assert result.top5_error == pytest.approx(100 * (1 - 6 / 8))  # 25.0
    expected_loss = sum(_cross_entropy(row, label) for row, label in zip(TABLE, TABLE_LABELS, strict=True)) / 8
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    assert (result.skipped, result.skipped_paths) == (0, ())


def test_evaluate_feeds_the_model_normalised_images():
    # without the normalisation every image reads as row 0 (pixel values 0..7/255 round to 0)
    result = evaluate(Lookup(TABLE), _split(TABLE_LABELS), size=4, normalize=lambda x: x, device=CPU)
    assert result.top1_error == pytest.approx(100 * (1 - 2 / 8))  # row 0 predicts class 0: labels 0 at 0 and 7


def test_evaluate_takes_top5_as_top_k_over_all_classes_when_there_are_fewer_than_5():
    table = [[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]
    result = evaluate(Lookup(table), _split([0, 1, 2]), size=4, normalize=_to_pixel_values, device=CPU)
    assert result.top1_error == pytest.approx(100 * 2 / 3)
    assert result.top5_error == 0.0  # top-3 of 3 classes always holds the label


def test_evaluate_puts_the_model_in_eval_mode():
    model = Lookup(TABLE).train()
    evaluate(model, _split(TABLE_LABELS), size=4, normalize=_to_pixel_values, device=CPU)
    assert not model.training


def test_evaluate_of_an_empty_split_is_nan_not_a_division_by_zero():
    empty = TensorSplit(torch.empty(0, 1, 4, 4, dtype=torch.uint8), torch.empty(0, dtype=torch.int64))
    result = evaluate(Lookup(TABLE), empty, size=4, normalize=_to_pixel_values, device=CPU)
    assert result.images == 0
    assert math.isnan(result.loss) and math.isnan(result.top1_error) and math.isnan(result.top5_error)


class ScriptedSplit:
    """A split that yields given batches and records how it was asked for them."""

    def __init__(self, batches: list[Batch]) -> None:
        self._batches = batches
        self.calls: list[dict] = []

    def __len__(self) -> int:
        return sum(len(b.labels) for b in self._batches)

    def batches(self, batch_size, *, size, device=None, preprocess=None, **kwargs):
        self.calls.append(
            {"batch_size": batch_size, "size": size, "device": device, "preprocess": preprocess, **kwargs}
        )
        yield from self._batches


def test_evaluate_tallies_undecodable_images_even_from_batches_left_empty():
    def pixel_batch(values: list[int], labels: list[int], skipped: int, paths: tuple[str, ...]) -> Batch:
        images = torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 4, 4) / 255
        return Batch(images.contiguous(), torch.tensor(labels, dtype=torch.int64), skipped, paths)

    split = ScriptedSplit(
        [
            Batch(torch.empty(0, 1, 4, 4), torch.empty(0, dtype=torch.int64), 2, ("a.png", "b.png")),  # all failed
            pixel_batch([0, 1], [0, 5], 1, ("c.png",)),  # row 0 -> class 0 right; row 1 -> class 1, label 5 wrong
        ]
    )
    result = evaluate(Lookup(TABLE), split, size=4, normalize=_to_pixel_values, device=CPU, batch_size=64)
    assert result.images == 2 and result.top1_error == pytest.approx(50.0)
    assert result.skipped == 3 and result.skipped_paths == ("a.png", "b.png", "c.png")
    expected = {"batch_size": 64, "size": 4, "device": CPU, "preprocess": None, "shard": None}
    assert split.calls == [expected]  # evaluation order


@pytest.mark.parametrize(("name", "resize"), [("resnet20", "stretch"), ("resnet18", "crop")])
def test_evaluate_resizes_a_resnet_s_images_by_its_family_s_deployment_policy(name, resize):
    with torch.device("meta"):
        model = get_model(name)
    split = ScriptedSplit([])
    evaluate(model, split, size=model.config.input_size, normalize=lambda x: x, device=CPU)
    (call,) = split.calls
    assert call["preprocess"].resize == resize and call["size"] == model.config.input_size


# ---- write_log and describe_epoch ----------------------------------------------------------------


def _row(epoch: int, **overrides) -> dict:
    row = {
        "epoch": epoch,
        "lr": 0.1,
        "train_loss": 2.302585092994046,
        "train_top1_error": 89.0625,
        "test_loss": 2.1,
        "test_top1_error": 87.5,
        "test_top5_error": 50.0,
        "images_per_second": 1234.5678,
        "epoch_seconds": 12.3456789,
        "skipped_images": 0,
        "processes": 1,
    }
    return {**row, **overrides}


def _record(epoch: int, **overrides) -> EpochRecord:
    return EpochRecord.from_dict(_row(epoch, **overrides))


def test_write_log_writes_a_csv_in_column_order_with_six_significant_digits(tmp_path):
    write_log(tmp_path, [_record(1), _record(2, lr=0.000123456789, images_per_second=1234567.0)])
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1] == "1,0.1,2.30259,89.0625,2.1,87.5,50,1234.57,12.3457,0,1"
    assert lines[2] == "2,0.000123457,2.30259,89.0625,2.1,87.5,50,1.23457e+06,12.3457,0,1"
    assert len(lines) == 3


def test_write_log_keeps_full_records_in_json_and_only_the_columns_in_csv(tmp_path):
    history = [_record(1, skipped_images=1, skipped_paths=["/data/bad.png"])]
    write_log(tmp_path, history)
    rows = json.loads((tmp_path / "log.json").read_text())
    assert rows == [{**_row(1, skipped_images=1), "skipped_paths": ["/data/bad.png"]}]  # full precision
    assert [EpochRecord.from_dict(r) for r in rows] == history  # a log.json row reads back as the record
    (row,) = csv.DictReader((tmp_path / "log.csv").open())
    assert list(row) == list(COLUMNS) and row["skipped_images"] == "1" and row["train_loss"] == "2.30259"


def test_write_log_writes_a_figure_an_old_row_lacks_as_nan(tmp_path):
    old = {key: value for key, value in _row(3).items() if key not in ("test_loss", "skipped_images")}
    write_log(tmp_path, [EpochRecord.from_dict(old)])
    assert (tmp_path / "log.csv").read_text().splitlines()[1] == "3,0.1,2.30259,89.0625,nan,87.5,50,1234.57,12.3457,0,1"


def test_write_log_rewrites_both_files_whole_and_leaves_no_temporaries(tmp_path):
    write_log(tmp_path, [_record(1)])
    write_log(tmp_path, [_record(1), _record(2)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "log.json"]
    assert [r["epoch"] for r in csv.DictReader((tmp_path / "log.csv").open())] == ["1", "2"]
    assert [r["epoch"] for r in json.loads((tmp_path / "log.json").read_text())] == [1, 2]


def test_write_log_refuses_a_run_directory_that_does_not_exist(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        write_log(tmp_path / "missing", [_record(1)])
    assert not (tmp_path / "missing").exists()


def test_an_epoch_line_aligns_every_figure_in_its_column():
    record = _record(7, train_loss=0.123456, train_top1_error=3.14159, test_top5_error=0.25)
    expected = (
        "epoch   7/164  lr 0.1     train loss 0.1235 err  3.14%  test top-1 87.50% top-5  0.25%    1235 img/s   12.3 s"
    )
    assert describe_epoch(record, 164) == expected
    assert describe_epoch(record.to_dict(), 164) == expected  # a row of log.json reads the same


def test_an_epoch_line_widens_for_figures_wider_than_their_column():
    record = _record(164, lr=0.000123456, train_top1_error=100.0, images_per_second=1234567.0, epoch_seconds=1234.56)
    assert describe_epoch(record, 164) == (
        "epoch 164/164  lr 0.000123 train loss 2.3026 err 100.00%  test top-1 87.50% top-5 50.00%"
        "  1234567 img/s  1234.6 s"
    )


def test_an_epoch_line_of_a_row_without_a_skipped_count_has_no_skip_note():
    row = _row(1)
    del row["skipped_images"]
    assert describe_epoch(row, 1).endswith("img/s   12.3 s")
