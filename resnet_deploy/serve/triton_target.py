"""Where a load test goes: a Triton server's URL, one of its models, and what that model takes (its input's
name, datatype and shape, and its ``max_batch_size``), all read from the server itself through tritonclient.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_deploy._lazy import lazy_import
from resnet_deploy.errors import RunnerError

if TYPE_CHECKING:
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http
else:
    triton_http = lazy_import("tritonclient.http", extra="client")
    triton_grpc = lazy_import("tritonclient.grpc", extra="client")

PROTOCOLS = ("http", "grpc")
TENSOR_TYPES = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
}
TIMEOUT_S = 120.0  # one request's network timeout: a CPU server at concurrency 16 can queue long


def parse_url(url: str) -> tuple[str, bool]:
    """``host:port`` (or ``http://host:port``, ``https://``, ``grpc://``) -> (``host:port``, ssl)."""
    text = str(url).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if scheme not in ("", "http", "https", "grpc", "grpcs"):
        raise RunnerError(f"`url` {url!r}: give host:port (or http://host:port), not a {scheme}:// URL", field="url")
    address = rest.rstrip("/")
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in address:
        raise RunnerError(
            f"`url` {url!r} is not host:port: the server's address and its HTTP or gRPC port, e.g. localhost:8000",
            field="url",
        )
    return address, scheme in ("https", "grpcs")


def is_local(address: str) -> bool:
    """Whether ``host:port`` is this machine (loopback, or one of its own addresses)."""
    host = address.rpartition(":")[0].strip("[]")
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
        return host in {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except (ValueError, OSError):
        return False


@dataclass(frozen=True)
class ModelInput:
    """What the model takes, from the server's metadata and configuration."""

    model: str
    name: str
    datatype: str  # Triton's: FP32, UINT8, BYTES...
    shape: tuple[int, ...]  # one item's (no batch dimension when max_batch_size > 0)
    max_batch_size: int  # 0: the model does not batch (its shape is the whole request's)
    outputs: tuple[str, ...]
    platform: str = ""

    def request_shape(self, batch: int) -> list[int]:
        if self.max_batch_size > 0:
            return [batch, *self.shape]
        return list(self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
            "max_batch_size": self.max_batch_size,
            "outputs": list(self.outputs),
            "platform": self.platform,
        }


@dataclass(frozen=True)
class Target:
    """A model on a reachable server: where, by which protocol, and what it takes."""

    address: str  # host:port
    protocol: str
    ssl: bool
    model: ModelInput

    @property
    def url(self) -> str:
        return ("https://" if self.ssl else "http://") + self.address if self.protocol == "http" else self.address

    def client(self) -> Any:
        """A new client (each thread has its own)."""
        return make_client(self.address, self.protocol, self.ssl)


def make_client(address: str, protocol: str, ssl: bool = False) -> Any:
    if protocol == "http":
        return triton_http.InferenceServerClient(
            address, ssl=ssl, concurrency=1, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S
        )
    return triton_grpc.InferenceServerClient(address, ssl=ssl)


def one_line_message(exc: BaseException) -> str:
    """An error's own words, one line (tritonclient's exceptions carry a status prefix)."""
    text = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    text = str(text or type(exc).__name__).strip().splitlines()
    return text[0] if text else type(exc).__name__


def json_kw(protocol: str) -> dict[str, Any]:
    return {"as_json": True} if protocol == "grpc" else {}


def list_models(client: Any, protocol: str) -> list[str] | None:
    """The models the server has: its repository index, or (an empty index: PyTriton's) the models its
    statistics name; None when it answers neither (PyTriton restricts both by default)."""
    found: list[str] | None = None
    try:
        index = client.get_model_repository_index(**json_kw(protocol))
        rows = index.get("models", []) if isinstance(index, dict) else index
        found = sorted({str(row["name"]) for row in rows if row.get("name")})
    except Exception:
        pass
    if found:
        return found
    try:
        stats = client.get_inference_statistics(**json_kw(protocol))
        return sorted({str(row["name"]) for row in stats.get("model_stats", []) if row.get("name")})
    except Exception:
        return found


def _models_hint(client: Any, protocol: str) -> str:
    names = list_models(client, protocol)
    if names:
        return f"the server has {', '.join(names)}"
    if names == []:
        return "the server has no models"
    return (
        "the server does not list its models (its repository and statistics APIs are restricted; "
        "`resnet-deploy serve` prints them when it is ready)"
    )


def connect_model(url: str, protocol: str = "http", model: str | None = None) -> Target:
    """The ``model`` served at ``url``, checked: the server answers, has the model, and it is ready. ``model``
    None: the server's only model. One line when any of it fails."""
    if protocol not in PROTOCOLS:
        raise RunnerError(f"`protocol` is http or grpc, not {protocol!r}", field="protocol")
    address, ssl = parse_url(url)
    client = make_client(address, protocol, ssl)
    try:
        client.is_server_live()
    except Exception as exc:
        port = "HTTP is usually port 8000, gRPC 8001" if protocol == "http" else "gRPC is usually 8001, HTTP 8000"
        raise RunnerError(
            f"no Triton server answers {protocol.upper()} at {address} ({one_line_message(exc)}): start one there "
            f"(`resnet-deploy serve MODEL`, or NVIDIA's Triton container) or check `url` and `protocol` ({port})",
            field="url",
        ) from None
    if model is None:
        names = list_models(client, protocol)
        if not names or len(names) > 1:
            raise RunnerError(f"name the model to load with `model`: {_models_hint(client, protocol)}", field="model")
        model = names[0]
    try:
        meta = client.get_model_metadata(model, **json_kw(protocol))
    except Exception as exc:
        if "unknown model" in one_line_message(exc) or "not found" in one_line_message(exc):
            raise RunnerError(
                f"model {model!r} is not on the server at {address}: {_models_hint(client, protocol)}", field="model"
            ) from None
        raise RunnerError(
            f"the server at {address} did not describe model {model!r}: {one_line_message(exc)}"
        ) from None
    try:
        ready = client.is_model_ready(model)
    except Exception:
        ready = False
    if not ready:
        raise RunnerError(
            f"model {model!r} on the server at {address} is not ready (loading, or failed to load): see the "
            "server's log, then run again",
            field="model",
        )
    try:
        config = client.get_model_config(model, **json_kw(protocol))
    except Exception as exc:
        raise RunnerError(
            f"the server at {address} did not give the config of model {model}: {one_line_message(exc)}"
        ) from None
    config = config.get("config", config)
    return Target(address, protocol, ssl, model_input(model, meta, config))


def model_input(model: str, meta: dict[str, Any], config: dict[str, Any]) -> ModelInput:
    """The model's one input, from its metadata (name, datatype) and config (max_batch_size, dims)."""
    inputs = meta.get("inputs", [])
    if len(inputs) != 1:
        names = ", ".join(str(i.get("name")) for i in inputs) or "none"
        raise RunnerError(
            f"model {model!r} takes {len(inputs)} inputs ({names}); a load test sends a classifier's one input",
            field="model",
        )
    first = inputs[0]
    max_batch = int(config.get("max_batch_size", 0) or 0)
    shape = [int(d) for d in first.get("shape", [])]
    dims = next((c.get("dims") for c in config.get("input", []) if c.get("name") == first["name"]), None)
    item = [int(d) for d in dims] if dims is not None and max_batch > 0 else shape[1:] if max_batch > 0 else shape
    datatype = str(first["datatype"])
    if datatype == "BYTES":
        item = [1 if d < 0 else d for d in item]  # one encoded image per item
    elif any(d < 0 for d in item) or (max_batch == 0 and not item):
        raise RunnerError(
            f"model {model}'s input {first['name']} has a variable shape {item}: a load test sends one fixed shape; "
            "serve a model with fixed input dimensions",
            field="model",
        )
    elif datatype not in TENSOR_TYPES:
        raise RunnerError(f"model {model}'s input {first['name']} is {datatype}: not one a load test sends")
    outputs = tuple(str(o["name"]) for o in meta.get("outputs", []))
    return ModelInput(
        model, str(first["name"]), datatype, tuple(item), max_batch, outputs, str(meta.get("platform", ""))
    )


def check_batches(target: Target, batches: Sequence[int]) -> None:
    """One line for a batch the model cannot take (over its max_batch_size)."""
    m = target.model
    if m.max_batch_size == 0 and any(b != 1 for b in batches):
        raise RunnerError(
            f"model {m.model} does not batch (max_batch_size 0): `batch` 1 only, not {max(batches)}", field="batch"
        )
    over = [b for b in batches if m.max_batch_size and b > m.max_batch_size]
    if over:
        raise RunnerError(
            f"`batch` {max(over)} is over the max_batch_size {m.max_batch_size} of model {m.model} on "
            f"{target.address}: "
            f"send batches of {m.max_batch_size} at most (or serve it with a larger max batch)",
            field="batch",
        )
