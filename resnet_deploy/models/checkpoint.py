"""Checkpoints: a plain state dict (``model.pt``) plus JSON metadata beside it (``model.pt.json``).

The state dict loads into torchvision's ResNet or ours with ``torch.load(..., weights_only=True)``;
the JSON says how to rebuild the model (its ``ResNetConfig``) and what data it was trained on.
Foreign state dicts (torchvision ``.pth``, DataParallel-wrapped, ``{"state_dict": ...}``) load too;
their architecture is read off their keys. Nothing is ever unpickled beyond tensors.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from resnet_deploy._io import atomic_outputs, check_writable, finish_interrupted_writes, sha256_file
from resnet_deploy.artifacts.checkpoint_meta import CheckpointMeta
from resnet_deploy.artifacts.model_spec import ARCHITECTURES, ModelSpec, ResNetConfig, model_config
from resnet_deploy.artifacts.naming import json_beside
from resnet_deploy.errors import CheckpointError
from resnet_deploy.models.resnet import ResNet

_SHOWN = 4  # keys named in a mismatch error before "(+N more)"
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")  # what a refused pickle would load


@dataclass
class Checkpoint:
    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]
    meta: CheckpointMeta | None = None  # None: a foreign state dict, architecture to be inferred

    @property
    def config(self) -> ResNetConfig | None:
        return self.meta.config if self.meta else None

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata as its JSON fields ({} for a foreign state dict)."""
        return self.meta.to_json() if self.meta else {}

    @property
    def class_names(self) -> list[str] | None:
        return list(self.meta.class_names) if self.meta and self.meta.class_names else None


def metadata_path(path: str | Path) -> Path:
    return json_beside(path)


