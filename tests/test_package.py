"""The package's shape, checked: the stages as packages, short commands, and a library that speaks in its
own parameters (the CLI alone knows flags)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from resnet_deploy.cli import main
from resnet_deploy.cli.flags import ALIASES, flag_of, render

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_deploy"
FLAG = re.compile(r"(?<![\w`-])--[a-z][a-z0-9-]+")
TOKEN = re.compile(r"(?<!`)`([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)(?:=[^`]*)?`(?!`)")
# Strings that are command lines by nature: the rebuild command a sidecar records, the arguments each
# process of a data-parallel job is started with, and other programs' commands (pip, docker).
COMMAND_LINES = {"cli_args", "rebuild_command", "rebuild_hint", "arguments"}
OTHER_PROGRAMS = ("pip install", "docker run")
COMMAND_NAMES = {"export", "calibrate", "convert", "train", "validate", "bench", "demo", "info", "sensitivity"}


def library_strings() -> list[tuple[str, int, str]]:
    """(module, line, text) of every string constant outside cli/ that is not a docstring nor a command line."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text())
        skip: set[int] = set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and body:
                first = body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    skip.add(id(first.value))
            if isinstance(node, ast.FunctionDef) and node.name in COMMAND_LINES:
                skip |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if not any(program in node.value for program in OTHER_PROGRAMS):
                    found.append((str(rel), node.lineno, node.value))
    return found


def test_no_library_message_names_a_command_line_flag() -> None:
    flags = [f"{module}:{line}: {text[:80]!r}" for module, line, text in library_strings() if FLAG.search(text)]
    assert flags == [], "name the parameter in backticks (`calib_images`); the CLI shows its flag:\n" + "\n".join(flags)


def test_every_parameter_a_message_names_is_a_flag_of_some_command() -> None:
    """A typo in a backticked name (`calibration.cont`) would print as a flag no command has."""
    known = {opt for command in main.commands.values() for p in command.params for opt in p.opts}
    known |= {p.human_readable_name for c in main.commands.values() for p in c.params if isinstance(p, click.Argument)}
    named = {name for _, _, text in library_strings() for name in TOKEN.findall(text)} - COMMAND_NAMES
    unknown = sorted(name for name in named if flag_of(name) not in known and name != "precision")
    assert unknown == [], f"parameters no command has a flag for: {unknown} (add them to cli.flags.ALIASES)"
    assert all(flag in known for flag in ALIASES.values())


def test_parameters_print_as_flags_on_the_command_line() -> None:
    build = main.commands["build-engine"]
    assert (
        render("`gpu_fallback` only applies with `dla_core=N`", build)
        == "--gpu-fallback only applies with --dla-core N"
    )
    assert (
        render("use `precision=int8` `implicit` `calib_cache=FILE`", build)
        == "use --int8 --implicit --calib-cache FILE"
    )
    assert render("`calibration.count` is 5000", build) == "--calib-images is 5000"
    assert render("pass `overwrite=True`, choose another `output`", build) == "pass --overwrite, choose another -o"
    assert render("`target_cc` '9.0' is not a target", build) == "--target-cc '9.0' is not a target"
    assert render("written by `resnet-deploy calibrate`", build) == "written by `resnet-deploy calibrate`"
    convert = main.commands["convert"]
    assert render("ONNX `onnx` not found", convert) == "ONNX MODEL.onnx not found"
    assert render("`budget.gate=estimate`", main.commands["calibrate"]) == "--gate-on estimate"


def test_the_package_root_holds_only_what_every_stage_shares() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root == ["__init__.py", "__main__.py", "_io.py", "_lazy.py", "errors.py", "messages.py"]
    stages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert stages == {
        "artifacts", "cli", "convert", "data", "engine", "evaluate", "files", "models", "pipeline", "quantize",
        "runtime", "training", "trt", "edge", "serve",
    }  # fmt: skip


def test_every_command_is_short_and_runs_a_job() -> None:
    """A command builds its Job from option groups, plans, runs and prints: 40 lines at most (decorators aside)."""
    long, without_job = [], []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and any("command" in ast.unparse(d) for d in node.decorator_list):
                lines = node.end_lineno - node.lineno + 1
                if lines > 40:
                    long.append(f"{path.name}:{node.name} {lines} lines")
                if node.name != "info" and "Job(" not in ast.unparse(node):
                    without_job.append(f"{path.name}:{node.name}")
    assert long == [] and without_job == []


def test_the_commands_that_calibrate_take_the_same_calibration_options() -> None:
    group = {"data", "calib_images", "method", "percentile", "cache_dir", "no_cache"}
    for name in ("calibrate", "build-engine", "sensitivity"):
        assert group <= {p.name for p in main.commands[name].params}, name
