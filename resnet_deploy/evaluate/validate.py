"""Top-1/top-5 error of every deployed artifact against a reference, on the same images; or, with no
reference, of each artifact against the labels alone.

The reference (the original PyTorch checkpoint, or any artifact: an ONNX of any precision, a
TensorRT engine) and each artifact see the same labelled images, each normalised with its own
metadata's mean/std, one batch at a time; the table answers "how much accuracy did deployment cost
me?": errors, their delta in percentage points, top-1 agreement with the reference, logit errors and
throughput (measured side by side in this one process). The comparison is paired (same images), so
each top-1 delta comes with what those images can tell: the discordant counts, a 95% interval and a
significance test (:mod:`paired_stats`). On a few hundred images one image is a fraction of a point,
and a bare "+0.28 pp" would hide that. Every delta is against the reference given, whatever it is.

With no reference (``validate(None, artifacts)``) each artifact gets its absolute top-1 and top-5
error with an exact 95% interval (:mod:`binomial`), and nothing is compared.

What was left out is reported, never dropped silently: test images that do not decode (scored by
no one, so the comparison stays fair) and, on a machine without an NVIDIA GPU, TensorRT engines.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet_deploy import runtime
from resnet_deploy._io import write_bytes_atomic
from resnet_deploy.artifacts.frame_input import FrameInput
from resnet_deploy.artifacts.preprocess import Preprocess, model_input
from resnet_deploy.data import Dataset, open_dataset
from resnet_deploy.data.base import name_files
from resnet_deploy.errors import AccuracyGateError, ResnetDeployError, ValidationError
from resnet_deploy.evaluate import binomial
from resnet_deploy.evaluate.binomial import ErrorRate, error_rate
from resnet_deploy.evaluate.paired_stats import GATES, METHOD, PairedChange, change_from_counts, paired_change
from resnet_deploy.runtime import machine
from resnet_deploy.runtime.base import Backend
from resnet_deploy.runtime.images import frames, normalise
from resnet_deploy.runtime.load import ENGINE_SUFFIXES, ONNX_SUFFIXES
from resnet_deploy.runtime.machine import cpu_flags, cpu_name, describe_isa


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
    # The paired top-1 change against the reference on the same images; neutral on the reference's row.
    worse: int = 0  # images the reference classified right and this artifact wrong
    better: int = 0  # the reverse
    delta_top1_low_pp: float = 0.0  # the 95% interval of delta_top1_pp
    delta_top1_high_pp: float = 0.0
    p_value: float = 1.0  # McNemar: how likely a split this uneven is if nothing changed
    significant: bool = False  # the interval excludes 0 (p < 0.05)
    chosen_because: str = ""  # why this runtime ran an ONNX file (backend auto), as measured at load
    # The exact (Clopper-Pearson) 95% interval of each error rate against the labels, in percent.
    top1_error_low: float = 0.0
    top1_error_high: float = 0.0
    top5_error_low: float = 0.0
    top5_error_high: float = 0.0

    def record_change(self, change: PairedChange) -> None:
        """Keep the paired change against the reference (``delta_top1_pp`` stays the error difference)."""
        self.worse, self.better = change.worse, change.better
        self.delta_top1_low_pp, self.delta_top1_high_pp = change.low_pp, change.high_pp
        self.p_value, self.significant = change.p_value, change.significant

    def record_errors(self, top1: ErrorRate, top5: ErrorRate) -> None:
        """Keep the error rates against the labels, with their exact intervals."""
        self.images = top1.images
        self.top1_error, self.top1_error_low, self.top1_error_high = top1.error_pct, top1.low_pct, top1.high_pct
        self.top5_error, self.top5_error_low, self.top5_error_high = top5.error_pct, top5.low_pct, top5.high_pct

    def top1_change(self) -> PairedChange:
        return PairedChange(
            images=self.images,
            worse=self.worse,
            better=self.better,
            delta_pp=self.delta_top1_pp,
            low_pp=self.delta_top1_low_pp,
            high_pp=self.delta_top1_high_pp,
            p_value=self.p_value,
            significant=self.significant,
        )

    def labels_only_dict(self) -> dict[str, Any]:
        """The fields that mean something without a reference: no change, agreement or logit error."""
        return {name: value for name, value in asdict(self).items() if name in _LABELS_ONLY_FIELDS}


_LABELS_ONLY_FIELDS = (
    "artifact",
    "backend",
    "precision",
    "images",
    "top1_error",
    "top1_error_low",
    "top1_error_high",
    "top5_error",
    "top5_error_low",
    "top5_error_high",
    "images_per_second",
    "chosen_because",
)


@dataclass
class SkippedArtifact:
    artifact: str  # the path as given
    reason: str


@dataclass
class ValidationReport:
    """The scores of one run. ``reference`` is the row every change is measured against; None when
    the artifacts were scored against the labels alone (no changes, each error with its exact interval)."""

    dataset: str
    images: int  # scored, by every row alike
    reference: Score | None
    artifacts: list[Score] = field(default_factory=list)
    machine: str = ""
    seconds: float = 0.0
    skipped_images: int = 0  # test images that failed to decode
    skipped_image_paths: list[str] = field(default_factory=list)
    skipped_artifacts: list[SkippedArtifact] = field(default_factory=list)

    @property
    def labels_only(self) -> bool:
        return self.reference is None

    def to_dict(self) -> dict[str, Any]:
        if self.reference is None:
            scored: dict[str, Any] = {
                "labels_only": True,
                "statistics": binomial.METHOD,  # of each artifact's error intervals
                "reference": None,
                "artifacts": [a.labels_only_dict() for a in self.artifacts],
            }
        else:
            scored = {
                "labels_only": False,
                "statistics": METHOD,  # of each artifact's worse/better, interval, p_value and significant
                "error_intervals": binomial.METHOD,  # of every row's top1/top5_error_low and _high
                "reference": asdict(self.reference),
                "artifacts": [asdict(a) for a in self.artifacts],
            }
        return {
            "dataset": self.dataset,
            "images": self.images,
            "machine": self.machine,
            "seconds": round(self.seconds, 2),
            **scored,
            "skipped_images": self.skipped_images,
            "skipped_image_paths": list(self.skipped_image_paths),
            "skipped_artifacts": [asdict(a) for a in self.skipped_artifacts],
        }

    def skipped_images_note(self) -> str | None:
        if not self.skipped_images:
            return None
        plural = self.skipped_images > 1
        named = name_files(self.skipped_image_paths, total=self.skipped_images)
        return (
            f"{self.skipped_images} test image{'s' if plural else ''} did not decode and "
            f"{'were' if plural else 'was'} not scored: {named}"
        )

    def notes(self) -> list[str]:
        """One sentence per thing left out, naming it; empty when everything was scored."""
        images = self.skipped_images_note()
        return ([images] if images else []) + [
            f"not validated: {a.artifact}: {a.reason}" for a in self.skipped_artifacts
        ]

    def rows(self) -> list[Score]:
        """The reference first (when there is one), then the artifacts."""
        return [self.reference, *self.artifacts] if self.reference is not None else list(self.artifacts)

    def table(self, markdown: bool = False, notes: bool = True) -> str:
        """The scores, one row each; under them what the interval means and (``notes``) what was left out.

        Markdown also carries each change's p-value, so that the report holds every JSON field.
        """
        left_out = self.notes() if notes else []
        head, rows = self._head_and_rows(markdown)
        if markdown:
            out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(row) + " |" for row in rows]
            return "\n".join(out + ([""] if left_out else []) + [f"- {n}" for n in left_out])
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]

        def fmt(row: list[str]) -> str:
            cells = zip(row, widths, strict=True)
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(cells))

        legend = self.legend() if self.artifacts else []
        return "\n".join([fmt(head), *(fmt(r) for r in rows), *legend, *(f"note: {n}" for n in left_out)])

    def _head_and_rows(self, markdown: bool) -> tuple[list[str], list[list[str]]]:
        if self.reference is None:
            return _LABELS_HEAD, [_labels_only_cells(s) for s in self.artifacts]
        head = [*_HEAD[:6], "McNemar p", *_HEAD[6:]] if markdown else _HEAD
        return head, [_cells(s, reference=s is self.reference, markdown=markdown) for s in self.rows()]

    def legend(self) -> list[str]:
        """Under the text table: what the intervals, the counts and the star mean (one sentence)."""
        if self.reference is None:
            return [
                f"[95% CI]: the range of true error rates these {self.images} images are compatible with "
                "(exact Clopper-Pearson binomial interval); labels only: no reference, so no changes."
            ]
        return [
            f"Δ top-1 [95% CI]: the change in top-1 error on the same {self.images} images, and the range of true "
            "changes they are compatible with (Tango score interval);",
            "worse/better: images only the reference / only the artifact classified right; "
            "* significant: the interval excludes 0 (McNemar p < 0.05).",
        ]

    def markdown(self) -> str:
        if self.reference is None:
            return self._labels_only_markdown()
        ref = self.reference
        return (
            f"# Validation: {ref.artifact}\n\n"
            f"{self.images} images of `{self.dataset}` (test split), machine: {self.machine}.\n\n"
            f"{self.table(markdown=True)}\n\n"
            f"Δ: percentage points against the reference, {ref.artifact} ({ref.precision}, {ref.backend}; "
            "positive = worse); agreement: share of images whose top-1 class matches the reference's.\n"
            + (self._markdown_statistics() if self.artifacts else "")
        )

    def _markdown_statistics(self) -> str:
        return (
            f"\nStatistics: {METHOD}. The bracket after Δ top-1 is the range of true changes that these "
            f"{self.images} paired images are compatible with; worse/better count the images only the reference, "
            "or only the artifact, classified right; \\* marks a significant change: its interval excludes 0 "
            "(McNemar p < 0.05).\n"
        )

    def _labels_only_markdown(self) -> str:
        names = ", ".join(a.artifact for a in self.artifacts)
        return (
            f"# Validation against the labels: {names}\n\n"
            f"{self.images} images of `{self.dataset}` (test split), machine: {self.machine}.\n\n"
            f"{self.table(markdown=True)}\n\n"
            f"Statistics: {binomial.METHOD}. The bracket after each error is the range of true error rates that "
            f"these {self.images} images are compatible with. No reference: each artifact is scored against the "
            "labels alone, and two rows' intervals are not a test of their difference; for that, validate one "
            "against the other as the reference.\n"
        )


_HEAD = [
    "artifact",
    "backend",
    "precision",
    "top-1 err",
    "Δ top-1 [95% CI]",
    "worse/better",
    "top-5 err",
    "Δ top-5",
    "top-1 agree",
    "max Δlogit",
    "mean Δlogit",
    "img/s",
]
_LABELS_HEAD = ["artifact", "backend", "precision", "top-1 err [95% CI]", "top-5 err [95% CI]", "img/s"]


def _cells(s: Score, *, reference: bool, markdown: bool) -> list[str]:
    """One row of the table; the reference's own comparisons are "-"."""
    blank = "-" if reference else None
    return [
        s.artifact,
        s.backend,
        s.precision,
        f"{s.top1_error:.2f}%",
        blank or _top1_change(s, markdown),
        blank or f"{s.worse}/{s.better}",
        *([blank or f"{s.p_value:.2g}"] if markdown else []),
        f"{s.top5_error:.2f}%",
        blank or f"{s.delta_top5_pp:+.2f} pp",
        blank or f"{100 * s.top1_agreement:.2f}%",
        blank or f"{s.max_abs_logit_error:.3g}",
        blank or f"{s.mean_abs_logit_error:.3g}",
        f"{s.images_per_second:.0f}",
    ]