def save_checkpoint(model: ResNet, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s state dict, then its metadata (:class:`CheckpointMeta`'s fields, plus any
    keys of your own) naming the state dict's sha256.

    The .pt lands first, under a journal: a process killed between the two renames is finished by the
    next :func:`load_checkpoint`; a rename that fails with an error leaves metadata that names other
    bytes, which it refuses with the way back, never metadata of weights that did not land.
    """
    path = check_writable(path)
    with atomic_outputs(path, metadata_path(path)) as (tmp, meta_tmp):
        with open(tmp, "wb") as fh:  # a file object: the zip's folder is "archive", not the temp name
            torch.save(model.state_dict(), fh)  # so the same weights give the same bytes (and sha256)
        meta = CheckpointMeta.of(model.config, sha256_file(tmp), **(metadata or {}))
        meta_tmp.write_text(meta.to_text())
    return path


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].split(". ")[0] if lines else type(exc).__name__


def pickled_global(exc: BaseException) -> str | None:
    """What a pickle refused by ``torch.load(weights_only=True)`` would have loaded (``io.open``), if torch named it."""
    found = _UNSUPPORTED_GLOBAL.search(str(exc))
    return found[1] if found else None


def torch_load_reason(exc: BaseException) -> str:
    """The gist of a ``torch.load`` failure that is no refused pickle, never torch's advice to load unsafely."""
    first = _first_line(exc)
    return type(exc).__name__ if "weights_only" in first or "weights only" in first.lower() else first


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict; save one with torch.save(model.state_dict(), path)"
        )
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path} is not a plain state dict: entries {not_tensors[:_SHOWN]} are not tensors; "
            "save one with torch.save(model.state_dict(), path)"
        )
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True`` (never unpickles code) and its metadata if present
    (a save killed between its two renames is finished first: the pair read is the old one or the new one)."""
    path = Path(path)
    finish_interrupted_writes(path.parent)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # torch's advice on unusual pickles is not ours to relay
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        code = pickled_global(exc)
        if code is None and not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (it does not unpickle)") from None
        needs = f" (it pickles {code})" if code else ""
        raise CheckpointError(
            f"{path} is not a plain state dict{needs}: loading it would run code, which resnet-deploy never does; "
            "resave it with torch.save(model.state_dict(), path), or use a checkpoint written by resnet-deploy"
        ) from None
    except Exception as exc:  # truncated zip, wrong format: not a torch file at all
        why = torch_load_reason(exc) if zipfile.is_zipfile(path) else "neither a zip archive nor a pickle"
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({why})") from exc
    state_dict = _unwrap(obj, path)
    digest = sha256_file(path)

    meta = None
    meta_file = metadata_path(path)
    if meta_file.is_file():
        try:
            data = json.loads(meta_file.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint metadata {meta_file} is not valid JSON ({exc}); delete or fix it"
            ) from exc
        meta = CheckpointMeta.from_json(data, str(meta_file))
        if meta.sha256 not in (None, digest):
            if (path.parent / "train_state.pt").is_file():  # a run directory: resume rewrites both
                fix = f"an interrupted save; resuming that run (train's `resume={path.parent}`) rewrites both"
            else:
                fix = f"if you replaced {path.name} on purpose, move {meta_file.name} away (it then loads as weights)"
            raise CheckpointError(f"{meta_file} describes another version of {path.name} (sha256 differs): {fix}")
    return Checkpoint(path=path, sha256=digest, state_dict=state_dict, meta=meta)


_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")


@dataclass(frozen=True)
class InferredLayout:
    depth: int | None
    num_classes: int | None
    in_chans: int | None
    shortcut: str | None  # "B" or "C" when projections say so; None: none found (A or plain)
    description: str


def infer_layout(state_dict: dict[str, torch.Tensor]) -> InferredLayout:
    """Read depth, classes, input channels and shortcut kind off a state dict's keys and shapes."""
    blocks: dict[int, set[int]] = {}
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    layers = tuple(len(blocks[s]) for s in sorted(blocks))
    bottleneck = any(".conv3." in k for k in state_dict)
    depth = next(
        (d for d, (_, block, ls) in ARCHITECTURES.items() if ls == layers and (block == "bottleneck") == bottleneck),
        None,
    )
    fc = state_dict.get("fc.weight")
    conv1 = state_dict.get("conv1.weight")
    projected = set()  # (stage, block) pairs that carry a projection shortcut
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match and ".downsample." in key:
            projected.add(match.groups())
    total_blocks = sum(layers)
    shortcut = None
    if projected:
        shortcut = "C" if len(projected) == total_blocks else "B"
    kind = "bottleneck" if bottleneck else "basic"
    return InferredLayout(
        depth=depth,
        num_classes=int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None,
        in_chans=int(conv1.shape[1]) if conv1 is not None and conv1.ndim == 4 else None,
        shortcut=shortcut,
        description=f"{kind} blocks per stage {list(layers)}" + (f", i.e. depth {depth}" if depth else ""),
    )


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_state_into(model: ResNet, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict`` with an error that names the first mismatching keys and a fix."""
    own = model.state_dict()
    wrong_shape = [
        f"{k} (checkpoint {list(v.shape)} vs model {list(own[k].shape)})"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape
    ]
    # BatchNorm's num_batches_tracked is absent from old torchvision files; BN fills it in.
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    if wrong_shape or missing or unexpected:
        layout = infer_layout(state_dict)
        parts = []
        if wrong_shape:
            parts.append(f"shape mismatch: {_names(wrong_shape)}")
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        hint = f"the checkpoint has {layout.description}"
        if layout.depth is not None and layout.depth != model.config.depth:
            hint += f" (pass `depth={layout.depth}`)"
        if layout.num_classes is not None and layout.num_classes != model.config.num_classes:
            hint += f" and {layout.num_classes} classes (pass `num_classes={layout.num_classes}`)"
        raise CheckpointError(f"{source} does not fit {model.config.name}: {'; '.join(parts)}; {hint}")
    model.load_state_dict(state_dict, strict=False)


def model_from_checkpoint(checkpoint: Checkpoint, spec: ModelSpec | None = None) -> ResNet:
    """Build the checkpoint's model and load its weights; options override only what the file leaves open."""
    model = ResNet(checkpoint_config(checkpoint, spec))
    load_state_into(model, checkpoint.state_dict, f"checkpoint {checkpoint.path}")
    return model.eval()


def checkpoint_config(checkpoint: Checkpoint, spec: ModelSpec | None = None) -> ResNetConfig:
    """The architecture of the checkpoint's model: its metadata's, or read off its keys; ``spec`` fills only
    what the file leaves open (and contradicting the file is refused)."""
    spec = spec or ModelSpec()
    depth, variant, plain, shortcut = spec.depth, spec.variant, spec.plain, spec.shortcut
    num_classes, input_size = spec.num_classes, spec.input_size
    source = f"checkpoint {checkpoint.path}"
    if checkpoint.config is not None:
        cfg = checkpoint.config
        given = {
            "`depth`": (depth, cfg.depth),
            "`variant`": (variant, cfg.variant),
            "`shortcut`": (shortcut, cfg.shortcut),
            "`num_classes`": (num_classes, cfg.num_classes),
        }
        if plain and not cfg.plain:
            raise CheckpointError(f"{source} is {cfg.name}, not a plain network; drop `plain`", field="plain")
        for flag, (value, recorded) in given.items():
            if value is not None and value != recorded:
                raise CheckpointError(
                    f"{source} records {flag} {recorded}, not {value}; drop {flag}", field=flag.strip("`")
                )
        if cfg.pixel_mean and input_size is not None and int(input_size) != cfg.input_size:
            raise CheckpointError(
                f"{source} subtracts a {cfg.input_size}x{cfg.input_size} per-pixel mean image, so it takes only "
                f"{cfg.input_size}x{cfg.input_size} inputs; drop `input_size`",
                field="input_size",
            )
        config = cfg if input_size is None else replace(cfg, input_size=int(input_size))
        config = ResNetConfig.from_dict(config.to_dict())  # re-validates input_size
    else:
        layout = infer_layout(checkpoint.state_dict)
        depth = depth or layout.depth
        if depth is None:
            raise CheckpointError(
                f"cannot tell the architecture of {source} ({layout.description}); pass `depth`", field="depth"
            )
        if not plain and shortcut is None and layout.shortcut is None and ARCHITECTURES[depth][0] == "imagenet":
            raise CheckpointError(
                f"{source} has no projection shortcuts: it is a shortcut-A or a plain network; "
                "pass `shortcut=A` or `plain`",
                field="shortcut",
            )
        config = model_config(
            dataclasses.replace(
                spec,
                depth=depth,
                shortcut=None if plain else (shortcut or layout.shortcut),
                num_classes=num_classes or layout.num_classes,
                in_chans=layout.in_chans or spec.in_chans,
            )
        )
    return config
