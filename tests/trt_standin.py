"""Strict stand-ins of each TensorRT release's Python module, for the conformance tests.

The surface is the release's own: classes, methods with the argument names of each overload,
properties (read-write or read-only), enums and their values, module functions and attributes,
read from ``tests/engine/trt_api/tensorrt-<release>.json`` plus ``supplement.json`` (see the README
there); for TensorRT-RTX it is introspected from the installed ``tensorrt_rtx``. Outside it the
stand-in fails as the real module would:

- a class, member, enum value or function the release lacks: AttributeError;
- a call with more positional arguments than any overload takes, or a keyword no overload names:
  TypeError;
- setting a read-only or unknown attribute of a TensorRT object: AttributeError; a property given
  an object of the wrong type, or a Python subclass whose base ``__init__`` was not called: TypeError.

Behind the surface is a small simulation of TensorRT, enough for our build and run paths: the
parser reads the ONNX's inputs, outputs and Q/DQ nodes; the builder checks what real builds
refuse (precision flags on a strongly typed network, Q/DQ without INT8 on a weakly typed one, DLA
with a dynamic profile, FP32 or Q/DQ, the calibration cache's header and algorithm, a
hardware-compatibility level the GPU cannot meet), drives a progress monitor and returns a plan
that records the configuration; the runtime refuses another release's plan, a version-compatible
one without ``engine_host_code_allowed``; an execution context checks shapes and 256-byte
alignment and computes ``logits = x @ reference_weights`` on the fake CUDA device of
``tests/fake_cuda.py``, on the stream it is given (recorded, when that stream captures a graph).
Where a real release's behaviour is not known, nothing is simulated: the call raises
NotImplementedError naming the member.
"""

from __future__ import annotations

import ctypes
import json
import re
import signal
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

API_DIR = Path(__file__).parent / "engine" / "trt_api"
RELEASES = ("8.6", "10.3", "10.13", "10.16", "11.1")
VERSIONS = {"8.6": "8.6.2.3", "10.3": "10.3.0.30", "10.13": "10.13.3.9", "10.16": "10.16.0.72", "11.1": "11.1.0.9"}
PLAN_MAGIC = b"STANDIN-PLAN\n"
TIMING_MAGIC = b"STANDIN-TIMING:"


@dataclass
class Machine:
    """The machine the stand-in runs on: its GPU, DLA cores, fake CUDA device and injected faults."""

    gpu: str = "NVIDIA H100 80GB HBM3"
    compute_capability: str = "9.0"
    dla_cores: int = 0
    cuda: Any = None  # a tests.fake_cuda.FakeCudart that execution contexts compute on
    context_fails: bool = False  # create_execution_context() returns None (device out of memory)
    interrupt_at_step: int | None = None  # raise SIGINT during the build, at this progress step
    live: dict[str, int] = field(default_factory=dict)  # engines and contexts not yet collected
    default_stream_launches: int = 0  # execute_async_v3(0): TensorRT warns it synchronises the device
    streams: list[int] = field(default_factory=list)  # every stream execute_async_v3 was given
    # execute(source, target, rows, features, classes, stream) -> whether that stream was capturing;
    # None: compute on the fake CUDA device (tests/fake_cuda.py). The GPU test launches a real kernel.
    execute: Callable[..., bool] | None = None
    violations: list[str] = field(default_factory=list)  # a context re-shaped after a graph captured it


JETSON = {"gpu": "Orin", "compute_capability": "8.7", "dla_cores": 2}  # JetPack 6: TensorRT 8.6 / 10.3


def reference_weights(features: int, classes: int) -> np.ndarray:
    """The linear map every stand-in engine computes: logits = x.reshape(N, -1) @ W."""
    return (np.cos(np.arange(features * classes, dtype=np.float64)).reshape(features, classes) / 64).astype(np.float32)


def version_tag(version: str) -> int:
    """NV_TENSORRT_VERSION: M*1000+m*100+p before 10, M*10000+m*100+p from 10 (NvInferVersion.h)."""
    major, minor, patch = (int(p) for p in version.split(".")[:3])
    return (major * 10000 if major >= 10 else major * 1000) + minor * 100 + patch


# -- surfaces ----------------------------------------------------------------------------------


def release_surface(release: str) -> dict[str, Any]:
    """One release's API surface: its JSON with the supplement applied."""
    data = json.loads((API_DIR / f"tensorrt-{release}.json").read_text())
    supplement = json.loads((API_DIR / "supplement.json").read_text())
    common, own = supplement["all_releases"], supplement["releases"][release]
    classes = {name: dict(spec) for name, spec in data["classes"].items()}
    enums = dict(data["enums"])
    classes.update({name: dict(spec) for name, spec in common["classes"].items()})
    for enum_name in common["enums_nested"]:
        enums.pop(enum_name, None)  # declared on its class (ILogger.Severity), not the module
    for qualified, overloads in own.get("overloads", {}).items():
        cls, method = qualified.split(".")
        classes[cls] = {**classes[cls], "methods": {**classes[cls]["methods"], method: overloads}}
    for qualified in common["write_only"]:
        cls, prop = qualified.split(".")
        classes[cls] = {**classes[cls], "properties": {**classes[cls]["properties"], prop: "wo"}}
    bases = {cls: base for cls, base in common["bases"].items() if cls in classes and base in classes}
    return {
        "name": "tensorrt",
        "label": f"tensorrt {release}",
        "version": VERSIONS[release],
        "classes": classes,
        "enums": enums,
        "functions": data["functions"],
        "attributes": {alias: ("DataType", value) for alias, value in own["data_type_aliases"].items()},
        "bases": bases,
    }


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{<"
        depth -= ch in ")]}>"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in [*parts, current] if p.strip()]


