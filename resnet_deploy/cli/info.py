"""``resnet-deploy info``: the paper's Table 1 view of a model, with parameters and multiply-adds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts.model_spec import model_config, valid_depths_text
from resnet_deploy.cli.options import json_option, model_options, model_spec
from resnet_deploy.cli.output import Reporter, human_count

if TYPE_CHECKING:
    from resnet_deploy.models import stats
else:
    stats = lazy_module("resnet_deploy.models.stats")


@click.command()
@model_options
@json_option
def info(as_json: bool, **kwargs: Any) -> None:
    """Print a model's layers, parameters, multiply-adds and input size.

    For a file (checkpoint, ONNX or engine), `resnet-deploy inspect FILE` shows this and more.

    \b
    Example: resnet-deploy info --depth 50 --variant v1
    """

    spec = model_spec(kwargs)
    if spec.depth is None:
        raise click.UsageError(f"give --depth; valid depths: {valid_depths_text()}")
    config = model_config(spec)
    summary = stats.summarize(config)
    out = Reporter(as_json)
    family = "ImageNet" if config.family == "imagenet" else "CIFAR"
    shortcut = "none (plain)" if config.plain else config.shortcut
    variant = f" {config.variant}" if config.block == "bottleneck" else ""
    out.say(f"{summary.name}: {family} family, {config.block}{variant} blocks, shortcut {shortcut}")
    out.say(f"input          {config.in_chans}x{config.input_size}x{config.input_size} (NCHW)")
    out.say(f"{'stage':<14} {'output':<14} layers")
    for stage in summary.stages:
        shape = "x".join(str(d) for d in stage["output"])
        out.say(f"{stage['name']:<14} {shape:<14} {stage['layers']}")
    out.say(f"weighted layers {summary.weighted_layers}")
    out.say(f"parameters     {human_count(summary.parameters)}")
    out.say(f"multiply-adds  {human_count(summary.multiply_adds)}")
    out.result({"ok": True, **summary.to_dict()})
