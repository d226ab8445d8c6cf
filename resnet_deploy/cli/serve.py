"""``resnet-deploy serve``: an artifact behind a real Triton server (PyTriton), over HTTP and gRPC (``ServeJob``)."""

from __future__ import annotations

import json
from typing import Any

import click

from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import ServeJob, plan, run
from resnet_deploy.runtime.load import ONNX_BACKENDS

DEFAULTS = ServeJob()


def _ready_line(served: Any) -> None:
    click.echo(json.dumps({"ready": True, **served.to_dict()}))


def _sizes(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in value.split(",")) if value else ()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of batch sizes (e.g. 4,8)") from None


@click.command("serve")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--host", default=DEFAULTS.host, show_default=True, help="Address to listen on; 0.0.0.0: every interface."
)
@click.option("--http-port", type=int, default=DEFAULTS.http_port, show_default=True, help="KServe v2 over HTTP.")
@click.option("--grpc-port", type=int, default=DEFAULTS.grpc_port, show_default=True, help="KServe v2 over gRPC.")
@click.option("--metrics-port", type=int, default=DEFAULTS.metrics_port, show_default=True, help="Prometheus /metrics.")
@click.option("--name", default=None, help="Triton model name (default: the file name up to its first dot).")
@click.option(
    "--backend",
    type=click.Choice(ONNX_BACKENDS),
    default=DEFAULTS.backend,
    show_default=True,
    help="Runtime of an .onnx model: auto runs it on OpenVINO unless ONNX Runtime is faster here (timed at load).",
)
@click.option("--instances", type=int, default=DEFAULTS.instances, show_default=True, help="Runners answering at once.")
@click.option(
    "--max-batch", type=int, default=DEFAULTS.max_batch, show_default=True, help="Largest batch Triton forms."
)
@click.option(
    "--max-queue-delay-us",
    type=int,
    default=DEFAULTS.max_queue_delay_us,
    show_default=True,
    help="How long a request waits for others to join its batch (microseconds).",
)
@click.option("--preferred-batch", callback=_sizes, default=None, help="Batch sizes Triton aims for, e.g. 4,8.")
@click.option("--threads", type=int, default=None, help="CPU threads of each ONNX runner (default: the runtime's).")
@click.option("--topk", type=int, default=DEFAULTS.topk, show_default=True, help="Classes per image (images model).")
@click.option(
    "--exit-timeout",
    "exit_timeout_s",
    type=int,
    default=DEFAULTS.exit_timeout_s,
    show_default=True,
    help="Seconds stopping waits for requests in flight (and idle client connections) before it exits.",
)
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, help="Keep Triton's own log there.")
@click.option("--overwrite", is_flag=True, help="Replace a --log-file that is not an earlier Triton log.")
@json_option
def serve_command(model: str, as_json: bool, **options: Any) -> None:
    """Serve MODEL over Triton's HTTP and gRPC protocol (KServe v2) until Ctrl-C or SIGTERM.

    A real Triton server (PyTriton) runs the model through resnet-deploy's runner, as two models:
    NAME takes the model's own input (normalised float32, or raw uint8 frames for a model with its
    preprocessing inside) and is batched dynamically; NAME_images takes encoded images (JPEG, PNG...)
    and preprocesses them here. Both return logits and probabilities; Triton's classification
    extension (class_count) gives the top-k. Health: /v2/health/ready; metrics: /metrics.

    Needs the [serve] extra in its own environment (PyTriton pins numpy<2): scripts/serve.sh makes one.

    \b
    Examples:
      resnet-deploy serve model.onnx
      resnet-deploy serve model.int8.engine --instances 2 --preferred-batch 8
      resnet-deploy serve model.onnx --host 0.0.0.0 --http-port 9000 --grpc-port 9001 --metrics-port 9002
    """
    job = ServeJob(model=model, on_ready=_ready_line if as_json else None, **options)
    report = run(plan(job), Reporter(as_json, bars=False))
    Reporter(as_json).result({"ok": True, **report.to_dict()})