def _labels_only_cells(s: Score) -> list[str]:
    """One row of the labels-only table: each error with its exact interval, ``2.00% [0.24, 7.04]``."""
    return [
        s.artifact,
        s.backend,
        s.precision,
        f"{s.top1_error:.2f}% [{s.top1_error_low:.2f}, {s.top1_error_high:.2f}]",
        f"{s.top5_error:.2f}% [{s.top5_error_low:.2f}, {s.top5_error_high:.2f}]",
        f"{s.images_per_second:.0f}",
    ]


def _top1_change(s: Score, markdown: bool) -> str:
    """``+0.28 pp [-0.78, +1.56]``, starred when significant (a space keeps the text column aligned)."""
    star = ("\\*" if markdown else "*") if s.significant else ("" if markdown else " ")
    return f"{s.delta_top1_pp:+.2f} pp [{s.delta_top1_low_pp:+.2f}, {s.delta_top1_high_pp:+.2f}]{star}"


def machine_description() -> str:
    python = platform.python_version()
    isa = describe_isa(cpu_flags())  # which CPU kernels ran, and so how INT8 and FP16 round
    cpu = f"{cpu_name()}; {isa}" if isa else cpu_name()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores ({cpu}), Python {python}"


def _topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def _is_engine(path: str | Path) -> bool:
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def open_reference(path: str | Path, stack: ExitStack, backend: str = "auto") -> Backend:
    """Open the reference into ``stack``: any artifact (``backend`` runs an ONNX file). Every change is
    measured against it, so an engine that cannot load here is an error, not a skip."""
    onnx = Path(path).suffix.lower() in ONNX_SUFFIXES
    try:
        return stack.enter_context(runtime.open_backend(path, backend=backend if onnx else "auto"))
    except ResnetDeployError as exc:
        if not _is_engine(path) or not Path(path).is_file():
            raise
        reason = " ".join(str(exc).split())  # one line, whatever TensorRT logged
        why = reason if machine.gpu_present() else f"no NVIDIA GPU here to run TensorRT engines ({reason})"
        raise ValidationError(
            f"the reference {path} cannot run here: {why}; validate where it runs, or pass another `checkpoint`",
            field="checkpoint",
        ) from None