def _overloads(name: str, routine: Any) -> list[list[str]]:
    """Argument names of each overload, from pybind11's docstring signatures."""
    found = []
    for line in (routine.__doc__ or "").splitlines():
        match = re.match(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\)(?: -> .*)?$", line.strip())
        if not match or match.group(1).strip() == "*args, **kwargs":
            continue
        names = [p.split(":")[0].split("=")[0].strip() for p in _split_top(match.group(1))]
        found.append([n for n in names if n not in ("self", "") and not n.startswith("*")])
    return found or [[]]


def _is_enum(obj: Any) -> bool:
    return isinstance(obj, type) and hasattr(obj, "__members__")


def introspected_surface(module: ModuleType) -> dict[str, Any]:
    """The same surface, read from an installed pybind11 module (TensorRT-RTX)."""
    classes: dict[str, Any] = {}
    enums: dict[str, list[str]] = {}
    functions: dict[str, list[str]] = {}
    attributes: dict[str, tuple[str, str]] = {}
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if _is_enum(obj):
            enums[name] = list(obj.__members__)
        elif isinstance(obj, type):
            spec: dict[str, Any] = {"methods": {}, "properties": {}, "static": {}, "enums": {}}
            for attr in dir(obj):
                if attr.startswith("__") and attr not in ("__init__", "__len__", "__getitem__", "__eq__"):
                    continue
                raw = next((k.__dict__[attr] for k in obj.__mro__ if attr in k.__dict__), None)
                if isinstance(raw, property):
                    spec["properties"][attr] = "wo" if raw.fget is None else "rw" if raw.fset is not None else "ro"
                elif _is_enum(raw):
                    spec["enums"][attr] = list(raw.__members__)
                elif isinstance(raw, staticmethod) or type(raw).__name__ == "builtin_function_or_method":
                    spec["static"][attr] = _overloads(attr, getattr(obj, attr))
                elif callable(raw) and not isinstance(raw, type):
                    spec["methods"][attr] = _overloads(attr, raw)
            if "Severity" in spec["enums"]:
                spec["exported_enum_values"] = "Severity"
            classes[name] = spec
        elif callable(obj):
            functions[name] = _overloads(name, obj)[0]
        elif type(obj).__name__ == "DataType":
            attributes[name] = ("DataType", obj.name)
    bases = {
        name: base
        for name in classes
        for base in classes
        if base != name and base in {k.__name__ for k in getattr(module, name).__mro__[1:2]}
    }
    return {
        "name": module.__name__,
        "label": f"{module.__name__} {module.__version__} (introspected)",
        "version": str(module.__version__),
        "classes": classes,
        "enums": enums,
        "functions": functions,
        "attributes": attributes,
        "bases": bases,
    }


# -- the strict module -------------------------------------------------------------------------


class PybindEnum(IntEnum):
    def __str__(self) -> str:  # pybind11 prints "DataType.FLOAT"; IntEnum would print "0"
        return f"{type(self).__name__}.{self.name}"


def _make_enum(name: str, values: list[str]) -> type[PybindEnum]:
    return PybindEnum(name, {value: i for i, value in enumerate(values)})  # type: ignore[return-value]


