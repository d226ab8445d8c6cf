"""scripts/bench_train_step.py: its arithmetic (medians, spread, ours / reference ratios), its report (the
device and the CPU's instruction sets named), its result files named by the kind of device, and one tiny
real run on the CPU: both steps train, at positive images/s, on models of torchvision ResNet-50's size."""

from __future__ import annotations

import json
import math

import pytest

from tests.factories import load_script

RESNET50_PARAMETERS = 25_557_032  # torchvision.models.resnet50()


@pytest.fixture(scope="module")
def script():
    return load_script("bench_train_step")


def _row(script, label: str, rates: list[float], *, compiled: bool = False, first: float = 0.5, peak=None) -> dict:
    row = {"label": label, "compiled": compiled, "settings": "trainer", "parameters": RESNET50_PARAMETERS}
    row |= {"first_step_seconds": first, "warmup_seconds": first + 1}
    row |= script.summarize_rates(rates)
    if peak is not None:
        row |= {"peak_memory_gb": peak, "peak_above_resident_gb": peak - 0.6}
    return row


def _result(script, machine: dict, *, compiled: bool = False, small: list[str] | None = None) -> dict:
    gpu = machine["device"] == "cuda"
    rows = {
        "ours": _row(script, "ours (trainer.train_step)", [2900.0, 3000.0, 3100.0], peak=20.0 if gpu else None),
        "reference": _row(script, "torchvision reference", [2800.0, 3000.0, 3200.0], peak=21.0 if gpu else None),
    }
    if compiled:
        rows["ours-compiled"] = _row(script, "ours, torch.compile", [3300.0] * 3, compiled=True, first=61, peak=15.0)
        rows["reference-compiled"] = _row(script, "ref, torch.compile", [3000.0] * 3, compiled=True, first=9, peak=15.5)
    setup = {"batch": 256, "size": 224, "blocks": 3, "steps": 20, "warmup": 10, "cpu_small_defaults": small or []}
    setup["reference"] = script.REFERENCE_SOURCE
    return {"machine": machine, "setup": setup, "variants": rows, "comparisons": script.comparisons(rows)}


CPU = {
    "device": "cpu",
    "cpu": "AMD EPYC 9B14",
    "isa": ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"],
    "instruction_sets": "AVX2, FMA, AVX-512F, AVX-512 VNNI, AVX-512 BF16",
    "cpu_kind": "avx512-vnni",
    "cores": 2,
    "torch_threads": 2,
    "torch": "2.9.0",
    "torchvision": "0.24.0",
    "python": "3.11.7",
    "os": "Linux 6",
}
GPU = CPU | {
    "device": "cuda",
    "gpu": "NVIDIA H100 80GB HBM3",
    "gpu_memory_gb": 79.1,
    "compute_capability": "9.0",
    "cuda": "12.8",
    "cudnn": 91002,
    "driver": "570.124.06",
    "driver_cuda": "12.8",
}


def test_median_spread_and_range_of_the_blocks(script) -> None:
    row = script.summarize_rates([100.0, 120.0, 80.0, 110.0, 90.0])
    assert row["images_per_second"] == 100.0
    assert row["spread"] == pytest.approx((110.0 - 90.0) / 100.0)  # IQR / median
    assert (row["min"], row["max"]) == (80.0, 120.0)
    assert row["blocks"] == [100.0, 120.0, 80.0, 110.0, 90.0]
    assert script.summarize_rates([50.0])["spread"] == 0.0
    with pytest.raises(ValueError):
        script.summarize_rates([])


def test_ratio_is_ours_over_the_reference_of_medians_and_per_paired_block(script) -> None:
    ours = script.summarize_rates([90.0, 110.0, 100.0])
    reference = script.summarize_rates([100.0, 100.0, 125.0])
    c = script.compare(ours, reference)
    assert c["ratio_of_medians"] == pytest.approx(100.0 / 100.0)
    assert c["per_block"] == pytest.approx([0.9, 1.1, 0.8])  # block k against block k
    assert c["per_block_median"] == pytest.approx(0.9)
    assert (c["per_block_min"], c["per_block_max"]) == (pytest.approx(0.8), pytest.approx(1.1))
    assert math.isnan(script.ratio(1.0, 0.0))


def test_comparisons_pair_each_of_ours_with_the_reference_compiled_alike(script) -> None:
    result = _result(script, GPU, compiled=True)
    pairs = [(c["ours"], c["reference"]) for c in result["comparisons"]]
    assert pairs == [("ours", "reference"), ("ours-compiled", "reference-compiled")]
    assert result["comparisons"][1]["ratio_of_medians"] == pytest.approx(3300.0 / 3000.0)


def test_blocks_alternate_the_order_of_the_variants(script) -> None:
    assert [script.rotated(["ours", "ref"], k) for k in range(3)] == [["ours", "ref"], ["ref", "ours"], ["ours", "ref"]]
    four = ["a", "b", "c", "d"]
    assert [script.rotated(four, k)[0] for k in range(4)] == four