def open_artifacts(
    paths: Sequence[str | Path],
    stack: ExitStack,
    backend: str = "auto",
    *,
    allow_none: bool = False,
    skip_failing_engines: bool = False,
) -> tuple[list[Backend], list[SkippedArtifact]]:
    """Open every artifact into ``stack``: the backends, and the engines skipped. ONNX files run on
    ``backend`` (auto: OpenVINO unless ONNX Runtime is faster here; see ``runtime.onnx_choice``).

    On a machine without an NVIDIA GPU a TensorRT engine can never run, so one that fails to load
    is skipped with the reason and the rest are still scored. With a GPU its load error is a real one
    (and so is any other artifact's), unless ``skip_failing_engines`` (the demo: an engine built ahead of
    time for other GPUs). ``allow_none``: nothing opened is no error (the caller names what was skipped).
    """
    opened: list[Backend] = []
    skipped: list[SkippedArtifact] = []
    no_gpu: bool | None = None  # asked once, and only when there is an engine
    for path in paths:
        is_engine = _is_engine(path) and Path(path).is_file()
        if is_engine and no_gpu is None:
            no_gpu = not machine.gpu_present()
        if not (is_engine and (no_gpu or skip_failing_engines)):
            onnx = Path(path).suffix.lower() in ONNX_SUFFIXES
            opened.append(stack.enter_context(runtime.open_backend(path, backend=backend if onnx else "auto")))
            continue
        try:
            opened.append(stack.enter_context(runtime.open_backend(path)))
        except ResnetDeployError as exc:
            reason = " ".join(str(exc).split())  # one line, whatever TensorRT logged
            why = f"no NVIDIA GPU here to run TensorRT engines ({reason})" if no_gpu else reason
            skipped.append(SkippedArtifact(str(path), why))
    if not opened and skipped and not allow_none:
        every = "; ".join(f"{s.artifact}: {s.reason}" for s in skipped)
        raise ValidationError(
            f"nothing to validate on this machine: {every}; validate engines where they run, or pass ONNX artifacts"
        )
    return opened, skipped


