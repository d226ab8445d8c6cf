"""How commands talk: human lines, or with --json exactly one JSON object on stdout."""

from __future__ import annotations

import json
from typing import Any

import click


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


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def human_count(count: int) -> str:
    return f"{count:,} ({count / 1e6:.2f} M)" if count < 1e9 else f"{count:,} ({count / 1e9:.2f} G)"