def test_cpu_runs_default_to_small_settings_unless_given(script) -> None:
    args = script.parse_args([])
    sizes, small = script.resolve_sizes(args, "cpu")
    assert sizes == script.CPU_DEFAULTS and small == ["batch", "size", "blocks", "steps", "warmup"]
    sizes, small = script.resolve_sizes(script.parse_args(["--batch", "4"]), "cpu")
    assert sizes["batch"] == 4 and "batch" not in small and sizes["size"] == script.CPU_DEFAULTS["size"]
    sizes, small = script.resolve_sizes(args, "cuda")
    assert sizes == {"batch": 256, "size": 224, "blocks": 7, "steps": 20, "warmup": 10} and small == []
    with pytest.raises(SystemExit):
        script.parse_args(["--steps", "0"])


def test_result_files_are_named_by_the_kind_of_device(script, tmp_path) -> None:
    assert script.device_kind(GPU) == "nvidia-h100-80gb-hbm3"
    assert script.device_kind(GPU | {"gpu": "NVIDIA A100-SXM4-80GB"}) == "nvidia-a100-sxm4-80gb"
    assert script.device_kind(CPU) == "cpu-avx512-vnni"
    assert script.device_kind(CPU | {"isa": ["avx2", "fma"]}) == "cpu-avx2"
    assert script.result_stem(tmp_path, GPU) == tmp_path / "train-step-resnet50-nvidia-h100-80gb-hbm3"


def test_gpu_report_names_the_gpu_driver_cpu_and_ratios(script) -> None:
    text = script.render(_result(script, GPU, compiled=True))
    assert "NVIDIA H100 80GB HBM3" in text and "driver 570.124.06 (CUDA 12.8)" in text and "cuDNN 91002" in text
    assert "AMD EPYC 9B14 (AVX2, FMA, AVX-512F, AVX-512 VNNI, AVX-512 BF16)" in text
    assert "torch 2.9.0, torchvision 0.24.0" in text and "bf16 autocast" in text and "batch 256, 224x224" in text
    assert "ours (trainer.train_step) / torchvision reference: 1.000x" in text
    assert "ours, torch.compile / ref, torch.compile: 1.100x" in text
    assert "ours, torch.compile 61.0 s" in text  # compile time, reported apart
    assert "20.00" in text and "max_memory_allocated" in text  # peak memory
    assert "ours (trainer.train_step) 19.40 GB" in text  # and above what every model keeps resident
    assert "25,557,032 (the same model size)" in text


def test_cpu_report_names_the_instruction_sets_and_the_small_settings(script) -> None:
    result = _result(script, CPU, small=["batch", "size"])
    result["setup"] |= {"batch": 8, "size": 64}
    text = script.render(result)
    assert "CPU AMD EPYC 9B14 (AVX2, FMA, AVX-512F, AVX-512 VNNI, AVX-512 BF16; kind avx512-vnni)" in text
    assert "float32" in text and "batch 8, 64x64" in text and "small settings by default (batch 8, size 64)" in text
    assert "max_memory_allocated" not in text


def test_tiny_cpu_run_times_both_steps_on_models_of_resnet50_size(script, tmp_path) -> None:
    argv = ["--device", "cpu", "--batch", "2", "--size", "32", "--blocks", "1", "--steps", "1", "--warmup", "1"]
    assert script.main([*argv, "--out", str(tmp_path)]) == 0
    [path] = tmp_path.glob("train-step-resnet50-cpu-*.json")
    result = json.loads(path.read_text())
    assert path.with_suffix(".txt").read_text().startswith("ResNet-50 training step")
    assert list(result["variants"]) == ["ours", "reference"]
    for row in result["variants"].values():
        assert row["images_per_second"] > 0 and len(row["blocks"]) == 1
        assert row["parameters"] == RESNET50_PARAMETERS  # ours is torchvision's ResNet-50, parameter for parameter
        assert all(math.isfinite(loss) for loss in row["warmup_losses"])
    assert result["setup"]["batch"] == 2 and result["setup"]["cpu_small_defaults"] == []
    assert result["machine"]["device"] == "cpu" and result["machine"]["instruction_sets"] is not None
    [c] = result["comparisons"]
    ours, reference = result["variants"]["ours"], result["variants"]["reference"]
    assert c["ratio_of_medians"] == pytest.approx(ours["images_per_second"] / reference["images_per_second"])
    # the text is the JSON's: --render rewrites the same report
    assert script.main(["--render", str(path)]) == 0
    assert path.with_suffix(".txt").read_text() == script.render(result) + "\n"


@pytest.mark.slow
def test_compiled_variants_run_on_the_cpu(script) -> None:
    """torch.compile on the CPU takes about a minute (inductor's C++ build): slow."""
    args = script.parse_args(["--device", "cpu", "--batch", "2", "--size", "32", "--blocks", "1", "--steps", "1"])
    args.compile, args.warmup = True, 1
    result = script.run(args)
    assert set(result["variants"]) == {"ours", "reference", "ours-compiled", "reference-compiled"}
    assert all(r["images_per_second"] > 0 for r in result["variants"].values())
    assert result["variants"]["ours-compiled"]["first_step_seconds"] > 0
