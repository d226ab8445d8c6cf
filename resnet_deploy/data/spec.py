"""Dataset spec strings: ``digits``, ``cifar10:PATH``, ``cifar100:PATH``, ``imagefolder:PATH`` (labelled),
and ``folder:PATH`` (unlabelled images, for calibration)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resnet_deploy._lazy import is_available, lazy_module
from resnet_deploy.data.base import Dataset
from resnet_deploy.errors import DatasetError

if TYPE_CHECKING:
    from resnet_deploy.data import cifar, digits, folder_layout, imagefolder, plain_folder, unlabelled_folder
else:
    cifar, digits, folder_layout, imagefolder, plain_folder, unlabelled_folder = map(
        lazy_module,
        (
            "resnet_deploy.data.cifar",
            "resnet_deploy.data.digits",
            "resnet_deploy.data.folder_layout",
            "resnet_deploy.data.imagefolder",
            "resnet_deploy.data.plain_folder",
            "resnet_deploy.data.unlabelled_folder",
        ),
    )

DATASET_SPECS_HELP = (
    "digits (embedded, default), cifar10:PATH, cifar100:PATH, imagefolder:PATH, "
    "or folder:PATH (unlabelled images, for calibration)"
)
KINDS = ("digits", "cifar10", "cifar100", "imagefolder", "folder")
UNLABELLED = "folder"  # the kind whose images carry no labels


def no_labels(spec: str, to: str = "train, validate or score accuracy on") -> DatasetError:
    """The one-line refusal of unlabelled images where labels are needed (``to``: what for)."""
    return DatasetError(
        f"{spec} has no labels to {to}; use imagefolder:PATH there (a class tree, one sub-folder per class)",
        field="data",
    )


def is_unlabelled(spec: str) -> bool:
    """Whether ``spec`` names images without labels (``folder:PATH``)."""
    return spec.partition(":")[0].strip().lower() == UNLABELLED


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split a spec into (kind, path); path is None for the embedded digits."""
    kind, sep, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset {spec!r}; use {DATASET_SPECS_HELP}")
    if kind == "digits":
        if sep and path:
            raise DatasetError("the digits dataset is embedded and takes no path; use `data=digits`", field="data")
        return kind, None
    if not path:
        raise DatasetError(f"dataset {kind} needs a path: `data={kind}:PATH`", field="data")
    return kind, path


def check_spec(spec: str, *, labels_for: str | None = None) -> None:
    """Refuse a spec that cannot open, without reading its images (before minutes of other work);
    with ``labels_for`` (what the labels will be needed for), refuse unlabelled images too."""
    kind, path = parse_spec(spec)
    if kind in ("cifar10", "cifar100"):
        cifar.resolve_dir(kind, path or "")
    elif kind == "imagefolder":
        folder_layout.resolve_root(path or "")
    elif kind == UNLABELLED:
        if labels_for:
            raise no_labels(spec, labels_for)
        unlabelled_folder.resolve_folder(path or "")


def open_dataset(spec: str = "digits", *, workers: int = 0, decode_on: Any = None) -> Dataset:
    """Open a dataset by spec; ``workers`` decoding processes for ImageFolder data, whose training
    images ``decode_on`` (a torch.device) decodes on that device instead. Without torch installed,
    ImageFolder data is read with numpy alone (:mod:`resnet_deploy.data.plain_folder`: scoring and
    calibration, not training); the other datasets need torch. ``folder:PATH`` has no labels, so it
    is refused here: calibration reads it with :func:`open_unlabelled`."""
    kind, path = parse_spec(spec)
    if kind == UNLABELLED:
        raise no_labels(spec)
    if decode_on is not None and kind != "imagefolder":
        raise DatasetError(
            f"`gpu_decode` decodes JPEG files: {kind} data is held in memory already; drop it", field="gpu_decode"
        )
    if kind == "digits":
        return digits.load_digits_dataset()
    assert path is not None
    if kind in ("cifar10", "cifar100"):
        return cifar.load_cifar(kind, path)
    if not is_available("torch") and decode_on is None:
        return plain_folder.load_plain_folder(path)
    return imagefolder.load_imagefolder(path, workers=workers, decode_on=decode_on)


def open_unlabelled(spec: str) -> unlabelled_folder.UnlabelledFolder:
    """The image files of a ``folder:PATH`` spec (numpy and Pillow only)."""
    kind, path = parse_spec(spec)
    if kind != UNLABELLED:
        raise DatasetError(f"{spec} is a labelled dataset; open it with open_dataset")
    return unlabelled_folder.open_folder(path or "")