def validate(
    reference: Backend | None,
    artifacts: list[Backend],
    *,
    data: str | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    skipped_artifacts: Sequence[SkippedArtifact] = (),
) -> ValidationReport:
    """Score ``reference`` and every artifact on the same test images; ``skipped_artifacts`` (from
    :func:`open_artifacts`) are listed in the report.

    ``reference`` None: no reference, each artifact is scored against the labels alone (its top-1 and
    top-5 error with exact 95% intervals, no changes). The images are then those of ``data``, else of
    the dataset the artifacts record, fitted as the first artifact's metadata says.
    """
    lead = _lead(reference, artifacts)
    spec = _dataset_spec(lead, data) if reference else _labels_only_dataset_spec(artifacts, data)
    for art in artifacts:
        if art is not lead:
            _check_comparable(art, lead, paired=reference is not None)
    dataset = _open_test_data(spec, lead)
    start = time.perf_counter()
    tallies = [_Tally(backend) for backend in [*([reference] if reference else []), *artifacts]]
    images = _score_test_split(dataset, tallies, batch_size=batch_size, limit=limit, paired=reference is not None)
    if images.count == 0:
        unreadable = f" (none decoded: {name_files(images.undecodable)})" if images.undecodable else ""
        raise ValidationError(f"{spec} has no test images to validate on{unreadable}")
    scores = [tally.score(images.count) for tally in tallies]
    if reference is not None:
        _record_changes(tallies, scores)
    return ValidationReport(
        dataset=dataset.spec,
        images=images.count,
        reference=scores[0] if reference else None,
        artifacts=scores[1:] if reference else scores,
        machine=machine_description(),
        seconds=time.perf_counter() - start,
        skipped_images=images.skipped,
        skipped_image_paths=images.undecodable,
        skipped_artifacts=list(skipped_artifacts),
    )


