"""Top-1/top-5 error of every deployed artifact against the original model, on the same images.

The reference (a PyTorch checkpoint) and each artifact see the same labelled images, each
normalised with its own metadata's mean/std, one batch at a time; the table answers "how much
accuracy did deployment cost me?": errors, their delta in percentage points, top-1 agreement
with the original, logit errors and throughput (measured side by side in this one process).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.machine import cpu_name
from resnet_deploy.runtime.base import Backend
from resnet_deploy.runtime.preprocess import normalise


class AccuracyGateError(ResnetDeployError):
    """An artifact lost more top-1 accuracy than --max-top1-drop allows."""

    exit_code = 4


@dataclass
class Score:
    artifact: str
    backend: str
    precision: str
    images: int = 0
    top1_error: float = 0.0
    top5_error: float = 0.0
    delta_top1_pp: float = 0.0
    delta_top5_pp: float = 0.0
    top1_agreement: float = 1.0
    max_abs_logit_error: float = 0.0
    mean_abs_logit_error: float = 0.0
    images_per_second: float = 0.0


@dataclass
class ValidationReport:
    dataset: str
    images: int
    reference: Score
    artifacts: list[Score] = field(default_factory=list)
    machine: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "images": self.images,
            "machine": self.machine,
            "seconds": round(self.seconds, 2),
            "reference": asdict(self.reference),
            "artifacts": [asdict(a) for a in self.artifacts],
        }

    def rows(self) -> list[Score]:
        return [self.reference, *self.artifacts]

    def table(self, markdown: bool = False) -> str:
        head = [
            "artifact",
            "backend",
            "precision",
            "top-1 err",
            "top-5 err",
            "Δ top-1",
            "Δ top-5",
            "top-1 agree",
            "max Δlogit",
            "mean Δlogit",
            "img/s",
        ]
        lines = []
        for s in self.rows():
            ref = s is self.reference
            lines.append(
                [
                    s.artifact,
                    s.backend,
                    s.precision,
                    f"{s.top1_error:.2f}%",
                    f"{s.top5_error:.2f}%",
                    "-" if ref else f"{s.delta_top1_pp:+.2f} pp",
                    "-" if ref else f"{s.delta_top5_pp:+.2f} pp",
                    "-" if ref else f"{100 * s.top1_agreement:.2f}%",
                    "-" if ref else f"{s.max_abs_logit_error:.3g}",
                    "-" if ref else f"{s.mean_abs_logit_error:.3g}",
                    f"{s.images_per_second:.0f}",
                ]
            )
        if markdown:
            out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(row) + " |" for row in lines]
            return "\n".join(out)
        widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]

        def fmt(row: list[str]) -> str:
            cells = zip(row, widths, strict=True)
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(cells))

        return "\n".join([fmt(head), *(fmt(r) for r in lines)])

    def markdown(self) -> str:
        return (
            f"# Validation: {self.reference.artifact}\n\n"
            f"{self.images} images of `{self.dataset}` (test split), machine: {self.machine}.\n\n"
            f"{self.table(markdown=True)}\n\n"
            "Δ: percentage points against the original PyTorch model (positive = worse); "
            "agreement: share of images whose top-1 class matches the original's.\n"
        )


def machine_description() -> str:
    import os

    python = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores ({cpu_name()}), Python {python}"


def _topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def validate(
    reference: Backend,
    artifacts: list[Backend],
    *,
    data: str | None = None,
    limit: int | None = None,
    batch_size: int = 64,
) -> ValidationReport:
    from resnet_deploy.data import open_dataset

    spec = data or reference.metadata.dataset
    if spec is None:
        raise ResnetDeployError(
            f"{reference.path} records no dataset (random or foreign weights); pass --data SPEC with labelled images"
        )
    ref_cfg = reference.metadata.config
    for art in artifacts:
        cfg = art.metadata.config
        if cfg.num_classes != ref_cfg.num_classes:
            raise ResnetDeployError(
                f"{art.path} has {cfg.num_classes} classes but the reference has {ref_cfg.num_classes}; "
                "it was exported from another model"
            )
        if cfg.input_size != ref_cfg.input_size:
            raise ResnetDeployError(
                f"{art.path} takes {cfg.input_size}x{cfg.input_size} inputs but the reference takes "
                f"{ref_cfg.input_size}x{ref_cfg.input_size}; validate artifacts of one input size together"
            )
        if art.metadata.checkpoint_sha256 and reference.metadata.checkpoint_sha256 not in (
            None,
            art.metadata.checkpoint_sha256,
        ):
            raise ResnetDeployError(
                f"{art.path} was exported from another checkpoint (sha256 {art.metadata.checkpoint_sha256[:12]}... "
                f"vs {reference.metadata.checkpoint_sha256[:12]}...); pass the checkpoint it came from"
            )
    dataset = open_dataset(spec)
    if dataset.num_classes != ref_cfg.num_classes:
        raise ResnetDeployError(
            f"{spec} has {dataset.num_classes} classes but the model has {ref_cfg.num_classes}; pass the right --data"
        )
    start = time.perf_counter()
    everyone = [reference, *artifacts]
    seconds = [0.0] * len(everyone)
    top1 = [[] for _ in everyone]  # type: list[list[np.ndarray]]
    top5 = [[] for _ in everyone]  # type: list[list[np.ndarray]]
    agree = [[] for _ in everyone]  # type: list[list[np.ndarray]]
    max_err = [0.0] * len(everyone)
    abs_sum = [0.0] * len(everyone)
    count = 0
    for batch in dataset.test.batches(batch_size, size=ref_cfg.input_size, limit=limit):
        images = batch.images.numpy()
        labels = batch.labels.numpy()
        ref_logits = None
        for i, backend in enumerate(everyone):
            x = normalise(images, backend.metadata)
            t = time.perf_counter()
            logits = backend.infer(x)
            seconds[i] += time.perf_counter() - t
            if ref_logits is None:
                ref_logits = logits
            top1[i].append(_topk_hits(logits, labels, 1))
            top5[i].append(_topk_hits(logits, labels, 5))
            agree[i].append(logits.argmax(1) == ref_logits.argmax(1))
            diff = np.abs(logits - ref_logits)
            max_err[i] = max(max_err[i], float(diff.max()))
            abs_sum[i] += float(diff.mean()) * len(labels)
        count += len(labels)
    if count == 0:
        raise ResnetDeployError(f"{spec} has no test images to validate on")
    scores = []
    for i, backend in enumerate(everyone):
        scores.append(
            Score(
                artifact=backend.path.name,
                backend=backend.kind,
                precision=backend.precision,
                images=count,
                top1_error=100 * (1 - float(np.concatenate(top1[i]).mean())),
                top5_error=100 * (1 - float(np.concatenate(top5[i]).mean())),
                top1_agreement=float(np.concatenate(agree[i]).mean()),
                max_abs_logit_error=max_err[i],
                mean_abs_logit_error=abs_sum[i] / count,
                images_per_second=count / seconds[i] if seconds[i] > 0 else 0.0,
            )
        )
    for s in scores[1:]:
        s.delta_top1_pp = s.top1_error - scores[0].top1_error
        s.delta_top5_pp = s.top5_error - scores[0].top5_error
    return ValidationReport(
        dataset=dataset.spec,
        images=count,
        reference=scores[0],
        artifacts=scores[1:],
        machine=machine_description(),
        seconds=time.perf_counter() - start,
    )


def check_gate(report: ValidationReport, max_top1_drop: float | None) -> None:
    if max_top1_drop is None:
        return
    bad = [s for s in report.artifacts if s.delta_top1_pp > max_top1_drop]
    if bad:
        worst = ", ".join(f"{s.artifact} {s.delta_top1_pp:+.2f} pp" for s in bad)
        raise AccuracyGateError(f"top-1 error rose more than {max_top1_drop:g} pp: {worst}")


def write_report(report: ValidationReport, path: str | Path) -> Path:
    from resnet_deploy._io import write_bytes_atomic

    return write_bytes_atomic(path, report.markdown().encode())
