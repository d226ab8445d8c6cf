"""What an existing file says about where it came from: may a command replace it without --overwrite?

Every artifact records its inputs: an export's ONNX its checkpoint's sha256, an FP16/INT8 twin its
source ONNX's sha256, an engine's sidecar the sha256 of the file given to build-engine, a report a
digest of what it scored. A file is "ours from the same inputs" only when that record matches; a
file that cannot be read as ours never is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_deploy._io import sha256_file
from resnet_deploy._lazy import lazy_import
from resnet_deploy.artifacts.engine_sidecar import EngineSidecar
from resnet_deploy.artifacts.lineage import GraphLineage
from resnet_deploy.artifacts.onnx_io import read_onnx_props
from resnet_deploy.errors import ArtifactError

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy_import("PIL.Image")

Ours = Callable[[Path], bool]
_REPORT_MARK = "<!-- resnet-deploy {command}: inputs {digest} -->"
# The props that name an architecture (ArtifactMetadata.to_props): a seeded random model is one of these.
ARCHITECTURE_KEYS = ("architecture", "depth", "block", "variant", "plain", "shortcut", "num_classes", "input_size")


def architecture(props: dict[str, str]) -> dict[str, str]:
    return {k: props.get(k, "") for k in ARCHITECTURE_KEYS}


def _props(path: Path) -> tuple[dict[str, str], GraphLineage] | None:
    """An ONNX file's props and lineage; None when it is no ONNX, is damaged, or its lineage is unreadable."""
    try:
        props = read_onnx_props(str(path))
        return props, GraphLineage.from_props(props, str(path))
    except Exception:  # not ours, whatever is wrong with it
        return None


def onnx_export_of(checkpoint_sha256: str | None, arch: dict[str, str] | None = None) -> Ours:
    """An export of this checkpoint; with random weights (``None``), of the same (seeded) architecture."""

    def ours(path: Path) -> bool:
        read = _props(path)
        if read is None or read[1].derived:
            return False
        props = read[0]
        if checkpoint_sha256 is not None:
            return props.get("checkpoint_sha256") == checkpoint_sha256
        return "checkpoint_sha256" not in props and arch is not None and architecture(props) == arch

    return ours


def onnx_twin_of(
    source: Path, precision: str, quantization: str | None = None, made: Callable[[GraphLineage], bool] | None = None
) -> Ours:
    """An FP16 or INT8 twin converted or calibrated from ``source``, ``made`` the same way (the same calibration
    settings): a calibration made another way is the user's work, not ours to redo."""

    def ours(path: Path) -> bool:
        read = _props(path)
        lineage = read[1] if read is not None else None
        return (
            lineage is not None
            and lineage.precision == precision
            and (quantization is None or lineage.quantization == quantization)
            and (made is None or made(lineage))
            and source.is_file()
            and lineage.source_onnx_sha256 == sha256_file(source)
        )

    return ours


def engine_built_from(given: Path | None, arch: dict[str, str] | None = None) -> Ours:
    """An engine whose sidecar says it was built from the file given (or, from ``depth``, the same model)."""

    def ours(path: Path) -> bool:
        try:
            sidecar = EngineSidecar.read(path)
            checkpoint = sidecar.metadata.checkpoint_sha256
        except ArtifactError:  # no sidecar, or not one of ours: not ours
            return False
        if given is None:
            return checkpoint is None and architecture(sidecar.model) == arch
        want = sha256_file(given) if given.is_file() else None
        return want is not None and want in (sidecar.input_onnx_sha256, sidecar.source_onnx_sha256, checkpoint)

    return ours


def inputs_digest(paths: Iterable[str | Path], extra: str = "") -> str:
    """One digest for a set of input files (their bytes, in order) and the options that matter."""
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(sha256_file(path).encode() if Path(path).is_file() else f"missing:{path}".encode())
    return digest.hexdigest()[:16]


def report_mark(command: str, digest: str) -> str:
    """The last line of a Markdown report: which command wrote it from which inputs."""
    return _REPORT_MARK.format(command=command, digest=digest)


def report_of(command: str, digest: str) -> Ours:
    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 512))
                tail = fh.read().decode("utf-8", "replace")
        except OSError:
            return False
        return report_mark(command, digest) in tail

    return ours


def png_of(command: str, digest: str) -> Ours:
    """A chart whose PNG text chunk carries our mark (``bench --plot``)."""

    def ours(path: Path) -> bool:
        try:
            with Image.open(path) as image:
                return image.info.get("Description") == report_mark(command, digest)
        except Exception:
            return False

    return ours