def _lead(reference: Backend | None, artifacts: list[Backend]) -> Backend:
    """The backend whose metadata says how the images are fitted: the reference, else the first artifact."""
    if reference is not None:
        return reference
    if not artifacts:
        raise ValidationError(
            "with no reference there is nothing to score: name at least one artifact in `artifacts`",
            field="artifacts",
        )
    return artifacts[0]


def _record_changes(tallies: list[_Tally], scores: list[Score]) -> None:
    """Each artifact's change against the reference (the first tally and score), on the same images."""
    reference_hits = tallies[0].top1_hits()
    for tally, s in zip(tallies[1:], scores[1:], strict=True):
        s.delta_top1_pp = s.top1_error - scores[0].top1_error
        s.delta_top5_pp = s.top5_error - scores[0].top5_error
        s.record_change(paired_change(reference_hits, tally.top1_hits()))


def _dataset_spec(reference: Backend, data: str | None) -> str:
    """The labelled images to score on: ``data``, else the dataset the reference was trained on."""
    spec = data or reference.metadata.dataset
    if spec is None:
        raise ValidationError(
            f"{reference.path} records no dataset (random or foreign weights); pass `data=SPEC` with labelled images",
            field="data",
        )
    return spec


def _labels_only_dataset_spec(artifacts: list[Backend], data: str | None) -> str:
    """The labelled images to score on with no reference: ``data``, else the one dataset the artifacts record."""
    if data:
        return data
    recorded = list(dict.fromkeys(a.metadata.dataset for a in artifacts if a.metadata.dataset))
    if not recorded:
        names = ", ".join(a.path.name for a in artifacts)
        raise ValidationError(
            f"no reference and no dataset: {names} record{'s' if len(artifacts) == 1 else ''} none (random or "
            "foreign weights); pass `data=SPEC` with labelled images",
            field="data",
        )
    if len(recorded) > 1:
        raise ValidationError(
            f"the artifacts record different datasets ({', '.join(recorded)}); pass `data=SPEC` to score them "
            "all on one",
            field="data",
        )
    return recorded[0]


