"""MkDocs hooks (``hooks:`` in mkdocs.yml): pages take what can drift from the code itself.

``<!-- cli: COMMAND -->`` becomes the command's usage and a table of every option, read from the
click command (its flags, type, default and help); ``<!-- cli-commands -->`` the list of commands;
``<!-- errors -->`` the error classes with their exit codes and docstrings.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # resnet_deploy from this checkout, installed or not
from resnet_deploy import errors  # noqa: E402
from resnet_deploy.cli import main  # noqa: E402

MARKER = re.compile(r"<!--\s*(cli|cli-commands|errors)(?::\s*([\w-]+))?\s*-->")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    return MARKER.sub(lambda m: _expand(m.group(1), m.group(2), page.file.src_path), markdown)


def _expand(kind: str, name: str | None, where: str) -> str:
    if kind == "cli-commands":
        return commands_table()
    if kind == "errors":
        return errors_table()
    if name not in main.commands:
        raise ValueError(f"{where}: no command {name!r} (commands: {', '.join(sorted(main.commands))})")
    return command_reference(name)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def commands_table() -> str:
    rows = ["| command | what it does |", "|---|---|"]
    for name, command in main.commands.items():
        rows.append(f"| [`{name}`]({name}.md) | {_cell(command.get_short_help_str(200))} |")
    return "\n".join(rows)


def _type(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    if isinstance(param.type, click.Choice):
        return " \\| ".join(f"`{c}`" for c in param.type.choices)
    return _cell(param.make_metavar(ctx) if isinstance(param, click.Argument) else param.type.name.upper())


def _default(param: click.Parameter) -> str:
    default = param.default
    if default is None or default == () or (isinstance(param, click.Option) and param.is_flag and not default):
        return ""
    if callable(default) or "UNSET" in repr(default):  # click's "no default given"
        return ""
    return f"`{default}`"


def command_reference(name: str) -> str:
    command = main.commands[name]
    parent = click.Context(main, info_name="resnet-deploy")
    ctx = click.Context(command, info_name=name, parent=parent)
    lines = [
        "```text",
        " ".join(command.get_usage(ctx).split()),
        "```",
        "",
        "| option | takes | default | what it does |",
        "|---|---|---|---|",
    ]
    for param in command.get_params(ctx):
        if isinstance(param, click.Argument):
            flags = f"`{param.make_metavar(ctx)}`"
            text = "argument"
        else:
            assert isinstance(param, click.Option)
            flags = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
            text = param.help or ""
        lines.append(f"| {flags} | {_type(param, ctx)} | {_default(param)} | {_cell(text)} |")
    return "\n".join(lines)


def errors_table() -> str:
    rows = ["| error | exit code | what it means |", "|---|---|---|"]
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.ResnetDeployError) and cls.__module__ == errors.__name__:
            doc = inspect.getdoc(cls) or ""
            rows.append(f"| `{name}` | {getattr(cls, 'exit_code', '')} | {_cell(doc.split(chr(10) * 2)[0])} |")
    return "\n".join(rows)
