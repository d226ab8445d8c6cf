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