def _check_comparable(art: Backend, lead: Backend, *, paired: bool) -> None:
    """Refuse an artifact that the lead's images cannot score alike (another class count, input size or,
    with no reference, preprocessing); with a reference, also one that is not a deployed form of it."""
    cfg, lead_cfg = art.metadata.config, lead.metadata.config
    other = "the reference" if paired else lead.path.name
    if cfg.num_classes != lead_cfg.num_classes:
        raise ValidationError(
            f"{art.path} has {cfg.num_classes} classes but {other} has {lead_cfg.num_classes}; "
            + ("it was exported from another model" if paired else "score models of one class count together")
        )
    if cfg.input_size != lead_cfg.input_size:
        raise ValidationError(
            f"{art.path} takes {cfg.input_size}x{cfg.input_size} inputs but {other} takes "
            f"{lead_cfg.input_size}x{lead_cfg.input_size}; validate artifacts of one input size together"
        )
    if paired:
        _check_same_checkpoint(art, lead)
    elif art.metadata.eval_preprocess != lead.metadata.eval_preprocess:
        raise ValidationError(
            f"{art.path} fits its images otherwise than {other} ({_fitting(art)} vs {_fitting(lead)}); "
            "score them in separate runs"
        )


def _fitting(backend: Backend) -> str:
    """How a model's images are fitted to its input: ``crop 0.875 bilinear``, ``stretch bilinear``."""
    p = backend.metadata.eval_preprocess
    return f"{p.resize} {p.crop_pct:g} {p.interpolation}" if p.resize == "crop" else f"{p.resize} {p.interpolation}"


def _check_same_checkpoint(art: Backend, reference: Backend) -> None:
    if art.metadata.checkpoint_sha256 and reference.metadata.checkpoint_sha256 not in (
        None,
        art.metadata.checkpoint_sha256,
    ):
        raise ValidationError(
            f"{art.path} was exported from another checkpoint (sha256 {art.metadata.checkpoint_sha256[:12]}... "
            f"vs {reference.metadata.checkpoint_sha256[:12]}...); pass the checkpoint it came from"
        )


def _open_test_data(spec: str, lead: Backend) -> Dataset:
    dataset = open_dataset(spec)
    num_classes = lead.metadata.config.num_classes
    if dataset.num_classes != num_classes:
        raise ValidationError(
            f"{spec} has {dataset.num_classes} classes but the model has {num_classes}; pass the right `data`",
            field="data",
        )
    return dataset


@dataclass
class _TestImages:
    """What a pass over the test split saw: images scored, and images that did not decode."""

    count: int = 0
    skipped: int = 0
    undecodable: list[str] = field(default_factory=list)


