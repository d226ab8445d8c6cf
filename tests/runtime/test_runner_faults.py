"""The runner's refusals: each fault a user can cause is one ResnetDeployError line saying what is wrong and
what to do, never a raw torch / ONNX Runtime / CUDA exception, a crash half-way or a NaN score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from resnet_deploy.artifacts.onnx_io import check_graph_matches_metadata, write_onnx_metadata
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.errors import ResnetDeployError
from resnet_deploy.runtime import Runner


def one_line_error(info: pytest.ExceptionInfo[ResnetDeployError]) -> str:
    message = str(info.value)
    assert isinstance(info.value, ResnetDeployError) and info.value.exit_code == 2
    assert "\n" not in message and "Traceback" not in message
    return message


def edited(tiny_onnx: Path, out: Path, *, classes: int | None = None, **props: str) -> Path:
    """``tiny_onnx`` with metadata props replaced (and, with ``classes``, a graph computing that many)."""
    import onnx

    if classes is not None:  # a real graph with another number of classes, under the 10-class metadata
        import torch

        from resnet_deploy.convert.export import export_onnx
        from resnet_deploy.models.source import open_model

        torch.manual_seed(0)
        source = open_model(depth=20, input_size=8, num_classes=classes)
        export_onnx(source.model, out, source.metadata, verify=False)
        model = onnx.load(str(out))
        write_onnx_metadata(model, check_graph_matches_metadata(tiny_onnx))
    else:
        model = onnx.load(str(tiny_onnx))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **props})
    onnx.save(model, str(out))
    return out


# -- 1. a graph that contradicts its own metadata ------------------------------------------------------------


def test_a_graph_that_contradicts_its_metadata_is_refused_at_load(tiny_onnx, tmp_path) -> None:
    good = check_graph_matches_metadata(tiny_onnx)
    assert good.config.num_classes == 10 and good.config.input_size == 8
    with Runner.load(tiny_onnx) as runner:
        assert runner.metadata == good

    seven = edited(tiny_onnx, tmp_path / "seven.onnx", classes=7)  # metadata: 10 classes; the graph computes 7
    with pytest.raises(ResnetDeployError) as info:
        Runner.load(seven)
    message = one_line_error(info)
    assert "output 'logits' has shape (batch, 7) but its metadata promises (N, 10)" in message
    assert "re-export it with `resnet-deploy export`" in message
    with pytest.raises(ResnetDeployError, match=r"shape \(batch, 7\) but its metadata promises \(N, 10\)"):
        check_graph_matches_metadata(seven)  # the same check on the file, for build-engine, bench, calibrate

    renamed = edited(tiny_onnx, tmp_path / "renamed.onnx", input_name="images")
    with pytest.raises(ResnetDeployError) as info:
        Runner.load(renamed)
    assert "input is named 'input' but its metadata says input_name 'images'" in one_line_error(info)

    bigger = edited(tiny_onnx, tmp_path / "size.onnx", input_size="16")
    with pytest.raises(ResnetDeployError, match=r"input 'input' has shape \(batch, 3, 8, 8\) but .* \(N, 3, 16, 16\)"):
        Runner.load(bigger)

    import onnx

    proto = onnx.load(str(tiny_onnx))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7  # a declared shape ORT would overrule
    with pytest.raises(ResnetDeployError, match=r"output 'logits' has shape \(batch, 7\)"):
        check_graph_matches_metadata(proto, source="edited.onnx")


def test_logits_of_another_shape_than_the_metadata_promises_are_refused(tiny_onnx) -> None:
    with Runner.load(tiny_onnx) as runner:
        real = runner.backend._infer
        runner.backend._infer = lambda batch: real(batch)[:, :7]  # type: ignore[method-assign]
        with pytest.raises(ResnetDeployError, match=r"returned logits of shape \(2, 7\) .* promises \(2, 10\)"):
            runner.infer(np.zeros((2, 3, 8, 8), np.float32))


# -- 2. metadata values that would give NaN scores or crash classify -----------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("std", "[0.25, 0.0, 0.25]", "metadata 'std' is [0.25, 0.0, 0.25]: every std must be a finite number above 0"),
        ("std", "[0.25, -1, 0.25]", "every std must be a finite number above 0"),
        ("std", "[NaN, 0.25, 0.25]", "metadata 'std' is [nan, 0.25, 0.25]"),
        ("mean", "[Infinity, 0.5, 0.5]", "metadata 'mean' is [inf, 0.5, 0.5]: every mean must be a finite number"),
        ("mean", "[0.5, 0.5]", "metadata 'mean' has 2 values but the model takes 3-channel input"),
        ("mean", '"0.5"', "metadata 'mean' is '\"0.5\"', not a JSON list of numbers"),
        ("class_names", '["a", "b"]', "'class_names' names 2 classes but 'num_classes' is 10"),
        ("class_names", "[1, 2]", "'class_names' is not a JSON list of strings"),
        ("layout", "NHWC", "metadata says layout 'NHWC', but resnet-deploy models take NCHW input"),
    ],
)
def test_metadata_values_that_would_break_classify_are_refused_naming_the_key(tiny_onnx, tmp_path, key, value, words):
    bad = edited(tiny_onnx, tmp_path / "bad.onnx", **{key: value})
    with pytest.raises(ResnetDeployError) as info:
        Runner.load(bad)  # refused at load: classify never runs, so no NaN score can come back
    message = one_line_error(info)
    assert words in message and "re-export" in message


def test_normalising_with_a_zero_std_is_refused_not_nan() -> None:
    from resnet_deploy.models.registry import build_model
    from resnet_deploy.runtime.images import preprocess

    zero = ArtifactMetadata(config=build_model(20, input_size=8).config, mean=(0.5,) * 3, std=(0.25, 0.0, 0.25))
    with pytest.raises(
        ResnetDeployError, match=r"std \[0\.25, 0\.0, 0\.25\]: each must be finite and each std above 0"
    ):
        preprocess([np.full((8, 8, 3), 128, np.uint8)], zero)  # built in code, past from_props' check


def test_non_finite_logits_are_refused_by_classify_and_topk_is_checked(tiny_onnx) -> None:
    with Runner.load(tiny_onnx) as runner:
        image = np.full((8, 8, 3), 100, np.uint8)
        scores = [p.score for p in runner.classify([image], topk=10)[0]]
        assert np.isfinite(scores).all() and sum(scores) == pytest.approx(1.0)
        real = runner.backend._infer

        def nan_in_second_row(batch: np.ndarray) -> np.ndarray:
            logits = real(batch)
            logits[1, 3] = np.nan
            return logits

        runner.backend._infer = nan_in_second_row  # type: ignore[method-assign]
        with pytest.raises(ResnetDeployError, match=r"non-finite logits \(NaN or inf\) for image 1"):
            runner.classify([image, image])
        for topk in (0, 2.5, "3"):
            with pytest.raises(ResnetDeployError, match="topk must be a whole number of at least 1"):
                runner.classify([image], topk=topk)  # type: ignore[arg-type]


# -- 2. images with no pixels -------------------------------------------------------------------------------


def test_images_without_pixels_are_refused_naming_their_size(tiny_onnx) -> None:
    from PIL import Image

    good = np.full((8, 8, 3), 100, np.uint8)
    with Runner.load(tiny_onnx) as runner:
        for image, size in (
            (np.zeros((0, 0, 3), np.uint8), "0x0"),
            (np.zeros((5, 0, 3), np.uint8), "0x5"),
            (np.zeros((0, 7), np.uint8), "7x0"),  # grayscale
            (Image.new("RGB", (0, 4)), "0x4"),
        ):
            with pytest.raises(ResnetDeployError) as info:
                runner.classify([good, image])
            assert f"image 1 is {size} pixels: there is nothing to classify" in one_line_error(info)
        one_pixel = runner.classify([np.full((1, 1, 3), 200, np.uint8)])[0]  # the smallest image is fine
        assert np.isfinite([p.score for p in one_pixel]).all()


# -- 2. ONNX Runtime providers ------------------------------------------------------------------------------


def test_onnx_runtime_providers_must_exist_and_must_not_fall_back(tiny_onnx, monkeypatch) -> None:
    import onnxruntime as ort

    available = ort.get_available_providers()
    with pytest.raises(ResnetDeployError) as info:
        Runner.load(tiny_onnx, providers=["BananaExecutionProvider"])
    message = one_line_error(info)
    assert "provider BananaExecutionProvider is not available" in message
    assert f"(it has {', '.join(available)})" in message
    with pytest.raises(
        ResnetDeployError, match=r"providers is a list of names; pass providers=\['CPUExecutionProvider'\]"
    ):
        Runner.load(tiny_onnx, providers="CPUExecutionProvider")
    with pytest.raises(ResnetDeployError, match="neither a name nor a"):
        Runner.load(tiny_onnx, providers=[3])
    with Runner.load(tiny_onnx, providers=[("CPUExecutionProvider", {})]) as runner:
        assert runner.describe()["providers"] == ["CPUExecutionProvider"]

    # a provider the Python API lists but the session cannot use: ORT warns and runs on the CPU
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*available, "NpuExecutionProvider"])
    with pytest.raises(ResnetDeployError) as info, pytest.warns(UserWarning, match="Npu.* is not in available"):
        Runner.load(tiny_onnx, providers=["NpuExecutionProvider", "CPUExecutionProvider"])
    assert "could not use NpuExecutionProvider for tiny.onnx and fell back to CPUExecutionProvider" in one_line_error(
        info
    )
    with pytest.raises(ResnetDeployError, match="threads must be a whole number of at least 1, got 0"):
        Runner.load(tiny_onnx, threads=0)


# -- 2. errors while running --------------------------------------------------------------------------------


def test_onnx_runtime_errors_while_running_become_one_line(tiny_onnx) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    class Session:  # what ORT raises for input it refuses: a multi-line InvalidArgument
        def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
            raise InvalidArgument(
                "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: input for the "
                "following indices\n index: 0 Got: 3 Expected: 1\n Please fix either the inputs or the model."
            )

    with Runner.load(tiny_onnx) as runner:
        runner.backend.session = Session()  # type: ignore[attr-defined]
        with pytest.raises(ResnetDeployError) as info:
            runner.infer(np.zeros((3, 3, 8, 8), np.float32))
    message = one_line_error(info)
    assert message.startswith("onnxruntime failed to run tiny.onnx on a batch of shape (3, 3, 8, 8)")
    assert "INVALID_ARGUMENT : Got invalid dimensions for input: input for the following indices index: 0" in message
    assert isinstance(info.value.__cause__, InvalidArgument)


def test_a_fixed_batch_onnx_runs_any_batch_size(tiny_onnx, tmp_path) -> None:
    """An export with a static batch of 2 (ORT would raise InvalidArgument for 3) runs in padded chunks."""
    import torch

    from resnet_deploy.convert.export import export_onnx
    from resnet_deploy.models.source import open_model

    torch.manual_seed(0)
    source = open_model(depth=20, input_size=8)
    export_onnx(source.model, tmp_path / "static2.onnx", source.metadata, static_batch=2, verify=False)
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    with Runner.load(tmp_path / "static2.onnx") as fixed, Runner.load(tiny_onnx) as dynamic:
        assert fixed.backend.static_batch == 2 and dynamic.backend.static_batch is None  # type: ignore[attr-defined]
        for n in (1, 2, 3, 5):
            out = fixed.infer(x[:n])
            assert out.shape == (n, 10)
            assert np.allclose(out, dynamic.infer(x[:n]), rtol=1e-4, atol=1e-5)  # same weights: seed 0


# -- 2. PyTorch devices -------------------------------------------------------------------------------------


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    import torch

    from resnet_deploy.models.checkpoint import save_checkpoint
    from resnet_deploy.models.registry import build_model

    torch.manual_seed(0)
    return save_checkpoint(build_model(20, input_size=8), tmp_path / "tiny.pt")


def test_torch_devices_that_cannot_run_are_refused_before_the_checkpoint_is_read(tmp_path, monkeypatch) -> None:
    import torch

    from resnet_deploy.runtime import machine

    garbage = tmp_path / "m.pt"
    garbage.write_bytes(b"not a checkpoint")  # a device error comes first: nothing is read for nothing
    with pytest.raises(ResnetDeployError) as info:
        Runner.load(garbage, device="banana")
    assert "device 'banana' is not a torch device; use 'cpu', 'cuda' or 'cuda:N'" in one_line_error(info)
    with pytest.raises(ResnetDeployError, match="device 'meta' is not one the runner supports"):
        Runner.load(garbage, device="meta")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    cases = [
        (None, 0, "no NVIDIA driver is installed (libcuda does not load)"),
        (12040, 0, "the NVIDIA driver (CUDA 12.4) is installed but sees no GPU"),
        (11040, 1, "built for CUDA 12.4 and this NVIDIA driver supports only CUDA 11.4: update the driver"),
        (12040, 1, "torch cannot initialise CUDA on this GPU"),
    ]
    for driver, gpus, words in cases:
        monkeypatch.setattr(machine, "driver_cuda_version", lambda d=driver: d)
        monkeypatch.setattr(machine, "gpu_count", lambda g=gpus: g)
        with pytest.raises(ResnetDeployError) as info:
            Runner.load(garbage, device="cuda")
        message = one_line_error(info)
        assert message.startswith("device 'cuda' asked for, but ") and words in message
        assert "device='cpu'" in message
        assert ("insufficient" in message.lower()) is False
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ResnetDeployError, match=r"torch .* is a CPU-only build: install a CUDA build of torch"):
        Runner.load(garbage, device="cuda:0")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(
        ResnetDeployError, match=r"device 'cuda:2' asked for, but torch sees 2 GPUs \(cuda:0 to cuda:1\)"
    ):
        Runner.load(garbage, device="cuda:2")


def test_torch_errors_while_running_become_one_line(tiny_checkpoint) -> None:
    import torch

    with Runner.load(tiny_checkpoint, device="cpu", threads=1) as runner:
        x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
        assert runner.infer(x).shape == (2, 10)
        runner.backend.model = torch.nn.Linear(5, 10)  # type: ignore[attr-defined]  # what a broken model raises
        with pytest.raises(ResnetDeployError) as info:
            runner.infer(x)
    message = one_line_error(info)
    assert message.startswith("pytorch failed to run tiny.pt on a batch of shape (2, 3, 8, 8) (")
    assert "cannot be multiplied" in message and isinstance(info.value.__cause__, RuntimeError)


# -- 2. engine sidecars -------------------------------------------------------------------------------------


def write_engine(tmp_path: Path, tiny_onnx: Path, **fields: Any) -> Path:
    """An engine file and a sidecar whose types are right (unless ``fields`` says otherwise)."""
    from resnet_deploy.artifacts.engine_sidecar import EngineSidecar, EngineTargets, sidecar_path
    from resnet_deploy.artifacts.onnx_io import read_onnx_props

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    record = EngineSidecar(
        engine="m.engine",
        engine_bytes=64,
        engine_sha256="0" * 64,
        backend="tensorrt",
        backend_version="10.16.0",
        precision="fp32",
        version_compatible=False,
        hardware_compat="none",
        targets=EngineTargets(gpu="NVIDIA H100", compute_capability="9.0"),
        io={"inputs": [{"name": "input"}], "outputs": [{"name": "logits"}]},
        model=read_onnx_props(str(tiny_onnx)),
        rebuild_command="resnet-deploy build-engine --onnx tiny.onnx",
    )
    meta = record.to_json()
    for key, value in fields.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    sidecar_path(engine).write_text(json.dumps(meta))
    return engine


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"targets": ["9.0"]}, "field 'targets' is a list ([\"9.0\"]) but must be an object"),
        ({"engine_bytes": "64"}, "field 'engine_bytes' is a string (\"64\") but must be a whole number"),
        ({"version_compatible": "yes"}, "field 'version_compatible' is a string (\"yes\") but must be true or false"),
        ({"model": None}, "field 'model' is missing"),
        ({"targets": {"compute_capabilities": "8.9"}}, "field 'targets.compute_capabilities' is a string"),
        ({"targets": {"compute_capabilities": [8.9]}}, "'targets.compute_capabilities' must be a list of compute"),
        ({"targets": {"dla_core": True}}, "field 'targets.dla_core' is true/false (true) but must be a whole number"),
        ({"io": {"inputs": "input"}}, "field 'io.inputs' must be a list of objects with a 'name'"),
    ],
)
def test_sidecar_fields_of_the_wrong_type_are_refused_before_tensorrt(tmp_path, tiny_onnx, fields, words) -> None:
    engine = write_engine(tmp_path, tiny_onnx, **fields)
    with pytest.raises(ResnetDeployError) as info:
        Runner.load(engine)
    message = one_line_error(info)
    assert message.startswith(f"{engine}.json: ") and words in message
    assert "rebuild it: resnet-deploy build-engine --onnx tiny.onnx" in message


def test_options_and_paths_of_the_wrong_type_are_refused(tmp_path, tiny_onnx) -> None:
    engine = write_engine(tmp_path, tiny_onnx)
    with pytest.raises(ResnetDeployError, match="cuda_graph is True or False, not 'yes'"):
        Runner.load(engine, cuda_graph="yes")
    with pytest.raises(ResnetDeployError, match=r"an artifact path is a str or pathlib\.Path, not NoneType"):
        Runner.load(None)  # type: ignore[arg-type]


def test_a_sidecar_model_metadata_with_a_zero_std_is_refused(tmp_path, tiny_onnx) -> None:
    from resnet_deploy.artifacts.onnx_io import read_onnx_props

    model = {**read_onnx_props(str(tiny_onnx)), "std": "[0, 0, 0]"}
    engine = write_engine(tmp_path, tiny_onnx, model=model)
    with pytest.raises(ResnetDeployError, match=r"m\.engine \(its sidecar's model\) metadata 'std' is \[0\.0, 0\.0"):
        Runner.load(engine)
    model["num_classes"] = 5  # not a string: ONNX metadata values always are
    write_engine(tmp_path, tiny_onnx, model=model)
    with pytest.raises(ResnetDeployError, match=r"field 'model\.num_classes' is a number \(5\) but must be a string"):
        Runner.load(engine)


def test_an_engine_that_contradicts_its_sidecar_is_refused_and_freed(tiny_onnx, tmp_path, monkeypatch) -> None:
    from resnet_deploy.artifacts.engine_sidecar import sidecar_path
    from tests.runtime.test_tensorrt_runner import assert_all_freed, build, device

    with device(monkeypatch, "10.16") as (_, cuda, machine):
        engine = build(tiny_onnx, tmp_path / "m.engine", "10.16")
        original = json.loads(sidecar_path(engine).read_text())
        with Runner.load(engine) as runner:
            assert runner.metadata.config.num_classes == 10

        sidecar_path(engine).write_text(json.dumps({**original, "model": {**original["model"], "num_classes": "7"}}))
        with pytest.raises(ResnetDeployError) as info:
            Runner.load(engine)
        message = one_line_error(info)
        assert "output 'logits' has shape (N, 10) but its metadata promises (N, 7)" in message
        assert "rebuild it here: resnet-deploy build-engine" in message
        del info  # its traceback holds the failed load's frames, and so the engine they deserialised
        assert_all_freed(cuda, machine)

        io = {"inputs": [{"name": "images"}], "outputs": original["io"]["outputs"]}
        sidecar_path(engine).write_text(json.dumps({**original, "io": io}))
        with pytest.raises(ResnetDeployError, match=r"sidecar records inputs \['images'\] but the engine has 'input'"):
            Runner.load(engine)
        assert_all_freed(cuda, machine)


# -- 3. no driver is not an old driver -----------------------------------------------------------------------


def test_no_driver_is_never_called_an_insufficient_driver(monkeypatch) -> None:
    from resnet_deploy.runtime import cuda_memory, machine
    from tests.fake_cuda import FakeCudart, cudaError_t

    class NoDevice(FakeCudart):  # a driver that is loaded but sees no GPU (cudaErrorNoDevice)
        def cudaFree(self, pointer: int) -> Any:
            return (cudaError_t.cudaErrorInvalidValue,)

    monkeypatch.setattr(cuda_memory, "_import_pycuda", lambda: None)

    def open_with(bindings: Any, driver: int | None, gpus: int) -> str:
        monkeypatch.setattr(cuda_memory, "_import_cuda_python", lambda: bindings)
        monkeypatch.setattr(cuda_memory, "driver_cuda_version", lambda: driver)
        monkeypatch.setattr(cuda_memory, "gpu_count", lambda: gpus)
        with pytest.raises(cuda_memory.CudaError) as info:
            cuda_memory.open_cuda()
        return one_line_error(info)

    # no libcuda: cuda-bindings >= 12.9 answer cudaErrorInsufficientDriver (35) to every call
    message = open_with(FakeCudart(driver_too_old=True), None, 0)
    assert message.startswith("no usable NVIDIA GPU to run an engine on: no NVIDIA driver is installed")
    assert "insufficient" not in message.lower() and "(35)" not in message
    assert "ONNX Runtime" in message  # what to do without a GPU
    message = open_with(NoDevice(), 12040, 0)
    assert "the NVIDIA driver (CUDA 12.4) is installed but sees no GPU: check CUDA_VISIBLE_DEVICES" in message
    assert "insufficient" not in message.lower()
    message = open_with(FakeCudart(driver_too_old=True), 12000, 1)  # a driver that exists and is older
    assert "cudaErrorInsufficientDriver (35)" in message and "newer than this NVIDIA driver" in message
    assert "update the driver" in message

    monkeypatch.setattr(machine, "driver_cuda_version", lambda: None)
    assert machine.no_gpu_reason() is not None and "no NVIDIA driver is installed" in str(machine.no_gpu_reason())
    monkeypatch.setattr(machine, "driver_cuda_version", lambda: 13000)
    monkeypatch.setattr(machine, "gpu_count", lambda: 0)
    assert "(CUDA 13.0) is installed but sees no GPU" in str(machine.no_gpu_reason())
    monkeypatch.setattr(machine, "gpu_count", lambda: 1)
    assert machine.no_gpu_reason() is None
