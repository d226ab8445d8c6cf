"""How commands talk: human lines, or with --json exactly one JSON object on stdout."""

from __future__ import annotations

import json
from typing import Any

import click

from resnet_deploy._io import human_bytes

__all__ = ["Reporter", "human_bytes", "human_count"]


class Reporter:
    """Human text goes to stdout, or to stderr under ``--json`` so stdout holds only the JSON."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, message: str = "") -> None:
        click.echo(message, err=self.as_json)

    def warn(self, message: str) -> None:
        click.secho(f"warning: {message}", err=True, fg="yellow")

    def result(self, payload: dict[str, Any]) -> None:
        if self.as_json:
            click.echo(json.dumps(payload, indent=2, default=str))


def human_count(count: int) -> str:
    return f"{count:,} ({count / 1e6:.2f} M)" if count < 1e9 else f"{count:,} ({count / 1e9:.2f} G)"
