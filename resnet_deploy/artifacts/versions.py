"""Format versions of the files resnet-deploy writes: ``<kind>/<N>`` (``resnet-deploy-engine/1``).

A reader accepts its own version and every older one (filling what they lack), and refuses a newer
one, which it cannot read faithfully, naming the upgrade.
"""

from __future__ import annotations

from resnet_deploy import __version__
from resnet_deploy.errors import ArtifactError


def format_tag(kind: str, version: int) -> str:
    return f"{kind}/{version}"


def read_version(tag: object, kind: str, current: int, source: str, *, not_ours: str) -> int:
    """The version in ``tag`` (``kind/N``) when this release can read it.

    ``not_ours``: what to tell the user when ``tag`` is not of ``kind`` at all (a foreign file).
    """
    prefix = f"{kind}/"
    if not isinstance(tag, str) or not tag.startswith(prefix) or not tag[len(prefix) :].isdigit():
        raise ArtifactError(f"{source} is not a {kind} file (format {tag!r}); {not_ours}")
    version = int(tag[len(prefix) :])
    if version > current:
        raise ArtifactError(
            f"{source} has format {tag}, newer than this resnet-deploy {__version__} reads "
            f"({format_tag(kind, current)}); upgrade: pip install -U resnet-deploy"
        )
    return version
