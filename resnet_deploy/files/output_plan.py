"""Every path a command will write, planned and checked before any work.

A command names what it reads and everything it will write (outputs, twins, sidecars, reports),
then calls :meth:`OutputPlan.check` once, before an export, a calibration or a build. The plan
refuses, in one line each:

- an output that is one of the inputs (also through a symlink or a hard link) or an input's
  companion (a checkpoint's ``.json``, an engine's sidecar);
- two outputs at one path (``-o r20.onnx`` for an engine whose FP16 twin is ``r20.onnx``);
- a directory where a file goes, a missing or read-only directory;
- an existing file, unless ``--overwrite`` or the file is this command's own output from the same
  inputs (its metadata says so: see :mod:`resnet_deploy.files.provenance`), which is then replaced.

Shared, content-addressed caches (the calibration cache) and files a command updates in place
(``--timing-cache``) are declared as such: they may exist, but still never be an input or another
output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resnet_deploy._io import check_creatable, check_writable
from resnet_deploy.artifacts.naming import companion
from resnet_deploy.errors import OutputPathError


@dataclass(frozen=True)
class Planned:
    path: Path
    what: str  # "engine", "FP16 twin", "report": named in every refusal
    ours: Callable[[Path], bool] | None = None  # True: the existing file is our output from the same inputs
    existing_ok: bool = False  # a shared cache or a file updated in place
    makes_parent: bool = False  # its directory is made by the work (a run directory): its nearest ancestor is checked
    field: str = "output"  # the parameter that names it, for the messages


def _exists_beside(main: Path) -> Callable[[Path], bool]:
    return lambda _companion: main.exists()


def _key(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    if _key(a) == _key(b):
        return True
    try:  # hard links, bind mounts, case-insensitive file systems
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class OutputPlan:
    """``plan.read(...)``, ``plan.write(...)``, then ``plan.check()`` before any work."""

    command: str
    overwrite: bool = False
    inputs: list[tuple[Path, str]] = field(default_factory=list)
    outputs: list[Planned] = field(default_factory=list)
    replacing: list[Planned] = field(default_factory=list)  # existing files of ours, replaced (for the log)

    def read(self, path: str | os.PathLike[str] | None, what: str) -> None:
        if path is None:
            return
        path = Path(path)
        self.inputs.append((path, what))
        extra = companion(path)
        if extra is not None:
            self.inputs.append((extra[0], f"{what}'s {extra[1]}"))

    def write(
        self,
        path: str | os.PathLike[str],
        what: str,
        *,
        ours: Callable[[Path], bool] | None = None,
        existing_ok: bool = False,
        with_companion: bool = True,
        makes_parent: bool = False,
        field: str = "output",
    ) -> Path:
        """Plan ``path`` (and its companion: an engine's sidecar, a checkpoint's metadata)."""
        path = Path(path)
        self.outputs.append(Planned(path, what, ours, existing_ok, makes_parent, field))
        extra = companion(path) if with_companion else None
        if extra is not None:
            # The companion follows its file's verdict; one without its file is refused like any other.
            self.outputs.append(
                Planned(extra[0], f"{what}'s {extra[1]}", _exists_beside(path), makes_parent=makes_parent, field=field)
            )
        return path

    def check(self) -> None:
        """Refuse the plan (OutputPathError, one line) before anything is written."""
        for index, out in enumerate(self.outputs):
            for path, what in self.inputs:
                if _same_file(out.path, path):
                    same = "" if str(out.path) == str(path) else f" ({out.path} and {path} are one file)"
                    raise OutputPathError(
                        f"the {out.what} would be written over the {what} {path}{same}, destroying it; "
                        f"choose another output path (`{out.field}`)",
                        field=out.field,
                    )
            for other in self.outputs[:index]:
                if _key(other.path) == _key(out.path):
                    raise OutputPathError(
                        f"the {other.what} and the {out.what} would both be written to {out.path}; "
                        f"choose another output path (`{out.field}`)",
                        field=out.field,
                    )
        for out in self.outputs:
            if out.makes_parent:
                check_creatable(out.path, out.field)
            else:
                check_writable(out.path, out.field)
            if out.existing_ok or not (out.path.exists() or out.path.is_symlink()):
                continue
            if out.ours is not None and out.ours(out.path):
                self.replacing.append(out)
            elif not self.overwrite:
                raise OutputPathError(
                    f"{out.path} exists and is not `resnet-deploy {self.command}`'s {out.what} from these inputs; "
                    f"pass `overwrite=True` to replace it, or choose another output path (`{out.field}`)",
                    field=out.field,
                )

    def notes(self) -> list[str]:
        """One line per existing file of ours that will be replaced (never silently)."""
        return [f"replacing {p.path}: this command's {p.what} from the same inputs" for p in self.replacing]
