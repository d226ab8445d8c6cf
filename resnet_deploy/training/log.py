"""Per-epoch training log, as CSV (for spreadsheets and plots) and JSON, rewritten atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from resnet_deploy._io import write_bytes_atomic

COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_top1_error",
    "test_loss",
    "test_top1_error",
    "test_top5_error",
    "images_per_second",
    "epoch_seconds",
    "skipped_images",
)


def write_log(run_dir: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_bytes_atomic(run_dir / "log.csv", buffer.getvalue().encode())
    write_bytes_atomic(run_dir / "log.json", json.dumps(history, indent=1).encode())


def describe_epoch(row: dict[str, Any], epochs: int) -> str:
    from resnet_deploy.data.base import name_files

    line = (
        f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:<7.3g} train loss {row['train_loss']:.4f} "
        f"err {row['train_top1_error']:5.2f}%  test top-1 {row['test_top1_error']:5.2f}% "
        f"top-5 {row['test_top5_error']:5.2f}%  {row['images_per_second']:6.0f} img/s  {row['epoch_seconds']:5.1f} s"
    )
    skipped = row.get("skipped_images")
    if not skipped:
        return line
    paths = row.get("skipped_paths")  # absent from rows logged before the paths were kept
    if not paths:
        return f"{line}  ({skipped} undecodable skipped)"
    return f"{line}  ({skipped} undecodable skipped: {name_files(paths, total=skipped)})"
