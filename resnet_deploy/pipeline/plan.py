"""A command's work as data: a Job is planned into a few typed steps, checked, then run exactly.

``plan(job)`` turns a Job (what the user asks for, with the library's defaults) into a :class:`Plan`:
the steps, each naming what it reads, what it writes and why. Every path the steps write is checked
once, before any work (:class:`~resnet_deploy.files.output_plan.OutputPlan`: never over an input, a
companion or a file the command did not make from these inputs). ``run(plan)`` then runs exactly
those steps and returns the Job's typed result; running never derives a path again.

A file one step writes and a later one reads (an export calibrated, an INT8 twin built) is an
output of the first and no input of the plan.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from resnet_deploy.artifacts.naming import companion
from resnet_deploy.files.output_plan import OutputPlan
from resnet_deploy.messages import SILENT, Messages

R = TypeVar("R")
Ours = Callable[[Path], bool]


@dataclass(frozen=True)
class Input:
    path: Path
    what: str  # named in every refusal: "checkpoint", "input ONNX"


@dataclass(frozen=True)
class Output:
    path: Path
    what: str  # named in every refusal: "engine", "INT8 ONNX", "report"
    ours: Ours | None = field(default=None, compare=False)  # True: an existing file there is ours to replace
    existing_ok: bool = False  # a shared cache, or a file updated in place (a timing cache)
    with_companion: bool = True  # an engine's sidecar, a checkpoint's metadata travel with it
    makes_parent: bool = False  # the step makes its directory (a run directory, the demo's)
    field: str = "output"  # the parameter that names it, for the messages (`report`, `plot`)


def inputs(*pairs: tuple[str | os.PathLike[str] | None, str]) -> tuple[Input, ...]:
    """``inputs((checkpoint, "checkpoint"), ...)``; a None path is left out."""
    return tuple(Input(Path(path), what) for path, what in pairs if path is not None)


class Step(ABC):
    """One piece of a command's work. Subclasses are frozen dataclasses holding everything it needs."""

    @property
    @abstractmethod
    def title(self) -> str:
        """What the step does, in a few words: "export resnet20 to r20.onnx, verified against PyTorch"."""

    def inputs(self) -> tuple[Input, ...]:
        return ()

    def outputs(self) -> tuple[Output, ...]:
        return ()

    @abstractmethod
    def run(self, out: Messages, earlier: Sequence[Any]) -> Any:
        """Do the work; ``earlier`` holds the results of the steps before this one, in order."""


@dataclass(frozen=True)
class Plan(Generic[R]):
    """The checked steps of one command, and how their results make the Job's result."""

    command: str  # "export", "build-engine": named in refusals (`resnet-deploy export`'s ONNX export)
    steps: tuple[Step, ...]
    finish: Callable[[list[Any]], R] = field(repr=False, compare=False)
    replacing: tuple[str, ...] = ()  # outputs of ours from the same inputs, replaced (said before the work)
    headings: dict[int, str] = field(default_factory=dict)  # a line said before step i (the demo's "== 3. ...")

    def outputs(self) -> list[Path]:
        """Every file the steps write, the companions that travel with them included (an engine's sidecar)."""
        return [path for step in self.steps for o in step.outputs() for path, _ in _written(o)]

    def describe(self) -> list[str]:
        """The plan in words, one line per step, then what each reads and writes."""
        lines = []
        for number, step in enumerate(self.steps, 1):
            if number - 1 in self.headings:
                lines.append(self.headings[number - 1])
            lines.append(f"{number}. {step.title}")
            lines += [f"     reads  {i.path}  ({i.what})" for i in step.inputs()]
            lines += [f"     writes {path}  ({what})" for o in step.outputs() for path, what in _written(o)]
        return lines + list(self.replacing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "steps": [
                {
                    "step": type(step).__name__,
                    "title": step.title,
                    "reads": [{"path": str(i.path), "what": i.what} for i in step.inputs()],
                    "writes": [{"path": str(p), "what": what} for o in step.outputs() for p, what in _written(o)],
                }
                for step in self.steps
            ],
            "replacing": list(self.replacing),
        }


def checked(
    command: str,
    steps: Iterable[Step],
    finish: Callable[[list[Any]], R],
    *,
    overwrite: bool = False,
    headings: dict[int, str] | None = None,
    output_field: str | None = None,
) -> Plan[R]:
    """The plan of ``steps``, every path they write checked now (OutputPathError, one line, on the first problem).
    ``output_field``: the parameter every output is named by in refusals (the demo's `directory`)."""
    steps = tuple(steps)
    check = OutputPlan(command, overwrite=overwrite)
    written: set[Path] = set()
    made: set[Path] = set()  # directories an earlier step makes: what later steps write there is checked above them
    for step in steps:
        for read in step.inputs():
            if _real(read.path) not in written:  # an earlier step's output is no input
                check.read(read.path, read.what)
        for write in step.outputs():
            makes_parent = write.makes_parent or _real(write.path.parent) in made
            check.write(
                write.path,
                write.what,
                ours=write.ours,
                existing_ok=write.existing_ok,
                with_companion=write.with_companion,
                makes_parent=makes_parent,
                field=output_field or write.field,
            )
            written.add(_real(write.path))
            if makes_parent:
                made.update(_real(d) for d in write.path.parents if not d.exists())
    check.check()
    return Plan(command, steps, finish, tuple(check.notes()), dict(headings or {}))


def _written(output: Output) -> list[tuple[Path, str]]:
    """An output and its companion (``r20.engine`` -> ``r20.engine.json``, the engine's sidecar)."""
    extra = companion(output.path) if output.with_companion else None
    return [(output.path, output.what), *([(extra[0], f"{output.what}'s {extra[1]}")] if extra else [])]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def run(plan: Plan[R], out: Messages = SILENT) -> R:
    """Run exactly the planned steps, in order; the Job's typed result."""
    for note in plan.replacing:
        out.say(note)
    results: list[Any] = []
    for index, step in enumerate(plan.steps):
        if index in plan.headings:
            out.say(plan.headings[index])
        results.append(step.run(out, results))
    return plan.finish(results)


def last(results: list[Any]) -> Any:
    """The most common ``finish``: the last step's result is the Job's."""
    return results[-1]


def first(results: list[Any]) -> Any:
    """The ``finish`` of a Job whose later steps only act on the first one's result (a gate, a chart)."""
    return results[0]
