"""Reports and charts a command writes beside its table: marked with the inputs they came from, so a
rerun on the same inputs replaces its own report and nothing else (the ritual validate, sensitivity
and bench share)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnet_deploy.files.provenance import inputs_digest, png_of, report_mark, report_of
from resnet_deploy.pipeline.job import output_path
from resnet_deploy.pipeline.plan import Ours, Output

MARKDOWN = (".md", ".markdown")


@dataclass(frozen=True)
class MarkedFile:
    """Where a report goes, the mark its last line (or a PNG's text chunk) carries, and the test of "ours"."""

    path: Path
    mark: str
    ours: Ours

    field: str = "report"

    def output(self, what: str) -> Output:
        return Output(self.path, what, ours=self.ours, field=self.field)


def marked_report(
    command: str,
    path: str | Path | None,
    sources: list[str | Path],
    settings: str,
    *,
    suffixes: tuple[str, ...] = MARKDOWN,
    field: str = "report",
) -> MarkedFile | None:
    """The report of ``command`` from ``sources`` and ``settings`` (the options that change it); None without a path."""
    if path is None:
        return None
    checked = output_path(
        path, suffixes, "the report is Markdown" if suffixes != (".png",) else "the chart is a PNG", field=field
    )
    assert checked is not None
    digest = inputs_digest(sources, extra=settings)
    ours = png_of(command, digest) if suffixes == (".png",) else report_of(command, digest)
    return MarkedFile(checked, report_mark(command, digest), ours, field)
