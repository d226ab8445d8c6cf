"""``ImportJob``: an outside ResNet made a resnet-deploy artifact, verified, which every later command
takes as it takes its own exports.

    from resnet_deploy import ImportJob, plan, run
    result = run(plan(ImportJob("resnet18.onnx", labels="classes.txt", dataset="imagefolder:/data/val")))
    result = run(plan(ImportJob("timm_resnet50.pth")))       # a state dict: exported, verified

- an ONNX file from any exporter: recognised, normalised and verified against itself in ONNX Runtime
  (:mod:`resnet_deploy.convert.import_onnx`), no torch needed;
- a torchvision or timm ResNet state dict, or a checkpoint of ours: its architecture read off its keys,
  exported and verified against PyTorch, as ``export`` does.

``preprocess`` (``imagenet``, ``cifar`` or ``MEAN,STD,SIZE,CROP``; default: the recognised family's),
``labels`` (a text file, one class name per line) and ``dataset`` (the spec ``validate`` and the
accuracy budget then score on) are recorded in the artifact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import sha256_file
from resnet_deploy._lazy import lazy_module
from resnet_deploy.artifacts import naming
from resnet_deploy.artifacts.model_spec import ModelSpec, at_input_size
from resnet_deploy.convert.import_onnx import ImportPreprocess, parse_preprocess, read_labels
from resnet_deploy.errors import ArtifactError
from resnet_deploy.files.provenance import onnx_export_of
from resnet_deploy.messages import Messages
from resnet_deploy.pipeline.export import describe_verification, model_name
from resnet_deploy.pipeline.job import Job, existing_file, output_path
from resnet_deploy.pipeline.plan import Input, Output, Plan, Step, checked, last
from resnet_deploy.runtime.load import ONNX_SUFFIXES, TORCH_SUFFIXES

if TYPE_CHECKING:
    from resnet_deploy.convert import export, import_onnx
    from resnet_deploy.data import spec as data_spec
    from resnet_deploy.models import source as model_source
else:
    export, import_onnx, data_spec, model_source = map(
        lazy_module,
        (
            "resnet_deploy.convert.export",
            "resnet_deploy.convert.import_onnx",
            "resnet_deploy.data.spec",
            "resnet_deploy.models.source",
        ),
    )


@dataclass(frozen=True)
class ImportJob(Job[Any]):
    """Import ``model`` (an ONNX file, or a PyTorch state dict or checkpoint) to ``output`` (default:
    ``<name>.imported.onnx`` beside nothing of the source's; a state dict's ``<architecture>.onnx``)."""

    command = "import"

    model: str | Path
    output: str | Path | None = None
    preprocess: str | None = None
    labels: str | Path | None = None
    dataset: str | None = None
    overwrite: bool = False

    def plan(self) -> Plan[Any]:
        source = existing_file(self.model, "model", "model")
        assert source is not None
        suffix = source.suffix.lower()
        if suffix not in (*ONNX_SUFFIXES, *TORCH_SUFFIXES):
            raise ArtifactError(
                f"{source} is neither an ONNX file nor a PyTorch state dict (.pt/.pth/.bin); import takes those",
                field="model",
            )
        chosen = parse_preprocess(self.preprocess) if self.preprocess is not None else None
        labels = existing_file(self.labels, "labels", "labels")
        class_names = read_labels(labels) if labels is not None else None
        if self.dataset is not None:
            data_spec.check_spec(self.dataset)
        output = output_path(self.output, (".onnx",), "the import is an ONNX file")
        ours = onnx_export_of(sha256_file(source))
        if suffix in ONNX_SUFFIXES:
            output = output or source.with_name(f"{source.stem}.imported.onnx")
            if output.resolve() == source.resolve():
                raise ArtifactError(f"the import would replace its source {source}; give another `output`")
            step: Step = ImportOnnx(source, output, ours, chosen, class_names, self.dataset, labels)
        else:
            output = output or naming.exported(model_name(source, ModelSpec()))
            step = ImportWeights(source, output, ours, chosen, class_names, self.dataset, labels)
        return checked(self.command, [step], last, overwrite=self.overwrite)


@dataclass(frozen=True)
class _Import(Step):
    source: Path
    output: Path
    ours: Any = field(compare=False, repr=False)
    preprocess: ImportPreprocess | None = None
    class_names: tuple[str, ...] | None = None
    dataset: str | None = None
    labels: Path | None = None

    def inputs(self) -> tuple[Input, ...]:
        found = [Input(self.source, "model")]
        return tuple(found + ([Input(self.labels, "labels")] if self.labels else []))

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.output, "imported ONNX", ours=self.ours),)


@dataclass(frozen=True)
class ImportOnnx(_Import):
    @property
    def title(self) -> str:
        return f"import {self.source} to {self.output}, verified against the original in ONNX Runtime"

    def run(self, out: Messages, earlier: Sequence[Any]) -> Any:
        result = import_onnx.import_onnx(self.source, self.output, self.preprocess, self.class_names, self.dataset)
        out.say(
            f"imported {self.source} ({result.layout}, opset {result.source_opset}) as {result.architecture} -> "
            f"{result.path} (opset {result.opset}, dynamic batch)"
        )
        out.say(f"verified against the original in ONNX Runtime: max |difference| {result.max_abs_error:.2e}")
        _say_choices(out, self.preprocess, self.class_names, self.dataset)
        for note in result.notes:
            out.say(note)
        return result


@dataclass(frozen=True)
class ImportWeights(_Import):
    @property
    def title(self) -> str:
        return f"import the weights {self.source}: export to {self.output}, verified against PyTorch"

    def run(self, out: Messages, earlier: Sequence[Any]) -> Any:
        opened = model_source.open_model(self.source)
        config = opened.metadata.config
        import_onnx.check_labels(self.class_names, config.num_classes, self.source)
        chosen = self.preprocess
        if chosen is not None and chosen.size is not None and chosen.size != config.input_size:
            config = at_input_size(config, chosen.size)  # a size the network cannot take is refused here
        if chosen is not None:
            import_onnx.check_channels(chosen, config.in_chans)
        metadata = dataclasses.replace(
            opened.metadata,
            config=config,
            mean=chosen.mean if chosen else opened.metadata.mean,
            std=chosen.std if chosen else opened.metadata.std,
            preprocess=chosen.policy if chosen else opened.metadata.preprocess,
            class_names=self.class_names or opened.metadata.class_names,
            dataset=self.dataset or opened.metadata.dataset,
        )
        result = export.export_onnx(opened.model, self.output, metadata)
        out.say(f"imported {self.source} as {config.name} -> {result.path} (opset {result.opset}, dynamic batch)")
        if result.verification:
            out.say(describe_verification(result.verification))
        _say_choices(out, self.preprocess, self.class_names, self.dataset)
        return result


def _say_choices(
    out: Messages, preprocess: ImportPreprocess | None, class_names: tuple[str, ...] | None, dataset: str | None
) -> None:
    if preprocess is None:
        out.say("preprocessing: the family's default (ImageNet: resize 256, crop 224; CIFAR: resize); set `preprocess`")
    if class_names is None:
        out.say("no class names recorded: results name classes by index (give `labels`, one name per line)")
    if dataset is None:
        out.say("no dataset recorded: give `data` to validate and calibrate (or record one with `dataset`)")
