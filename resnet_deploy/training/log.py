"""Per-epoch training log, as CSV (for spreadsheets and plots) and JSON, rewritten atomically."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import write_bytes_atomic
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.naming import LOG_FILES
from resnet_deploy.artifacts.train_state import FIGURES, EpochRecord

if TYPE_CHECKING:  # seen by mypy and import-linter
    from resnet_deploy.data import base
else:  # it imports torch: `resnet-deploy --help` imports this module
    base = lazy_module("resnet_deploy.data.base")

COLUMNS = ("epoch", *FIGURES, "skipped_images", "processes")  # log.csv, in this order


def write_log(run_dir: Path, history: Sequence[EpochRecord]) -> None:
    rows = [record.to_dict() for record in history]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    csv_file, json_file = LOG_FILES
    write_bytes_atomic(run_dir / csv_file, buffer.getvalue().encode())
    write_bytes_atomic(run_dir / json_file, json.dumps(rows, indent=1).encode())


def describe_epoch(row: EpochRecord | Mapping[str, Any], epochs: int) -> str:
    """One line per epoch; ``row`` may also be a row of ``log.json`` (of this release or an older one)."""
    record = row if isinstance(row, EpochRecord) else EpochRecord.from_dict(row)
    line = (
        f"epoch {record.epoch:>3}/{epochs}  lr {record.lr:<7.3g} train loss {record.train_loss:.4f} "
        f"err {record.train_top1_error:5.2f}%  test top-1 {record.test_top1_error:5.2f}% "
        f"top-5 {record.test_top5_error:5.2f}%  {record.images_per_second:6.0f} img/s  "
        f"{record.epoch_seconds:5.1f} s"
    )
    skipped = record.skipped_images
    if not skipped:
        return line
    if not record.skipped_paths:  # rows logged before the paths were kept
        return f"{line}  ({skipped} undecodable skipped)"
    return f"{line}  ({skipped} undecodable skipped: {base.name_files(record.skipped_paths, total=skipped)})"
