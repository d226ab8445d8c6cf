"""The state quantization-aware training saves after every epoch, and resumes from.

``torch.save`` of a plain dict: the format tag, a fingerprint of what the run fine-tunes (the source model
and the scales it starts from, the options bar epochs and device, the layers kept out), the epochs done,
and the network's and optimizers' states. Read back with ``weights_only=True`` (no code runs) and checked
before use: a damaged file, another run's state, or one that does not fit is one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_deploy._io import atomic_output
from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import QuantizationError
from resnet_deploy.quantize.qat_options import QatOptions

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_import("torch", extra="train")

FORMAT = "resnet-deploy-qat-state/1"


def path_for(output: Path) -> Path:
    """Where fine-tuning toward ``output`` keeps its resumable state."""
    return output.with_name(output.name + ".qat-state.pt")


def looks_like_state(path: Path) -> bool:
    """Whether ``path`` is a QAT state file by its look (a torch zip whose pickle carries the format tag), read
    without torch: what a plan checks before an existing file there may be resumed and replaced."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            return len(pickles) == 1 and FORMAT.encode() in archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return False


def amax_digest(amax: dict[str, float]) -> str:
    return hashlib.sha256(json.dumps(sorted(amax.items())).encode()).hexdigest()[:16]


def _fingerprint(options: QatOptions, source_sha256: str, keep_out: Collection[str]) -> dict[str, Any]:
    """What a saved state must match to be resumed: the same model, options (bar epochs and device), layers."""
    fields = {k: v for k, v in options.to_dict().items() if k not in ("epochs", "device")}
    return {"source_sha256": source_sha256, "options": fields, "keep_out": sorted(keep_out)}


def save(
    path: Path, network: Any, sgd: Any, adam: Any, options: QatOptions, sha: str, keep_out: Collection[str], epoch: int
) -> None:
    payload = {
        "format": FORMAT,
        "fingerprint": _fingerprint(options, sha, keep_out),
        "epoch": epoch,
        "network": network.state_dict(),
        "sgd": sgd.state_dict(),
        "adam": adam.state_dict() if adam is not None else None,
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def resume(
    path: Path | None, network: Any, sgd: Any, adam: Any, options: QatOptions, sha: str, keep_out: Collection[str]
) -> int:
    """Load the saved state into the network and optimizers; the epochs it had done (0 with none saved)."""
    if path is None or not path.exists():
        return 0
    try:
        with warnings.catch_warnings():  # torch's advice on unusual pickles is not ours to relay
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; the user needs one line
        raise QuantizationError(
            f"{path} is not a readable QAT state ({type(exc).__name__}); delete it to start over"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise QuantizationError(f"{path} is not a resnet-deploy QAT state; delete it to start over")
    if payload.get("fingerprint") != _fingerprint(options, sha, keep_out):
        raise QuantizationError(
            f"{path} was saved by QAT of another model or with other options; "
            "run with those, or delete it to start over"
        )
    epoch = payload.get("epoch")
    if type(epoch) is not int or epoch < 0:
        shown = repr(epoch)[:40]
        raise QuantizationError(f"{path} records {shown} epochs done, not a count; delete it to start over")
    if epoch > options.epochs:
        raise QuantizationError(f"{path} has {epoch} epochs done, more than the {options.epochs} asked for")
    try:
        network.load_state_dict(payload["network"])
        sgd.load_state_dict(payload["sgd"])
        if adam is not None and payload.get("adam") is not None:
            adam.load_state_dict(payload["adam"])
    except Exception as exc:  # torch's loaders raise many types for states that do not fit; the user needs one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QuantizationError(f"{path} does not fit this model ({reason}); delete it to start over") from None
    return epoch