@dataclass
class _Tally:
    """One backend's running results over the test images, against the labels and (when there is one)
    the reference's logits."""

    backend: Backend
    seconds: float = 0.0  # in inference alone
    top1: list[np.ndarray] = field(default_factory=list)  # per batch: hit or not, per image
    top5: list[np.ndarray] = field(default_factory=list)
    agree: list[np.ndarray] = field(default_factory=list)  # top-1 class equals the reference's
    max_err: float = 0.0
    abs_sum: float = 0.0  # of the mean |logit error| of each batch, times its images

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits of ``images`` (in [0, 1]), normalised as this backend's metadata says, or of uint8 RGB frames
        (when a model takes frames): as they are, or preprocessed as the runner does; only inference is timed."""
        metadata = self.backend.metadata
        if images.dtype != np.uint8:
            x = normalise(images, metadata)
        elif metadata.frame_input is not None:
            x = frames(list(images), metadata.frame_input)  # RGB frames, in the graph's channel order
        else:
            cfg = metadata.config
            x = model_input(images, cfg.input_size, metadata.eval_preprocess, metadata.mean, metadata.std)
        t = time.perf_counter()
        logits = self.backend.infer(x)
        self.seconds += time.perf_counter() - t
        return logits

    def add(self, logits: np.ndarray, labels: np.ndarray, ref_logits: np.ndarray | None) -> None:
        self.top1.append(_topk_hits(logits, labels, 1))
        self.top5.append(_topk_hits(logits, labels, 5))
        if ref_logits is None:  # no reference: nothing to agree with
            return
        self.agree.append(logits.argmax(1) == ref_logits.argmax(1))
        diff = np.abs(logits - ref_logits)
        self.max_err = max(self.max_err, float(diff.max()))
        self.abs_sum += float(diff.mean()) * len(labels)

    def top1_hits(self) -> np.ndarray:
        """Right or not, per image, in the order scored: the pairing with the reference."""
        return np.concatenate(self.top1)

    def score(self, count: int) -> Score:
        score = Score(
            artifact=self.backend.path.name,
            backend=self.backend.kind,
            chosen_because=self.backend.chosen_because,
            precision=self.backend.precision,
            top1_agreement=float(np.concatenate(self.agree).mean()) if self.agree else 1.0,
            max_abs_logit_error=self.max_err,
            mean_abs_logit_error=self.abs_sum / count,
            images_per_second=count / self.seconds if self.seconds > 0 else 0.0,
        )
        top1_errors = count - int(np.count_nonzero(self.top1_hits()))
        top5_errors = count - int(np.count_nonzero(np.concatenate(self.top5)))
        score.record_errors(error_rate(top1_errors, count), error_rate(top5_errors, count))
        return score


def _score_test_split(
    dataset: Dataset, tallies: list[_Tally], *, batch_size: int, limit: int | None, paired: bool
) -> _TestImages:
    """Run every backend on each test batch, fitted as the first tally's metadata records (the
    reference's when ``paired``)."""
    lead = tallies[0].backend
    frame = _frame_input(tallies)
    size, policy = lead.metadata.config.input_size, lead.metadata.eval_preprocess
    if frame is not None:  # every model sees the same frames; those that take none preprocess them as the runner
        size, policy = dataset.native_size or max(frame.width, frame.height), Preprocess("crop", crop_pct=1.0)
    seen = _TestImages()
    for batch in dataset.test.batches(batch_size, size=size, limit=limit, preprocess=policy):
        seen.skipped += batch.skipped
        seen.undecodable.extend(batch.skipped_paths)
        if not len(batch.labels):  # no image of this batch decoded
            continue
        labels = np.asarray(batch.labels)
        images = np.asarray(batch.images)
        _score_batch(tallies, images if frame is None else frames_from(images, frame), labels, paired=paired)
        seen.count += len(labels)
    return seen


def _frame_input(tallies: list[_Tally]) -> FrameInput | None:
    """The frame size of the models that take frames (one for all), or None when none does; their channel orders
    and data types may differ (each model's runner puts the same RGB uint8 frames in its own)."""
    frames = [f for t in tallies if (f := t.backend.metadata.frame_input) is not None]
    sizes = {(f.width, f.height) for f in frames}
    if len(sizes) > 1:
        shown = " and ".join(sorted(f"{w}x{h}" for w, h in sizes))
        raise ValidationError(f"the models take frames of different sizes ({shown}); validate them in separate runs")
    return frames[0] if frames else None


