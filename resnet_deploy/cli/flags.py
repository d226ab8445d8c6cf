"""The library's parameter names as this command line's flags, when a message is printed.

Library messages name parameters in backticks (`` `calib_images` ``, `` `precision=int8` ``, see
``resnet_deploy.errors``). Printed by the CLI, each becomes the flag that sets it: the command's own
option of that name first, then the table below (a record's field that a flag of another name sets),
then the field's name as a flag. Other backticked text (`` `resnet-deploy export` ``) stays as it is.
"""

from __future__ import annotations

import re

import click

# Job and record fields whose flag is not "--" + the field's name with dashes.
ALIASES = {
    "output": "-o",
    "directory": "--out",
    "model": "MODEL",
    "calibration.count": "--calib-images",
    "budget.gate": "--gate-on",
    "budget.images": "--held-out-images",
    "budget.precision": "--keep-out-precision",
    "budget.recover": "--recover",
    "qat.epochs": "--qat-epochs",  # calibrate's; the qat command's own is --epochs (and so on)
    "qat.lr": "--qat-lr",
    "qat.images": "--train-images",
    "qat.learn_scales": "--learn-scales",
    "workspace_mib": "--workspace",
    "batches": "--batch",
    "backends": "--backend",
    "artifacts": "--artifacts",
    "url": "URL",
}
_TOKEN = re.compile(r"(?<!`)`([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)(?:=([^`\s][^`]*))?`(?!`)")


def flag_of(name: str, command: click.Command | None = None) -> str:
    """The flag that sets parameter ``name`` (``calib_images`` -> ``--calib-images``)."""
    own = name.split(".", 1)[1] if command is not None and name.startswith(f"{command.name}.") else name
    for param in command.params if command is not None else ():
        if param.name in (name, own) and param.opts:
            if isinstance(param, click.Argument):
                return param.human_readable_name
            return max(param.opts, key=len) if name != "output" else "-o"
    if name in ALIASES:
        return ALIASES[name]
    return "--" + name.rsplit(".", 1)[-1].replace("_", "-")


def _flag_with_value(name: str, value: str, command: click.Command | None) -> str:
    if name in ("precision", "build.precision"):  # --fp16, --int8, --best (fp32 is the default)
        return f"--{value.strip(chr(39))}"
    flag = flag_of(name, command)
    if value == "True":
        return flag
    if value == "False":
        return flag.replace("--", "--no-", 1)
    return f"{flag} {value.strip(chr(39))}"


def describe_error(message: str, field: str | None, command: click.Command | None) -> str:
    """An error as the command line shows it: its parameters as flags, and the flag at fault named where
    the message does not name it already ("ONNX x.onnx not found (--onnx)")."""
    text = render(message, command)
    if field is None or command is None:
        return text
    flag = flag_of(field, command)
    ours = {opt for p in command.params for opt in p.opts} | {
        p.human_readable_name for p in command.params if isinstance(p, click.Argument)
    }
    return text if flag not in ours or flag in text else f"{text} ({flag})"


def render(message: str, command: click.Command | None = None) -> str:
    """``message`` with every backticked parameter shown as its flag on ``command``."""

    def flag(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if value is None and "." not in name and _looks_like_command(name, command):
            return match.group(0)
        return flag_of(name, command) if value is None else _flag_with_value(name, value, command)

    return _TOKEN.sub(flag, message)


def _looks_like_command(name: str, command: click.Command | None) -> bool:
    """`export`, `calibrate`: a command named in a message, not a parameter."""
    if command is not None and any(p.name == name for p in command.params):
        return False
    return name in ("export", "calibrate", "convert", "train", "validate", "bench", "demo", "info", "sensitivity")
