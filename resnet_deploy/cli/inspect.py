"""``resnet-deploy inspect``: what an artifact is, where it came from, what it holds layer by layer (``InspectJob``)."""

from __future__ import annotations

from typing import Any

import click

from resnet_deploy.cli.options import json_option
from resnet_deploy.cli.output import Reporter
from resnet_deploy.pipeline import InspectJob, plan, run


@click.command("inspect")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--layers/--no-layers", default=True, show_default=True, help="List the layers after the summary.")
@json_option
def inspect_command(artifact: str, layers: bool, as_json: bool) -> None:
    """Show what ARTIFACT is (a checkpoint, an ONNX file or an engine): the model, its preprocessing,
    where it came from (export, calibration, accuracy budget, build), and its layers with their
    precision: INT8, FP16 or FP32, and for engines the ONNX nodes each fused and their PyTorch modules.

    The first line says how much of the model runs in INT8.

    \b
    Examples:
      resnet-deploy inspect r50.int8.engine
      resnet-deploy inspect r50.int8.onnx --no-layers
      resnet-deploy inspect runs/r20/model.pt --json
    """
    out = Reporter(as_json)
    report = run(plan(InspectJob(artifact)), out)
    out.say(f"{report.path}: {report.kind}")
    out.say(f"  {report.summary}")
    model = report.model
    family = f" ({model['family']}, {model['block']} blocks)" if model["family"] != "external" else ""
    out.say(f"model        {model['architecture']}{family}, {model['num_classes']} classes")
    out.say(f"input        {model['input']}")
    pre = model["preprocessing"]
    out.say(f"preprocess   {pre['resize']}, {pre['interpolation']}; mean {pre['mean']}, std {pre['std']}")
    out.say(f"weights      {model['weights']}" + (f", trained on {model['dataset']}" if model.get("dataset") else ""))
    for line in _lineage_lines(report.lineage):
        out.say(line)
    if report.build:
        build = report.build
        targets = ", ".join(f"{k} {_listed(v)}" for k, v in build["targets"].items())
        out.say(f"built by     {build['backend']}, {build['precision']}, for {targets or 'the build GPU'}")
        out.say(f"from graph   {build['source_onnx']} (sha256 {str(build['source_onnx_sha256'])[:12]}...)")
    if layers and report.layers:
        out.say("")
        for line in _layer_table(report.kind, report.layers):
            out.say(line)
    out.result({"ok": True, **report.to_dict()})


def _lineage_lines(lineage: dict[str, Any]) -> list[str]:
    lines = [
        f"precision    {lineage['precision']}" + (f" ({lineage['quantization']})" if "quantization" in lineage else "")
    ]
    if "calibration" in lineage:
        c = lineage["calibration"]
        lines.append(f"calibration  {c['method']} on {c['images']} images of {c['dataset']} (cache {c['id']})")
    if "budget" in lineage:
        b = lineage["budget"]
        kept = ", ".join(k["module"] or k["node"] for k in b["kept_out"]) or "none"
        share = f"INT8 MAC share {b['int8_mac_share']:.1%}"
        lines.append(f"budget       kept out of INT8 ({b['kept_out_precision']}): {kept}; {share}")
    if "qat" in lineage:
        q = lineage["qat"]
        epochs = f"{q['epochs']} epoch{'s' if q['epochs'] != 1 else ''}"
        scales = ", learned scales" if q["learned_scales"] else ""
        lines.append(
            f"qat          {epochs} on {q['images_per_epoch']} images of {q['dataset']} (lr {q['lr']:g}{scales}): "
            f"Δtop-1 against FP32 {q['top1_change_before_pp']:+.2f} pp post-training -> "
            f"{q['top1_change_after_pp']:+.2f} pp on {q['held_out_images']} held-out images"
        )
    if "training" in lineage:
        lines.append("training     " + ", ".join(f"{k} {v}" for k, v in lineage["training"].items()))
    return lines


def _layer_table(kind: str, layers: list[dict[str, Any]]) -> list[str]:
    if kind == "onnx":
        rows = [f"{'module':<28} {'op':<5} {'MACs':>8} {'precision':<9} scales (activation; weights min-max)"]
        for layer in layers:
            scales = ""
            if layer["activation_scale"] is not None:
                low, high = layer["weight_scales"]
                scales = f"{layer['activation_scale']:.3g}; {low:.3g}-{high:.3g}"
            label = layer["module"] or layer["node"]
            rows.append(f"{label:<28} {layer['op']:<5} {_macs(layer['macs']):>8} {layer['precision']:<9} {scales}")
        return rows
    if kind == "engine":
        rows = [f"{'engine layer':<40} {'type':<12} {'precision':<9} {'MACs':>8} modules (ONNX nodes fused)"]
        for layer in layers:
            modules = ", ".join(layer["modules"])
            nodes = ", ".join(layer["onnx_nodes"][:3]) + (" ..." if len(layer["onnx_nodes"]) > 3 else "")
            rows.append(
                f"{layer['name'][:40]:<40} {layer['type'][:12]:<12} {layer['precision']:<9} "
                f"{_macs(layer['macs']) if layer['macs'] else '-':>8} {modules}{' ' if modules else ''}({nodes})"
            )
        return rows
    return [f"{'stage':<14} output"] + [
        f"{layer['module']:<14} {'x'.join(map(str, layer['output']))}" for layer in layers
    ]


def _macs(count: int) -> str:
    return f"{count / 1e6:.2f}M" if count >= 10_000 else str(count)


def _listed(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