class StandIn:
    """Base of every stand-in class: attributes are set as on pybind11 objects."""

    _sd_label = ""

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name.startswith("_sd_") or "_sd_exact" not in cls.__dict__:  # ours, or a Python subclass's
            object.__setattr__(self, name, value)
            return
        if isinstance(getattr(cls, name, None), property):
            object.__setattr__(self, name, value)  # the property refuses a read-only one
            return
        raise AttributeError(f"{self._sd_label}: '{cls.__name__}' object has no attribute '{name}' to set")

    @property
    def _sd_state(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_sd_state_dict", {})


IMPL: dict[str, Callable[..., Any]] = {}
DEFAULTS: dict[str, Callable[[Simulation], Any]] = {
    "IBuilderConfig.builder_optimization_level": lambda sim: 3,
    "IBuilderConfig.DLA_core": lambda sim: -1,
    "IBuilderConfig.default_device_type": lambda sim: sim.trt.DeviceType.GPU,
    "IBuilderConfig.hardware_compatibility_level": lambda sim: sim.trt.HardwareCompatibilityLevel.NONE,
    "IBuilderConfig.num_compute_capabilities": lambda sim: 0,
    "Runtime.DLA_core": lambda sim: -1,
    "Runtime.engine_host_code_allowed": lambda sim: False,
}
PROPERTY_TYPES: dict[str, tuple[str, bool]] = {  # type name in the module, None allowed
    "IBuilderConfig.progress_monitor": ("IProgressMonitor", True),
    "IBuilderConfig.int8_calibrator": ("IInt8Calibrator", True),
    "IBuilderConfig.hardware_compatibility_level": ("HardwareCompatibilityLevel", False),
    "IBuilderConfig.default_device_type": ("DeviceType", False),
    "IBuilderConfig.builder_optimization_level": ("int", False),
    "IBuilderConfig.DLA_core": ("int", False),
    "IBuilderConfig.num_compute_capabilities": ("int", False),
    "Runtime.DLA_core": ("int", False),
    "Runtime.engine_host_code_allowed": ("bool", False),
    "IExecutionContext.device_memory": ("int", False),
}


def impl(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            IMPL[name] = function
        return function

    return register


def _checked(
    sim: Simulation,
    qualified: str,
    overloads: list[list[str]],
    function: Callable[..., Any] | None,
    *,
    method: bool = True,
) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        self, args = (args[0], args[1:]) if method else (None, args)
        if not any(len(args) <= len(o) and set(kwargs) <= set(o[len(args) :]) for o in overloads):
            raise TypeError(
                f"{sim.label}: {qualified}() takes {overloads} (argument names per overload); "
                f"got {len(args)} positional and keywords {sorted(kwargs)}"
            )
        if function is None:
            raise NotImplementedError(f"stand-in {sim.label}: {qualified} exists in this release but is not simulated")
        return function(sim, self, *args, **kwargs) if method else function(sim, *args, **kwargs)

    call.__name__ = qualified.rsplit(".", 1)[-1]
    return call


def _property(sim: Simulation, qualified: str, mode: str) -> property:
    name = qualified.rsplit(".", 1)[-1]
    computed = IMPL.get(qualified)

    def fget(self: Any) -> Any:
        if computed is not None:
            return computed(sim, self)
        if name in self._sd_state:
            return self._sd_state[name]
        default = DEFAULTS.get(qualified)
        return default(sim) if default else None

    def fset(self: Any, value: Any) -> None:
        type_name, nullable = PROPERTY_TYPES.get(qualified, ("", True))
        if type_name and not (value is None and nullable):
            wanted = {"int": int, "bool": bool}.get(type_name) or getattr(sim.trt, type_name)
            if not isinstance(value, wanted):
                raise TypeError(f"{sim.label}: {qualified} takes a {type_name}, not {type(value).__name__}")
            if isinstance(value, StandIn) and not value._sd_state.get("initialised"):
                raise TypeError(f"{sim.label}: {type(value).__name__}.__init__() must call the base __init__")
        setter = IMPL.get(qualified + "=")
        if setter is not None:
            setter(sim, self, value)
        else:
            self._sd_state[name] = value

    return property(None if mode == "wo" else fget, fset if mode in ("rw", "wo") else None)


def _no_constructor(self: Any, *args: Any, **kwargs: Any) -> None:
    raise TypeError(f"{type(self).__name__}: No constructor defined!")


class StrictModule(ModuleType):
    pass


def build_module(surface: dict[str, Any], machine: Machine) -> StrictModule:
    module = StrictModule(surface["name"])
    module.__version__ = surface["version"]
    sim = Simulation(module, machine, surface)
    object.__setattr__(module, "_sd_sim", sim)
    for name, values in surface["enums"].items():
        setattr(module, name, _make_enum(name, values))
    made: dict[str, type] = {}

    def make(name: str) -> type:
        if name in made:
            return made[name]
        spec = surface["classes"][name]
        base_name = surface["bases"].get(name)
        bases: tuple[type, ...] = (make(base_name),) if base_name else (StandIn,)
        if name == "IHostMemory":
            bases = (bytes, *bases)
        namespace: dict[str, Any] = {"_sd_exact": True, "_sd_label": sim.label, "__module__": surface["name"]}
        for method, overloads in spec["methods"].items():
            qualified = f"{name}.{method}"
            if method == "__init__":
                namespace[method] = _checked(sim, qualified, overloads, IMPL.get(qualified, _generic_init))
            elif method.startswith("__"):
                if qualified in IMPL:
                    function = IMPL[qualified]
                    namespace[method] = lambda self, *a, _f=function, **k: _f(sim, self, *a, **k)
            else:
                namespace[method] = _checked(sim, qualified, overloads, IMPL.get(qualified))
        if "__init__" not in spec["methods"]:
            namespace["__init__"] = _no_constructor
        for prop, mode in spec["properties"].items():
            namespace[prop] = _property(sim, f"{name}.{prop}", mode)
        for method, overloads in spec.get("static", {}).items():
            namespace[method] = staticmethod(_checked(sim, f"{name}.{method}", overloads, None, method=False))
        for enum_name, values in spec.get("enums", {}).items():
            nested = _make_enum(enum_name, values)
            namespace[enum_name] = nested
            if spec.get("exported_enum_values") == enum_name:
                namespace.update({value: nested[value] for value in values})
        made[name] = type(name, bases, namespace)
        return made[name]

    for name in surface["classes"]:
        setattr(module, name, make(name))
    for alias, (enum_name, value) in surface["attributes"].items():
        setattr(module, alias, getattr(getattr(module, enum_name), value))
    for name, args in surface["functions"].items():
        setattr(module, name, _checked(sim, name, [args], None, method=False))
    return module


def standin(release: str, machine: Machine | None = None) -> StrictModule:
    """The stand-in ``tensorrt`` module of ``release`` (one of RELEASES)."""
    return build_module(release_surface(release), machine or Machine())


def standin_rtx(machine: Machine | None = None) -> StrictModule:
    """A stand-in ``tensorrt_rtx`` with the installed module's surface, for the run path."""
    import tensorrt_rtx

    return build_module(
        introspected_surface(tensorrt_rtx), machine or Machine(gpu="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    )


# -- the simulation ----------------------------------------------------------------------------


class Simulation:
    def __init__(self, module: ModuleType, machine: Machine, surface: dict[str, Any]) -> None:
        self.trt = module
        self.machine = machine
        self.label = surface["label"]
        self.version = surface["version"]
        self.is_rtx = surface["name"] == "tensorrt_rtx"

    def new(self, cls_name: str, **state: Any) -> Any:
        cls = getattr(self.trt, cls_name)
        obj = bytes.__new__(cls, state.pop("data")) if cls_name == "IHostMemory" else object.__new__(cls)
        if cls_name != "IHostMemory":
            obj._sd_state.update(state)
        return obj

    def log(self, logger: Any, severity: str, message: str) -> None:
        if logger is not None:
            logger.log(getattr(self.trt.ILogger.Severity, severity), message)

    def track(self, obj: Any, kind: str) -> None:
        live = self.machine.live
        live[kind] = live.get(kind, 0) + 1
        weakref.finalize(obj, lambda: live.__setitem__(kind, live[kind] - 1))


def _generic_init(sim: Simulation, self: Any, *args: Any, **kwargs: Any) -> None:
    self._sd_state["initialised"] = True


def _dims(value: Any) -> list[int]:
    return [int(d) for d in (value._sd_state["dims"] if isinstance(value, StandIn) else value)]


@impl("Dims.__init__")
def _dims_init(sim: Simulation, self: Any, shape: Any = ()) -> None:
    self._sd_state.update(initialised=True, dims=[int(d) for d in shape])


@impl("Dims.__len__")
def _dims_len(sim: Simulation, self: Any) -> int:
    return len(self._sd_state["dims"])


@impl("Dims.__getitem__")
def _dims_getitem(sim: Simulation, self: Any, index: Any) -> Any:
    dims = self._sd_state["dims"]
    return tuple(dims[index]) if isinstance(index, slice) else dims[index]  # IndexError ends iteration


@impl("Dims.__eq__")
def _dims_eq(sim: Simulation, self: Any, other: Any) -> bool:
    return self._sd_state["dims"] == _dims(other)


@impl("Dims.__repr__", "Dims.__str__")
def _dims_repr(sim: Simulation, self: Any) -> str:
    return str(tuple(self._sd_state["dims"]))


def _new_dims(sim: Simulation, dims: list[int]) -> Any:
    obj = sim.new("Dims")
    obj._sd_state.update(initialised=True, dims=list(dims))
    return obj


@impl("Builder.__init__", "Runtime.__init__")
def _with_logger(sim: Simulation, self: Any, logger: Any) -> None:
    if not isinstance(logger, sim.trt.ILogger) or not logger._sd_state.get("initialised"):
        raise TypeError(f"{sim.label}: {type(self).__name__}(logger) needs an ILogger whose base __init__ was called")
    self._sd_state.update(initialised=True, logger=logger)


@impl("Builder.num_DLA_cores", "Runtime.num_DLA_cores")
def _dla_cores(sim: Simulation, self: Any) -> int:
    return sim.machine.dla_cores


@impl("Builder.create_network")
def _create_network(sim: Simulation, self: Any, flags: int = 0) -> Any:
    return sim.new("INetworkDefinition", flags=int(flags), logger=self._sd_state["logger"], inputs=[], outputs=[])


@impl("Builder.create_builder_config")
def _create_config(sim: Simulation, self: Any) -> Any:
    return sim.new("IBuilderConfig", flags=set(), profiles=[], pools={}, targets={})


@impl("Builder.create_optimization_profile")
def _create_profile(sim: Simulation, self: Any) -> Any:
    return sim.new("IOptimizationProfile", shapes={})


@impl("IOptimizationProfile.set_shape")
def _set_shape(sim: Simulation, self: Any, input: str, min: Any, opt: Any, max: Any) -> None:
    low, mid, high = _dims(min), _dims(opt), _dims(max)
    if not all(a <= b <= c for a, b, c in zip(low, mid, high, strict=True)):
        raise ValueError(f"{sim.label}: profile for {input} needs min <= opt <= max, got {low} {mid} {high}")
    self._sd_state["shapes"][input] = (low, mid, high)


def _flag_set(sim: Simulation, network: Any, name: str) -> bool:
    flag = getattr(sim.trt.NetworkDefinitionCreationFlag, name, None)
    return flag is not None and bool(network._sd_state["flags"] & (1 << int(flag)))


@impl("OnnxParser.__init__")
def _parser_init(sim: Simulation, self: Any, network: Any, logger: Any) -> None:
    self._sd_state.update(initialised=True, network=network, logger=logger, errors=[])


@impl("OnnxParser.parse_from_file")
def _parse_from_file(sim: Simulation, self: Any, model: str) -> bool:
    import onnx

    errors = self._sd_state["errors"]
    network = self._sd_state["network"]
    major = int(sim.version.split(".")[0])
    if not sim.is_rtx and major < 10 and not _flag_set(sim, network, "EXPLICIT_BATCH"):
        errors.append((-1, "", "", "the ONNX parser needs a network created with EXPLICIT_BATCH"))
        return False
    try:
        graph = onnx.load(model, load_external_data=False).graph
    except Exception as exc:
        errors.append((-1, "", "", f"failed to parse the ONNX file {model}: {exc}"))
        return False
    inits = {i.name: i for i in graph.initializer}
    for index, node in enumerate(graph.node):
        if node.op_type == "DequantizeLinear" and inits.get(node.input[0]) is not None:
            if inits[node.input[0]].data_type == onnx.TensorProto.INT32:
                errors.append((index, node.name, node.op_type, "INT32 DequantizeLinear input is not supported"))
    if errors:
        return False

    def tensor(value: Any) -> Any:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        dtype = {1: "FLOAT", 2: "UINT8", 10: "HALF"}[value.type.tensor_type.elem_type]  # uint8: frames
        return sim.new("ITensor", name=value.name, shape=_new_dims(sim, dims), dtype=getattr(sim.trt.DataType, dtype))

    network._sd_state.update(
        inputs=[tensor(v) for v in graph.input if v.name not in inits],
        outputs=[tensor(v) for v in graph.output],
        qdq=any(n.op_type == "QuantizeLinear" for n in graph.node),
    )
    return True


@impl("OnnxParser.num_errors")
def _num_errors(sim: Simulation, self: Any) -> int:
    return len(self._sd_state["errors"])


@impl("OnnxParser.get_error")
def _get_error(sim: Simulation, self: Any, index: int) -> Any:
    node, name, op, desc = self._sd_state["errors"][index]
    return sim.new("ParserError", node=node, name=name, op=op, desc=desc)


for _member, _key in {"desc": "desc", "node": "node", "node_name": "name", "node_operator": "op"}.items():
    impl(f"ParserError.{_member}")(lambda sim, self, _k=_key: self._sd_state[_k])


@impl("INetworkDefinition.num_inputs")
def _num_inputs(sim: Simulation, self: Any) -> int:
    return len(self._sd_state["inputs"])


@impl("INetworkDefinition.num_outputs")
def _num_outputs(sim: Simulation, self: Any) -> int:
    return len(self._sd_state["outputs"])


@impl("INetworkDefinition.get_input")
def _get_input(sim: Simulation, self: Any, index: int) -> Any:
    return self._sd_state["inputs"][index]


@impl("INetworkDefinition.get_output")
def _get_output(sim: Simulation, self: Any, index: int) -> Any:
    return self._sd_state["outputs"][index]


for _member in ("name", "shape", "dtype"):
    impl(f"ITensor.{_member}")(lambda sim, self, _m=_member: self._sd_state[_m])


@impl("IBuilderConfig.set_flag")
def _config_set_flag(sim: Simulation, self: Any, flag: Any) -> None:
    if not isinstance(flag, sim.trt.BuilderFlag):
        raise TypeError(f"{sim.label}: set_flag takes a BuilderFlag")
    self._sd_state["flags"].add(flag.name)


@impl("IBuilderConfig.get_flag")
def _config_get_flag(sim: Simulation, self: Any, flag: Any) -> bool:
    return flag.name in self._sd_state["flags"]


@impl("IBuilderConfig.set_memory_pool_limit")
def _config_pool(sim: Simulation, self: Any, pool: Any, pool_size: int) -> None:
    if not isinstance(pool, sim.trt.MemoryPoolType):
        raise TypeError(f"{sim.label}: set_memory_pool_limit takes a MemoryPoolType")
    self._sd_state["pools"][pool.name] = int(pool_size)


@impl("IBuilderConfig.set_preview_feature")
def _config_preview(sim: Simulation, self: Any, feature: Any, enable: bool) -> None:
    if not isinstance(feature, sim.trt.PreviewFeature):
        raise TypeError(f"{sim.label}: set_preview_feature takes a PreviewFeature")
    features = self._sd_state.setdefault("preview", set())
    if enable:
        features.add(feature.name)
    else:
        features.discard(feature.name)


@impl("IBuilderConfig.add_optimization_profile")
def _config_add_profile(sim: Simulation, self: Any, profile: Any) -> int:
    self._sd_state["profiles"].append(dict(profile._sd_state["shapes"]))
    return len(self._sd_state["profiles"]) - 1


@impl("IBuilderConfig.set_compute_capability")
def _config_cc(sim: Simulation, self: Any, compute_capability: Any, index: int) -> bool:
    if not 0 <= index < self.num_compute_capabilities:
        return False
    self._sd_state["targets"][index] = compute_capability.name
    return True


@impl("IBuilderConfig.create_timing_cache")
def _create_timing_cache(sim: Simulation, self: Any, serialized_timing_cache: Any) -> Any:
    data = bytes(serialized_timing_cache)
    prefix = TIMING_MAGIC + sim.version.encode() + b"\n"
    if data and not data.startswith(prefix):
        sim.log(self._sd_state.get("logger"), "ERROR", "timing cache: the header does not match this TensorRT version")
        return None
    return sim.new("ITimingCache", entries=data[len(prefix) :].decode() if data else "")


@impl("IBuilderConfig.set_timing_cache")
def _set_timing_cache(sim: Simulation, self: Any, cache: Any, ignore_mismatch: bool) -> bool:
    if not isinstance(cache, sim.trt.ITimingCache):
        raise TypeError(f"{sim.label}: set_timing_cache takes an ITimingCache")
    self._sd_state["timing_cache"] = cache
    return True


@impl("IBuilderConfig.get_timing_cache")
def _get_timing_cache(sim: Simulation, self: Any) -> Any:
    return self._sd_state.get("timing_cache")


@impl("ITimingCache.serialize")
def _serialize_timing(sim: Simulation, self: Any) -> Any:
    data = TIMING_MAGIC + sim.version.encode() + b"\n" + self._sd_state["entries"].encode()
    return sim.new("IHostMemory", data=data)


_ALGORITHMS = {
    "IInt8EntropyCalibrator2": "EntropyCalibration2",
    "IInt8MinMaxCalibrator": "MinMaxCalibration",
    "IInt8EntropyCalibrator": "EntropyCalibration",
    "IInt8LegacyCalibrator": "LegacyCalibration",
}


def _calibrator_algorithm(sim: Simulation, calibrator: Any) -> str:
    return next(algo for cls, algo in _ALGORITHMS.items() if isinstance(calibrator, getattr(sim.trt, cls)))


def _calibrate(sim: Simulation, logger: Any, calibrator: Any, names: list[str]) -> bool:
    """What TensorRT does with an implicit-INT8 calibrator: a matching cache, or batches."""
    calibrator.get_batch_size()
    cache = calibrator.read_calibration_cache()
    if cache:
        lines = bytes(cache).decode().splitlines()
        expected = f"TRT-{version_tag(sim.version)}-{_calibrator_algorithm(sim, calibrator)}"
        if lines[0] != expected:
            sim.log(logger, "ERROR", "Calibration table does not match calibrator algorithm type")
        elif not all(any(line.startswith(f"{n}:") for line in lines[1:]) for n in names):
            sim.log(logger, "ERROR", f"calibration cache has no scale for {names}")
        else:
            return True
    batch = calibrator.get_batch(names)
    if not batch:
        sim.log(logger, "ERROR", "Calibration failure occurred with no scaling factors detected.")
        return False
    return True


def _progress(sim: Simulation, monitor: Any) -> bool:
    """Drive the monitor through two phases; False when it asked to cancel."""
    monitor.phase_start("Building engine", None, 3)
    monitor.phase_start("Tactic selection", "Building engine", 2)
    for step in range(2):
        if sim.machine.interrupt_at_step == step:
            signal.raise_signal(signal.SIGINT)
        if not monitor.step_complete("Tactic selection", step):
            return False
    monitor.phase_finish("Tactic selection")
    for step in range(3):
        if not monitor.step_complete("Building engine", step):
            return False
    monitor.phase_finish("Building engine")
    return True


@impl("Builder.build_serialized_network")
def _build(sim: Simulation, self: Any, network: Any, config: Any, kernel_text: Any = None) -> Any:
    trt, logger = sim.trt, self._sd_state["logger"]
    net, cfg = network._sd_state, config._sd_state
    flags, errors = cfg["flags"], []
    strongly = sim.is_rtx or _flag_set(sim, network, "STRONGLY_TYPED") or not hasattr(trt.BuilderFlag, "INT8")
    if not net["inputs"]:
        errors.append("the network has no inputs (was the ONNX parsed?)")
    precision_flags = sorted(flags & {"FP16", "INT8", "BF16", "FP8"})
    if strongly and precision_flags:
        errors.append(f"BuilderFlag {', '.join(precision_flags)} is not allowed with a strongly typed network")
    if not strongly and net.get("qdq") and "INT8" not in flags:
        errors.append(
            "Int8 precision has been set for a layer or layer output, but int8 is not configured in the builder"
        )
    tensor = net["inputs"][0] if net["inputs"] else None
    shape = _dims(tensor.shape) if tensor is not None else []
    profile = cfg["profiles"][0].get(tensor.name) if cfg["profiles"] and tensor is not None else None
    if tensor is not None and -1 in shape and profile is None:
        errors.append("Network has dynamic or shape inputs, but no optimization profile has been defined.")
    if profile is not None and any(p[1:] != shape[1:] for p in profile):
        errors.append(f"profile dimensions {profile} do not match input {tensor.name} {shape}")
    on_dla = not sim.is_rtx and cfg.get("default_device_type") == trt.DeviceType.DLA
    dla_core = None
    if on_dla:
        core = config.DLA_core
        if not 0 <= core < sim.machine.dla_cores:
            errors.append(f"DLA core {core} is not available (this device has {sim.machine.dla_cores})")
        reasons = []
        if profile is not None and profile[0] != profile[2]:
            reasons.append("DLA does not support dynamic shapes")
        if not flags & {"FP16", "INT8"}:
            reasons.append("DLA supports only FP16 and INT8 precision")
        if net.get("qdq"):
            reasons.append("DLA does not support explicit quantization (Q/DQ layers)")
        calibrator = cfg.get("int8_calibrator")
        if (
            "INT8" in flags
            and calibrator is not None
            and _calibrator_algorithm(sim, calibrator) != "EntropyCalibration2"
        ):
            reasons.append("DLA needs IInt8EntropyCalibrator2")
        if reasons and "GPU_FALLBACK" not in flags:
            errors += reasons
        elif not reasons:
            dla_core = core
    level = cfg.get("hardware_compatibility_level")
    major = int(sim.machine.compute_capability.split(".")[0])
    if level is not None and level.name == "AMPERE_PLUS" and major < 8:
        errors.append("hardware compatibility AMPERE_PLUS needs an Ampere or later GPU")
    calibrator = cfg.get("int8_calibrator")
    if not errors and "INT8" in flags and not strongly and not net.get("qdq"):
        if calibrator is None:
            errors.append("Calibrator is not being used. Users must provide dynamic range for all tensors.")
        elif not _calibrate(sim, logger, calibrator, [t.name for t in net["inputs"]]):
            return None
    targets = [cfg["targets"].get(i) for i in range(cfg.get("num_compute_capabilities", 0))]
    if sim.is_rtx and (not targets or None in targets):
        errors.append("no compute capability to build for")
    for message in errors:
        sim.log(logger, "ERROR", message)
    if errors:
        return None
    monitor = cfg.get("progress_monitor")
    if monitor is not None and not _progress(sim, monitor):
        sim.log(logger, "ERROR", "the build was cancelled by the progress monitor")
        return None
    if sim.machine.interrupt_at_step is not None and monitor is None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while TensorRT builds, without a monitor to see it
    plan = {
        "release": sim.label,
        "version": sim.version,
        "inputs": [{"name": t.name, "shape": _dims(t.shape), "dtype": t.dtype.name} for t in net["inputs"]],
        "outputs": [{"name": t.name, "shape": _dims(t.shape)} for t in net["outputs"]],
        "profile": profile,
        "flags": sorted(flags),
        "strongly_typed": strongly,
        "dla_core": dla_core,
        "hardware_compat": level.name if level is not None else "NONE",
        "gpu": sim.machine.gpu,
        "compute_capability": sim.machine.compute_capability,
        "targets": [t for t in targets if t],
        "pools": cfg["pools"],
        "opt_level": config.builder_optimization_level,
        "progress_monitor": monitor is not None,
        "preview": sorted(cfg.get("preview", ())),
    }
    if "timing_cache" in cfg:
        cfg["timing_cache"]._sd_state["entries"] += f"{tensor.name if tensor is not None else ''};"
    return sim.new("IHostMemory", data=PLAN_MAGIC + json.dumps(plan).encode())


@impl("IHostMemory.nbytes")
def _nbytes(sim: Simulation, self: Any) -> int:
    return len(self)


@impl("Runtime.deserialize_cuda_engine")
def _deserialize(sim: Simulation, self: Any, serialized_engine: Any) -> Any:
    logger = self._sd_state["logger"]
    data = bytes(serialized_engine)
    if not data.startswith(PLAN_MAGIC):
        sim.log(logger, "ERROR", "the engine plan file is not compatible with this version of TensorRT (magic tag)")
        return None
    plan = json.loads(data[len(PLAN_MAGIC) :])
    built, here = [int(p) for p in plan["version"].split(".")[:3]], [int(p) for p in sim.version.split(".")[:3]]
    compatible = "VERSION_COMPATIBLE" in plan["flags"] and built[:2] <= here[:2]
    if built != here and not compatible:
        sim.log(logger, "ERROR", f"the plan was built by TensorRT {plan['version']}; this is {sim.version}")
        return None
    if "VERSION_COMPATIBLE" in plan["flags"] and not self.engine_host_code_allowed:
        sim.log(logger, "ERROR", "the plan carries lean runtime host code, and engine_host_code_allowed is False")
        return None
    cc = sim.machine.compute_capability
    if plan["targets"] and ("SM" + cc.replace(".", "")) not in plan["targets"]:
        sim.log(logger, "ERROR", f"the plan was built for {plan['targets']}, not for compute capability {cc}")
        return None
    if not plan["targets"] and plan["compute_capability"] != cc and plan["hardware_compat"] == "NONE":
        sim.log(logger, "ERROR", f"the plan was built for compute capability {plan['compute_capability']}")
        return None
    dla_core = None
    if plan["dla_core"] is not None:
        dla_core = self.DLA_core if self.DLA_core >= 0 else 0
        if self.DLA_core < 0:
            sim.log(logger, "WARNING", "DLA core not set on the runtime; using DLA core 0")
    engine = sim.new("ICudaEngine", plan=plan, runtime=self, logger=logger, dla_core=dla_core)
    sim.track(engine, "engines")
    return engine


def _io(engine: Any) -> list[dict[str, Any]]:
    plan = engine._sd_state["plan"]
    return [{**t, "input": True} for t in plan["inputs"]] + [{**t, "input": False} for t in plan["outputs"]]


def _tensor(engine: Any, name: str) -> dict[str, Any]:
    found = [t for t in _io(engine) if t["name"] == name]
    if not found:
        raise KeyError(name)
    return found[0]


@impl("ICudaEngine.num_io_tensors")
def _num_io(sim: Simulation, self: Any) -> int:
    return len(_io(self))


@impl("ICudaEngine.get_tensor_name")
def _tensor_name(sim: Simulation, self: Any, index: int) -> str:
    return _io(self)[index]["name"]


@impl("ICudaEngine.get_tensor_mode")
def _tensor_mode(sim: Simulation, self: Any, name: str) -> Any:
    return sim.trt.TensorIOMode.INPUT if _tensor(self, name)["input"] else sim.trt.TensorIOMode.OUTPUT


@impl("ICudaEngine.get_tensor_dtype")
def _tensor_dtype(sim: Simulation, self: Any, name: str) -> Any:
    return getattr(sim.trt.DataType, _tensor(self, name).get("dtype", "FLOAT"))  # outputs: float32


@impl("ICudaEngine.get_tensor_shape")
def _tensor_shape(sim: Simulation, self: Any, name: str) -> Any:
    return _new_dims(sim, _tensor(self, name)["shape"])


@impl("ICudaEngine.get_tensor_profile_shape")
def _profile_shape(sim: Simulation, self: Any, name: str, profile_index: int) -> list[Any]:
    plan, tensor = self._sd_state["plan"], _tensor(self, name)
    shapes = plan["profile"] or [tensor["shape"]] * 3
    return [_new_dims(sim, s) for s in shapes]


ACTIVATION_BYTES = 1 << 20  # what every stand-in engine asks for as activation memory


@impl("ICudaEngine.device_memory_size", "ICudaEngine.device_memory_size_v2")
def _device_memory_size(sim: Simulation, self: Any) -> int:
    return ACTIVATION_BYTES


@impl("ICudaEngine.create_execution_context")
def _create_context(sim: Simulation, self: Any, strategy: Any = None, runtime_config: Any = None) -> Any:
    user_managed = strategy is not None and strategy.name == "USER_MANAGED"
    return _new_context(sim, self, needs_memory=user_managed)


@impl("ICudaEngine.create_execution_context_without_device_memory")
def _create_context_without_memory(sim: Simulation, self: Any) -> Any:
    return _new_context(sim, self, needs_memory=True)


def _new_context(sim: Simulation, engine: Any, needs_memory: bool) -> Any:
    if sim.machine.context_fails:
        sim.log(engine._sd_state["logger"], "ERROR", "out of memory allocating the execution context")
        return None
    holders = engine._sd_state.setdefault("profile0", weakref.WeakSet())
    profile = -1 if _implicit_profile_release(sim) and len(holders) else 0
    context = sim.new(
        "IExecutionContext",
        engine=engine,
        shape=None,
        addresses={},
        memory=None,
        needs_memory=needs_memory,
        profile=profile,
    )
    if profile == 0:
        holders.add(context)
    sim.track(context, "contexts")
    return context


def _implicit_profile_release(sim: Simulation) -> bool:
    """TensorRT 8.x: only the first context gets profile 0, later ones -1 (NvInferRuntime.h, release/8.6)."""
    return not sim.is_rtx and int(sim.version.split(".")[0]) < 9


@impl("IExecutionContext.active_optimization_profile")
def _active_profile(sim: Simulation, self: Any) -> int:
    return self._sd_state["profile"]


@impl("IExecutionContext.set_optimization_profile_async")
def _set_profile(sim: Simulation, self: Any, profile_index: int, stream_handle: int) -> bool:
    engine = self._sd_state["engine"]
    holders = engine._sd_state["profile0"]
    shared = "PROFILE_SHARING_0806" in engine._sd_state["plan"]["preview"] or not _implicit_profile_release(sim)
    if profile_index != 0 or (any(c is not self for c in holders) and not shared):
        sim.log(engine._sd_state["logger"], "ERROR", f"optimization profile {profile_index} is used by another context")
        return False
    self._sd_state["profile"] = 0
    holders.add(self)
    return True


@impl("IExecutionContext.set_device_memory")
def _set_device_memory(sim: Simulation, self: Any, memory: int, size: int) -> None:
    if size < ACTIVATION_BYTES:
        raise ValueError(f"{sim.label}: set_device_memory size {size} < device_memory_size_v2")
    self._sd_state["memory"] = int(memory)


@impl("IExecutionContext.device_memory=")
def _set_memory_property(sim: Simulation, self: Any, value: int) -> None:
    self._sd_state["memory"] = int(value)


@impl("IExecutionContext.set_input_shape")
def _set_input_shape(sim: Simulation, self: Any, name: str, shape: Any) -> bool:
    engine = self._sd_state["engine"]
    logger = engine._sd_state["logger"]
    dims = _dims(shape)
    if self._sd_state["profile"] < 0:
        sim.log(logger, "ERROR", "setInputShape: no optimization profile is set on this execution context")
        return False
    tensor = next((t for t in _io(engine) if t["name"] == name and t["input"]), None)
    if tensor is None:
        sim.log(logger, "ERROR", f"setInputShape: {name} is not an input")
        return False
    low, _, high = engine._sd_state["plan"]["profile"] or [tensor["shape"]] * 3
    if dims[1:] != tensor["shape"][1:] or not low[0] <= dims[0] <= high[0]:
        sim.log(logger, "ERROR", f"setInputShape: {name} {dims} is outside the optimization profile [{low}, {high}]")
        return False
    captured = self._sd_state.get("captured_rows")
    if captured is not None and dims[0] != captured:
        sim.machine.violations.append(
            f"a context whose work a CUDA graph captured at {captured} rows was set to {dims}"
        )
    self._sd_state["shape"] = dims
    return True


@impl("IExecutionContext.set_tensor_address")
def _set_tensor_address(sim: Simulation, self: Any, name: str, memory: int) -> bool:
    engine = self._sd_state["engine"]
    if not any(t["name"] == name for t in _io(engine)) or int(memory) % 256:
        sim.log(
            engine._sd_state["logger"], "ERROR", f"setTensorAddress: {name} at {int(memory):#x} is not 256-byte aligned"
        )
        return False
    self._sd_state["addresses"][name] = int(memory)
    return True


@impl("IExecutionContext.get_tensor_shape")
def _context_tensor_shape(sim: Simulation, self: Any, name: str) -> Any:
    engine = self._sd_state["engine"]
    tensor = _tensor(engine, name)
    rows = self._sd_state["shape"][0] if self._sd_state["shape"] else -1
    return _new_dims(sim, [rows, *tensor["shape"][1:]])


@impl("IExecutionContext.execute_async_v3")
def _execute(sim: Simulation, self: Any, stream_handle: int) -> bool:
    state = self._sd_state
    engine = state["engine"]
    logger = engine._sd_state["logger"]
    plan = engine._sd_state["plan"]
    names = [t["name"] for t in _io(engine)]
    missing = [n for n in names if n not in state["addresses"]]
    problem = (
        "no optimization profile set"
        if state["profile"] < 0
        else "no input shape set"
        if state["shape"] is None
        else f"no address for {missing}"
        if missing
        else "no device memory set (created without it)"
        if state["needs_memory"] and state["memory"] is None
        else None
    )
    if problem:
        sim.log(logger, "ERROR", f"enqueueV3: {problem}")
        return False
    sim.machine.streams.append(int(stream_handle))
    if int(stream_handle) == 0:
        sim.machine.default_stream_launches += 1
        sim.log(logger, "WARNING", "Using default stream in enqueueV3() may lead to performance issues")
    cuda = sim.machine.cuda
    rows = state["shape"][0]
    features = int(np.prod(plan["inputs"][0]["shape"][1:]))
    classes = plan["outputs"][0]["shape"][-1]
    source, target = state["addresses"][names[0]], state["addresses"][names[1]]
    if sim.machine.execute is not None:
        if sim.machine.execute(source, target, rows, features, classes, int(stream_handle)):
            state["captured_rows"] = rows
        return True
    weights = reference_weights(features, classes)
    captured_rows = rows
    if int(stream_handle) in cuda.capturing:
        state["captured_rows"] = rows

    def kernel() -> None:
        now = state["shape"][0]
        if now != captured_rows:
            raise AssertionError(
                f"a CUDA graph captured for {captured_rows} rows was replayed after its execution context "
                f"was set to {now} rows: the kernels run with state prepared for another shape"
            )
        frames = plan["inputs"][0].get("dtype") == "UINT8"  # raw frames: one byte each
        cuda.check_device_range(source, rows * features * (1 if frames else 4))
        cuda.check_device_range(target, rows * classes * 4)
        element = ctypes.c_uint8 if frames else ctypes.c_float
        x = np.ctypeslib.as_array((element * (rows * features)).from_address(source)).reshape(rows, features)
        out = np.ctypeslib.as_array((ctypes.c_float * (rows * classes)).from_address(target))
        out[:] = (x @ weights).reshape(-1)

    cuda.enqueue(int(stream_handle), kernel)
    return True
