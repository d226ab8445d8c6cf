"""How commands talk: human lines (parameters shown as flags), progress bars on a terminal, and with
--json exactly one JSON object on stdout."""

from __future__ import annotations

import json
from typing import Any

import click

from resnet_deploy._io import human_bytes
from resnet_deploy.cli.flags import render
from resnet_deploy.messages import Bars, Progress

__all__ = ["Reporter", "human_bytes", "human_count"]


class Reporter:
    """The library's :class:`~resnet_deploy.messages.Messages` for the CLI. Human text goes to stdout, or
    to stderr under ``--json`` so stdout holds only the JSON; bars go to stderr when it is a terminal
    (and neither ``--no-progress`` nor ``--json`` is given)."""

    def __init__(self, as_json: bool, bars: bool = True) -> None:
        self.as_json = as_json
        self.bars = Bars(bars and not as_json)
        context = click.get_current_context(silent=True)
        self.command = context.command if context is not None else None

    def say(self, message: str = "") -> None:
        click.echo(render(message, self.command), err=self.as_json)

    def warn(self, message: str) -> None:
        click.secho(f"warning: {render(message, self.command)}", err=True, fg="yellow")

    def progress(self, total: int | None, desc: str) -> Progress:
        return self.bars.progress(total, desc)

    def result(self, payload: dict[str, Any]) -> None:
        if self.as_json:
            click.echo(json.dumps(payload, indent=2, default=str))


def human_count(count: int) -> str:
    return f"{count:,} ({count / 1e6:.2f} M)" if count < 1e9 else f"{count:,} ({count / 1e9:.2f} G)"
