"""build-engine against the exact Python API of TensorRT 8.6, 10.3, 10.13, 10.16, 11.1 and TensorRT-RTX.

Every option combination of ``tests/trt_matrix.py`` runs through ``build_engine`` on each release's
strict stand-in (``tests/trt_standin.py``; a member the release lacks raises, as the real module
would), and on the real TensorRT-RTX. Each cell is pinned here: built with the calls that release
needs (what the plan records), or refused before any export or calibration with one line naming
what it needs. The documented table (scripts/results/trt-support.md) is these cells
(``scripts/trt_support_table.py`` writes it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.trt_matrix import CASES, COLUMNS, Cell, Inputs, make_inputs, run_case, table

ROOT = Path(__file__).resolve().parents[2]
FULL = ("8.6", "10.3", "10.13", "10.16", "11.1")
JETPACK = ("8.6", "10.3")
STRONG = ("10.3", "10.13", "10.16", "11.1")  # strongly typed builds from the graph's types

# (case, column) -> "built" / "cancelled" / a regex the one-line refusal must match
EXPECTED: dict[tuple[str, str], str] = {}
for column in COLUMNS:
    for case in CASES:
        EXPECTED[(case.key, column)] = "cancelled" if case.key == "cancel" else "built"
for column in ("11.1", "rtx"):
    EXPECTED[("implicit", column)] = r"`implicit` needs TensorRT 8\.6-10\.x \(implicit INT8 calibrators\); this is"
for column in ("10.13", "10.16", "11.1"):
    for case in ("dla-fp16", "dla-int8", "dla-qdq"):
        EXPECTED[(case, column)] = r"`dla_core` needs TensorRT 8\.6-10\.7 \(JetPack 5/6\); this is tensorrt 1\d\."
for case in ("dla-fp16", "dla-int8", "dla-qdq"):
    EXPECTED[(case, "rtx")] = "`dla_core` needs TensorRT on a Jetson; TensorRT-RTX has no DLA"
for column in JETPACK:
    EXPECTED[("dla-qdq", column)] = r"`dla_core` runs INT8 from a calibration cache only .*`precision=int8` `implicit`"
    EXPECTED[("samecc", column)] = rf"`hardware_compat=same-cc` needs TensorRT >= 10\.9; this is tensorrt {column}\."
EXPECTED[("vc", "rtx")] = "`version_compatible` needs full TensorRT"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("conformance-inputs"))


@pytest.fixture(scope="module")
def cells(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Cell]:
    """Every cell, built once for the module (about 10 s: the RTX column builds for real)."""
    pytest.importorskip("tensorrt_rtx")
    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("conformance")
    try:
        return {
            (column, case.key): run_case(column, case, inputs, root / column / case.key, monkeypatch)
            for column in COLUMNS
            for case in CASES
        }
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("case", [c.key for c in CASES])
def test_every_option_on_every_release_builds_or_is_refused_in_one_line(cells, case: str, column: str) -> None:
    cell = cells[(column, case)]
    expected = EXPECTED[(case, column)]
    if expected in ("built", "cancelled"):
        assert cell.status == expected, cell.message
    else:
        assert cell.status == "refused" and re.search(expected, cell.message), cell.message
        assert "\n" not in cell.message
    if cell.status != "built":
        assert cell.written == [], f"{cell.status} but left {cell.written}"  # refused before any work


def test_precision_comes_from_the_graph_or_from_flags_as_each_release_needs(cells) -> None:
    def typing(column: str, case: str) -> tuple[bool, list[str]]:
        sidecar = cells[(column, case)].sidecar
        return sidecar["strongly_typed"], sidecar["builder_flags"]

    assert typing("8.6", "fp16") == (False, ["FP16"])  # 8.6 has no strongly typed networks
    assert typing("8.6", "int8") == (False, ["INT8"])
    for column in STRONG:
        assert typing(column, "fp16") == (True, []) and typing(column, "int8") == (True, [])
    for column in ("8.6", "10.3", "10.13", "10.16"):
        assert typing(column, "best") == (False, ["INT8", "FP16"])  # best needs both flags up to 10.x
        assert typing(column, "implicit") == (False, ["INT8"])
    assert typing("11.1", "best") == (True, []) and typing("rtx", "best") == (True, [])
    for column in FULL:  # the stand-in plan saw the same: no precision flag on a strongly typed network
        plan = cells[(column, "int8")].plan
        assert plan["strongly_typed"] == (column != "8.6") and ("INT8" in plan["flags"]) == (column == "8.6")


def test_dla_builds_one_static_batch_on_the_core_asked_for(cells) -> None:
    for column in JETPACK:
        fp16 = cells[(column, "dla-fp16")]
        assert fp16.plan["dla_core"] == 0 and fp16.plan["flags"] == ["FP16", "GPU_FALLBACK"]
        assert fp16.plan["profile"] == [[8, 3, 32, 32]] * 3  # DLA has no dynamic shapes
        int8 = cells[(column, "dla-int8")]
        assert int8.plan["dla_core"] == 1 and int8.plan["flags"] == ["INT8"]
        assert int8.sidecar["targets"]["dla_core"] == 1
        assert "--dla-core 1" in int8.sidecar["rebuild_command"]


def test_build_options_reach_the_builder(cells) -> None:
    for column in FULL:  # profile sharing: the runner's one context per graph size needs it on 8.x only
        assert cells[(column, "fp32")].plan["preview"] == (["PROFILE_SHARING_0806"] if column == "8.6" else [])
        assert cells[(column, "opt")].plan["opt_level"] == 5
        assert cells[(column, "workspace")].plan["pools"] == {"WORKSPACE": 256 << 20}
        assert cells[(column, "ampere")].plan["hardware_compat"] == "AMPERE_PLUS"
        assert "VERSION_COMPATIBLE" in cells[(column, "vc")].plan["flags"]
        assert "timing.cache" in cells[(column, "timing")].written
    for column in ("10.13", "10.16", "11.1"):
        assert cells[(column, "samecc")].plan["hardware_compat"] == "SAME_COMPUTE_CAPABILITY"
    assert "timing.cache" not in cells[("rtx", "timing")].written  # TensorRT-RTX keeps none (warned)


def test_rebuild_command_carries_every_option_that_shaped_the_engine(cells) -> None:
    rtx = cells[("rtx", "int8")].sidecar["rebuild_command"]
    assert "--target-cc 8.9" in rtx and "--int8" in rtx and "--backend tensorrt-rtx" in rtx
    assert rtx.split("--onnx ")[1].split()[0].endswith("r20.int8.onnx")  # the Q/DQ graph: no recalibration
    implicit = cells[("10.3", "implicit")].sidecar["rebuild_command"]
    assert "--implicit" in implicit and "--calib-cache" in implicit and implicit.split("--onnx ")[1].startswith("/")
    for case, flag in [
        ("samecc", "--hardware-compat same-cc"),
        ("vc", "--version-compatible"),
        ("opt", "--builder-opt-level 5"),
        ("workspace", "--workspace 256"),
    ]:
        assert flag in cells[("10.16", case)].sidecar["rebuild_command"]


def test_progress_bars_where_there_is_a_monitor_and_ctrl_c_everywhere(cells) -> None:
    assert cells[("8.6", "progress")].status == "built"  # no IProgressMonitor in 8.6: built without bars
    for column in COLUMNS:
        assert cells[(column, "cancel")].written == []


def test_the_documented_table_is_generated_from_these_cells(cells) -> None:
    written = (ROOT / "scripts" / "results" / "trt-support.md").read_text()
    assert written.split("\n", 2)[2] == table(cells), "the table is stale: run `python scripts/trt_support_table.py`"


@pytest.mark.parametrize("release", FULL)
def test_cli_refuses_before_exporting(release, tmp_path, monkeypatch) -> None:
    """An option the release cannot build is refused before the export from --depth starts."""
    from tests.cli_helpers import assert_one_line_error, invoke
    from tests.trt_matrix import environment

    monkeypatch.chdir(tmp_path)
    with environment(release, monkeypatch):
        result = invoke("build-engine", "--depth", "20", "--backend", "tensorrt", "--dla-core", "0", "--int8")
        expected = (
            "runs INT8 from a calibration cache only" if release in JETPACK else "--dla-core needs TensorRT 8.6-10.7"
        )
        assert_one_line_error(result, expected)
    assert list(tmp_path.iterdir()) == []


def test_no_gpu_and_no_target_is_refused_before_minutes_of_export_and_calibration(tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorrt_rtx")
    from resnet_deploy.runtime import machine
    from tests.cli_helpers import assert_one_line_error, invoke

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(machine, "gpu_present", lambda: False)
    result = invoke("build-engine", "--depth", "50", "--int8", "--backend", "tensorrt-rtx")
    assert_one_line_error(result, "no NVIDIA GPU here to build for; name the target GPUs with --target-cc")
    assert list(tmp_path.iterdir()) == []  # no export, no calibration cache


def test_implicit_int8_reads_only_the_caches_calibrate_writes(inputs, tmp_path, monkeypatch) -> None:
    """The legacy calibrators on each release that has them: our caches retagged, foreign ones refused."""
    from resnet_deploy.engine.options import BuildOptionError, BuildOptions, check_combination
    from tests.trt_matrix import environment

    foreign = tmp_path / "legacy.cache"
    foreign.write_text("TRT-8601-LegacyCalibration\ninput: 3c010a14\n")
    minmax = tmp_path / "minmax.cache"
    minmax.write_text(inputs.calib_cache.read_text().replace("EntropyCalibration2", "MinMaxCalibration"))
    for release in ("8.6", "10.3", "10.16"):
        with environment(release, monkeypatch):
            from resnet_deploy.trt.flavours import choose

            backend = choose("tensorrt")
            with pytest.raises(BuildOptionError, match="is a LegacyCalibration cache; `implicit` reads the"):
                check_combination(BuildOptions(precision="int8", implicit=True, calib_cache=str(foreign)), backend)
            dla = BuildOptions(precision="int8", implicit=True, calib_cache=str(minmax), dla_core=0)
            if release in JETPACK:
                with pytest.raises(BuildOptionError, match="DLA takes EntropyCalibration2 scales only"):
                    check_combination(dla, backend)
            from resnet_deploy.pipeline import build_engine

            options = BuildOptions(precision="int8", implicit=True, calib_cache=str(minmax))
            result = build_engine(inputs.fp32, tmp_path / f"{release}.engine", options, backend=backend)
            assert result.strongly_typed is False  # the stand-in checked the retagged MinMax header


def test_standins_are_strict() -> None:
    """The stand-ins fail as the real modules do, so the tests above prove the calls exist."""
    from tests.trt_standin import standin

    trt86, trt103, trt11 = standin("8.6"), standin("10.3"), standin("11.1")
    with pytest.raises(AttributeError):
        trt86.IProgressMonitor  # noqa: B018  (TensorRT 9.0 added it)
    with pytest.raises(AttributeError):
        trt103.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY  # noqa: B018  (10.9)
    with pytest.raises(AttributeError):
        trt11.BuilderFlag.INT8  # noqa: B018  (gone in 11)
    logger = type("L", (trt103.ILogger,), {"__init__": lambda self: trt103.ILogger.__init__(self), "log": print})()
    config = trt103.Builder(logger).create_builder_config()
    with pytest.raises(TypeError):
        config.set_flag(trt103.BuilderFlag.FP16, True)  # one argument in every release
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(pool=trt103.MemoryPoolType.WORKSPACE, size=1)  # the keyword is pool_size
    with pytest.raises(AttributeError):
        config.no_such_setting = 1
    assert trt103.IExecutionContext.device_memory.fget is None  # write-only in every release
    with pytest.raises(TypeError):
        config.progress_monitor = object()  # not an IProgressMonitor
    with pytest.raises(AttributeError):
        trt86.Builder(
            type("L", (trt86.ILogger,), {"__init__": lambda s: trt86.ILogger.__init__(s)})()
        ).create_builder_config().progress_monitor = None


def test_the_real_tensorrt_rtx_has_what_the_runner_and_builder_call() -> None:
    """Introspected TensorRT-RTX: the surface the RTX stand-in is built from, checked by name."""
    rtx = pytest.importorskip("tensorrt_rtx")
    from tests.trt_standin import introspected_surface

    surface = introspected_surface(rtx)
    classes = surface["classes"]
    for cls, members in {
        "Runtime": ["deserialize_cuda_engine", "engine_host_code_allowed"],
        "ICudaEngine": [
            "create_execution_context",
            "get_tensor_profile_shape",
            "num_io_tensors",
            "device_memory_size_v2",
        ],
        "IExecutionContext": ["set_input_shape", "set_tensor_address", "execute_async_v3", "set_device_memory"],
        "IBuilderConfig": ["progress_monitor", "set_compute_capability", "num_compute_capabilities"],
    }.items():
        spec = classes[cls]
        assert all(m in spec["methods"] or m in spec["properties"] for m in members), cls
    assert classes["IExecutionContext"]["methods"]["set_tensor_address"] == [["name", "memory"]]
    assert "IInt8EntropyCalibrator2" not in classes and "INT8" not in surface["enums"]["BuilderFlag"]


@pytest.mark.parametrize("release", FULL)
def test_parser_errors_name_the_node_as_the_release_can(inputs, tmp_path, release, monkeypatch) -> None:
    """ParserError.node_name/node_operator exist from 9.1; 8.6 names the node by its index."""
    import onnx
    from onnx import helper, numpy_helper

    from resnet_deploy.engine.network import EngineBuildError, parse
    from tests.trt_matrix import environment

    model = onnx.load(inputs.qdq)
    model.graph.initializer.append(numpy_helper.from_array(__import__("numpy").zeros(4, "int32"), "bias_int32"))
    model.graph.node.append(
        helper.make_node("DequantizeLinear", ["bias_int32", "input_qdq_scale"], ["b"], name="bias_dq")
    )
    onnx.save(model, tmp_path / "cpu_form.onnx")
    with environment(release, monkeypatch):
        from resnet_deploy.trt.flavours import choose

        with pytest.raises(EngineBuildError) as info:
            parse(choose("tensorrt"), tmp_path / "cpu_form.onnx", strongly_typed=release != "8.6")
    where = f"node #{len(model.graph.node) - 1}" if release == "8.6" else "node 'bias_dq' (DequantizeLinear)"
    assert f"{where}: INT32 DequantizeLinear input is not supported" in str(info.value)
    assert "calibrate's `target=tensorrt`" in str(info.value)
