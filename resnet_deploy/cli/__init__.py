"""The ``resnet-deploy`` command line: option groups build a Job, the library plans and runs it, the
command prints (one-line errors, the library's parameters shown as flags).

Nothing here imports torch or onnx, so --help is instant.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from resnet_deploy import __version__
from resnet_deploy._lazy import missing_extra
from resnet_deploy.cli.bench import bench
from resnet_deploy.cli.build_engine import build_engine_command
from resnet_deploy.cli.calibrate import calibrate
from resnet_deploy.cli.classify import classify_command
from resnet_deploy.cli.convert import convert
from resnet_deploy.cli.deepstream import deepstream_command
from resnet_deploy.cli.demo import demo
from resnet_deploy.cli.export import export
from resnet_deploy.cli.flags import describe_error
from resnet_deploy.cli.import_model import import_command
from resnet_deploy.cli.info import info
from resnet_deploy.cli.inspect import inspect_command
from resnet_deploy.cli.load_test import load_test_command
from resnet_deploy.cli.qat import qat
from resnet_deploy.cli.sensitivity import sensitivity
from resnet_deploy.cli.serve import serve_command
from resnet_deploy.cli.train import train
from resnet_deploy.cli.triton import triton_command
from resnet_deploy.cli.validate import validate_command
from resnet_deploy.errors import ResnetDeployError, Stopped, Terminated, interrupted_code, raise_terminated
from resnet_deploy.training.torchrun import record_failure


def _handle_sigterm() -> Any:
    """SIGTERM as Ctrl-C (clean up, then exit 143); returns the handler to restore, None if unchanged."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_DFL:  # someone (a test harness, an embedding app) owns it
            return None
        signal.signal(signal.SIGTERM, raise_terminated)
        return previous
    except ValueError:  # not the main thread
        return None


class _Group(click.Group):
    """Turns ResnetDeployError into one line on stderr (and JSON under --json) and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        previous = _handle_sigterm()
        try:
            return super().invoke(ctx)
        except Stopped as exc:  # another process of the job says why
            sys.exit(exc.exit_code)
        except ResnetDeployError as exc:
            self._fail(ctx, describe_error(str(exc), exc.field, self._command(ctx)), exc.exit_code)
        except ModuleNotFoundError as exc:  # a part of the pipeline whose extra is not installed
            hint = missing_extra(exc)
            if hint is None:
                raise
            self._fail(ctx, f"`{ctx.info_name} {ctx.invoked_subcommand}` needs {hint}", 2)
        except OSError as exc:  # a file system error no check foresaw (disk full mid-read, a vanished file)
            where = f": {exc.filename}" if exc.filename else ""
            self._fail(ctx, f"{exc.strerror or exc}{where}; nothing was written there", 2)
        except click.UsageError as exc:  # bad options and arguments: one line too, with where to look
            command = f"{ctx.info_name} {exc.ctx.info_name}" if exc.ctx and exc.ctx.parent else ctx.info_name
            self._fail(ctx, f"{exc.format_message()} (see `{command} --help`)", exc.exit_code)
        except KeyboardInterrupt as exc:
            how = "terminated" if isinstance(exc, Terminated) else "interrupted"
            click.echo(f"{how}; no partial output was kept", err=True)
            sys.exit(interrupted_code(exc))
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _command(self, ctx: click.Context) -> click.Command | None:
        """The command that failed, whose flags the message's parameters are shown as."""
        name = ctx.invoked_subcommand
        return self.commands.get(name) if name else None

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        message = " ".join(message.split())
        record_failure(message, code)  # under torchrun: its report names the cause as printed here
        if ctx.meta.get("resnet_deploy.json"):  # meta is shared with every sub-context
            click.echo(json.dumps({"ok": False, "error": message}))
        click.secho(f"error: {message}", err=True, fg="red")
        sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="resnet-deploy")
def main() -> None:
    """ResNets from definition to validated ONNX and NVIDIA engines."""


def _register() -> None:
    for command in (
        info,
        import_command,
        inspect_command,
        train,
        export,
        convert,
        calibrate,
        sensitivity,
        qat,
        build_engine_command,
        validate_command,
        bench,
        classify_command,
        triton_command,
        serve_command,
        load_test_command,
        deepstream_command,
        demo,
    ):
        main.add_command(command)


_register()