def frames_from(images: np.ndarray, frame: FrameInput) -> np.ndarray:
    """Test images ((N, 3, s, s) in [0, 1]) as RGB uint8 frames of ``frame``'s size: as they are when they are
    that size, else scaled to cover it and centre-cropped (Pillow, bilinear)."""
    from PIL import Image

    pixels = np.rint(images.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    if pixels.shape[1:3] == (frame.height, frame.width):
        return pixels
    out = np.empty((len(pixels), *frame.shape), np.uint8)
    for i, image in enumerate(pixels):
        h, w = image.shape[:2]
        scale = max(frame.width / w, frame.height / h)
        cover = (max(frame.width, round(w * scale)), max(frame.height, round(h * scale)))
        resized = Image.fromarray(image).resize(cover, Image.Resampling.BILINEAR)
        left, top = (cover[0] - frame.width) // 2, (cover[1] - frame.height) // 2
        out[i] = np.asarray(resized.crop((left, top, left + frame.width, top + frame.height)))
    return out


def _score_batch(tallies: list[_Tally], images: np.ndarray, labels: np.ndarray, *, paired: bool) -> None:
    """When ``paired``, the reference (the first tally) first: every other backend is compared with its
    logits; otherwise each against the labels alone."""
    if not paired:
        for tally in tallies:
            tally.add(tally.infer(images), labels, None)
        return
    reference, *others = tallies
    ref_logits = reference.infer(images)
    reference.add(ref_logits, labels, ref_logits)
    for tally in others:
        tally.add(tally.infer(images), labels, ref_logits)


def check_gate(report: ValidationReport, max_top1_drop: float | None, gate: str = "estimate") -> None:
    """Fail when an artifact's top-1 error rose more than ``max_top1_drop`` pp, or was not scored.

    ``gate`` says what is compared with the budget: the point estimate (``"estimate"``), or the upper
    bound of its 95% interval (``"upper-bound"``: passes only what the images show is within budget).
    A report scored against the labels alone has no changes to gate.
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; choose one of {', '.join(GATES)}")
    if max_top1_drop is None:
        return
    if report.reference is None:
        raise ValidationError(
            "`max_top1_drop` gates each artifact's change against a reference, and this report was scored "
            "against the labels alone: validate against a reference to gate",
            field="max_top1_drop",
        )
    gated = [(s.artifact, s.top1_change().gated_pp(gate)) for s in report.artifacts]  # names may repeat
    bad = [(name, value) for name, value in gated if value > max_top1_drop]
    if bad:
        worst = ", ".join(f"{name} {value:+.2f} pp" for name, value in bad)
        raise AccuracyGateError(
            f"top-1 error rose more than {max_top1_drop:g} pp ({_GATE_NAMES[gate]}): {worst}"
            + (_too_few_images(report.images, max_top1_drop) if gate == "upper-bound" else "")
        )
    if report.skipped_artifacts:  # a gate passes only what it scored: an unscored artifact is not vouched for
        names = ", ".join(a.artifact for a in report.skipped_artifacts)
        raise AccuracyGateError(
            f"the gate cannot pass {names}: not validated here ({report.skipped_artifacts[0].reason}); "
            "validate it on a machine that runs it, or leave it out of this gate"
        )


_GATE_NAMES = {"estimate": "point estimate", "upper-bound": "upper bound of the 95% interval"}


def _too_few_images(images: int, max_top1_drop: float) -> str:
    """Why an upper-bound gate can never pass on this many images: even no discordant image leaves
    an upper bound of about 3.84 / images."""
    tightest = change_from_counts(images, 0, 0).high_pp
    if tightest <= max_top1_drop:
        return ""
    return (
        f"; {images} images cannot bound a change below {tightest:.2f} pp even when every image agrees: "
        "validate on more images, or gate on the estimate"
    )


def write_report(report: ValidationReport, path: str | Path, mark: str = "") -> Path:
    """The Markdown report; ``mark`` (last line) records which command wrote it from which inputs."""
    return write_bytes_atomic(path, (report.markdown().rstrip("\n") + (f"\n\n{mark}" if mark else "") + "\n").encode())
