"""Which TensorRT each Triton Inference Server container release ships, and back.

A TensorRT engine (``model.plan``) loads only in the TensorRT version that built it: TensorRT compares
the whole version, build number included ("expecting library version 8.6.1.6 got 8.6.1.4, please
rebuild"). Triton's ``tensorrt_plan`` backend is the TensorRT inside its container
(``nvcr.io/nvidia/tritonserver:<release>-py3``), so an engine is served by the releases whose
TensorRT equals the one in its sidecar, and by no other.

Where the table comes from (``SOURCES`` names it per row):

- ``notes``: the release notes of that release in triton-inference-server/server
  (``docs/introduction/release_notes.md`` at the release's documentation commit: 24.08, 24.10, 24.12,
  25.01 list "NVIDIA TensorRT 10.3.0.26", "10.5.0.18", "10.7.0.23", "10.8.0.43");
- ``windows``: the same repository's ``Dockerfile.win10.min`` at the release's tag (``v2.34.0`` to
  ``v2.50.0``), whose ``TENSORRT_VERSION`` is the container's TensorRT for 23.05-24.01, 24.07, 24.09;
- ``matrix``: NVIDIA's Deep Learning Frameworks Support Matrix
  (https://docs.nvidia.com/deeplearning/frameworks/support-matrix/) and the per-release notes
  (https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-YY-MM.html),
  "NVIDIA Triton Inference Server Container Versions" table; a row given with three parts compares on
  three parts only.

The ``-trtllm-python-py3`` containers ship another TensorRT (the one TensorRT-LLM pins, listed in
the server repository's ``docs/introduction/compatibility.md``); this table is the ``-py3`` container's.
"""

from __future__ import annotations

from resnet_deploy.errors import ArtifactError

# release -> TensorRT in nvcr.io/nvidia/tritonserver:<release>-py3
RELEASES: dict[str, str] = {
    "23.01": "8.5.2.2",
    "23.02": "8.5.3.1",
    "23.03": "8.5.3.1",
    "23.04": "8.6.1",
    "23.05": "8.6.1.6",
    "23.06": "8.6.1.6",
    "23.07": "8.6.1.6",
    "23.08": "8.6.1.6",
    "23.09": "8.6.1.6",
    "23.10": "8.6.1.6",
    "23.11": "8.6.1.6",
    "23.12": "8.6.1.6",
    "24.01": "8.6.1.6",
    "24.02": "8.6.3",
    "24.03": "8.6.3",
    "24.04": "8.6.3",
    "24.05": "10.0.1.6",
    "24.06": "10.1.0.27",
    "24.07": "10.2.0.19",
    "24.08": "10.3.0.26",
    "24.09": "10.4.0.26",
    "24.10": "10.5.0.18",
    "24.11": "10.6.0.26",
    "24.12": "10.7.0.23",
    "25.01": "10.8.0.43",
    "25.02": "10.8.0.43",
    "25.03": "10.9.0.34",
    "25.04": "10.9.0.34",
    "25.05": "10.10.0.31",
    "25.06": "10.11.0.33",
    "25.07": "10.11.0.33",
    "25.08": "10.13.2.6",
    "25.09": "10.13.3.9",
    "25.10": "10.13.3.9",
    "25.11": "10.14.1.48",
    "25.12": "10.14.1.48",
}
_NOTES = ("24.08", "24.10", "24.12", "25.01")
_WINDOWS = ("23.05", "23.06", "23.07", "23.08", "23.09", "23.10", "23.11", "23.12", "24.01", "24.07", "24.09")
SOURCES: dict[str, str] = {
    release: "notes" if release in _NOTES else "windows" if release in _WINDOWS else "matrix" for release in RELEASES
}


def image(release: str) -> str:
    """The container a release names: ``nvcr.io/nvidia/tritonserver:24.08-py3``."""
    return f"nvcr.io/nvidia/tritonserver:{release}-py3"


def _parts(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.strip().split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def same_tensorrt(a: str, b: str) -> bool:
    """Whether two TensorRT versions are one for an engine: equal on every part both give (three at least)."""
    pa, pb = _parts(a), _parts(b)
    common = min(len(pa), len(pb))
    return common >= 3 and pa[:common] == pb[:common]


def tensorrt_of(release: str) -> str:
    """The TensorRT in Triton ``release`` ("24.08" -> "10.3.0.26"); one line when the table lacks it."""
    release = release.strip()
    if release.endswith("-py3"):
        release = release[: -len("-py3")]
    if release not in RELEASES:
        first, last = min(RELEASES), max(RELEASES)
        raise ArtifactError(
            f"`triton_release` {release!r} is not in resnet-deploy's table of Triton releases ({first} to {last}, "
            "YY.MM); give one of those, or leave it out and check the TensorRT of your container "
            "(`python3 -c 'import tensorrt; print(tensorrt.__version__)'` inside it)",
            field="triton_release",
        )
    return RELEASES[release]


def releases_with(tensorrt_version: str) -> tuple[str, ...]:
    """The Triton releases whose TensorRT is ``tensorrt_version`` (oldest first); () when none is."""
    return tuple(r for r, v in sorted(RELEASES.items()) if same_tensorrt(v, tensorrt_version))


def by_tensorrt() -> list[tuple[str, tuple[str, ...]]]:
    """(TensorRT version, its Triton releases), in release order: the docs' table."""
    rows: dict[str, list[str]] = {}
    for release, version in sorted(RELEASES.items()):
        rows.setdefault(version, []).append(release)
    return [(version, tuple(releases)) for version, releases in rows.items()]


def markdown_table() -> str:
    """The "container tag per TensorRT release" table of docs/serving/triton.md."""
    lines = ["| TensorRT | Triton container tags |", "|---|---|"]
    for version, releases in by_tensorrt():
        lines.append(f"| {version} | " + ", ".join(f"`{r}-py3`" for r in releases) + " |")
    return "\n".join(lines)
