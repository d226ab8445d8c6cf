"""scripts/bench_input_pipeline.py: its arithmetic (stage shares, scaling efficiency, workers needed to feed
a GPU), the JPEG tree it generates, the report naming the machine, and one tiny run end to end."""

from __future__ import annotations

import io
import json

import pytest

from resnet_deploy.runtime.machine import cpu_kind
from tests.factories import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("bench_input_pipeline")


def test_workers_needed_rounds_up_and_counts_the_training_process(script) -> None:
    assert script.workers_needed(2075, 207.5) == 10  # exactly 10, not 11 from float noise
    assert script.workers_needed(2075, 207.0) == 11
    assert script.workers_needed(3000, 250.0) == 12
    assert script.workers_needed(100, 400.0) == 1
    with pytest.raises(ValueError):
        script.workers_needed(2075, 0.0)
    rows = script.feeding([(2075.0, "A100"), (3000.0, "H100")], 300.0)
    assert [(r["gpu"], r["workers"], r["cores"]) for r in rows] == [("A100", 7, 8), ("H100", 10, 11)]


def test_default_gpu_rates_are_one_a100_of_eight_and_an_h100_guess(script) -> None:
    args = script.parse_args([])
    (a100, a100_label), (h100, h100_label) = args.gpu_rate
    assert a100 == 2075.0 and "A100" in a100_label and "16,600" in a100_label
    assert h100 == 3000.0 and "H100" in h100_label and "guess" in h100_label
    assert script.parse_args(["--gpu-rate", "1200=V100", "--gpu-rate", "500"]).gpu_rate == [
        (1200.0, "V100"),
        (500.0, "500 img/s"),
    ]
    assert script.parse_size("500x375:0.35") == (500, 375, 0.35) and script.parse_size("64x48") == (64, 48, 1.0)


def test_stage_shares_sum_to_100_percent_and_give_the_per_worker_rate(script) -> None:
    names = ["read", "decode", script.SEED_STAGE, "PILToTensor", "RandomResizedCrop", "RandomHorizontalFlip"]
    names += ["ToDtype", script.COLLATE_STAGE]
    ms = [0.1, 1.5, 0.3, 0.3, 0.6, 0.1, 0.1, 0.0]
    stages = [{"name": n, "group": script.stage_group(n), "ms": m} for n, m in zip(names, ms, strict=True)]
    assert [s["group"] for s in stages] == [
        "read",
        "decode",
        "other",
        "resize",
        "resize",
        "augment",
        "augment",
        "other",
    ]
    shares = script.stage_shares(stages)
    assert shares["total_ms"] == pytest.approx(3.0)
    assert shares["images_per_second"] == pytest.approx(1000 / 3.0)
    assert sum(s["share"] for s in shares["stages"]) == pytest.approx(1.0)
    assert sum(g["share"] for g in shares["groups"]) == pytest.approx(1.0)
    groups = {g["group"]: g["ms"] for g in shares["groups"]}
    assert groups == pytest.approx({"read": 0.1, "decode": 1.5, "resize": 0.9, "augment": 0.2, "other": 0.3})


def test_transform_steps_follow_the_library_transform_and_reproduce_it(script) -> None:
    """The stages are read from the Compose, not hard-coded, and applied one by one under the library's
    per-image seed they give the composed transform's output exactly."""
    import torch
    from torchvision.transforms import v2

    from resnet_deploy.data.imagefolder import FolderSplit

    transform = FolderSplit.transform(32, train=True)
    steps = script.transform_steps(transform)
    assert [label for label, _ in steps] == [type(t).__name__ for t in transform.transforms]
    assert {"PILToTensor", "RandomResizedCrop", "RandomHorizontalFlip"} <= {label for label, _ in steps}
    assert [script.stage_group(label) for label, _ in steps if label == "RandomResizedCrop"] == ["resize"]
    image = script.photo_like(60, 40, seed=3)
    outputs = []
    for stepwise in (True, False):
        torch.manual_seed(script.library_seed(5, 7))
        x = image
        for _, step in steps if stepwise else [("all", transform)]:
            x = step(x)
        outputs.append(x)
    assert outputs[0].shape == (3, 32, 32) and torch.equal(outputs[0], outputs[1])
    twice = script.transform_steps(v2.Compose([v2.RandomHorizontalFlip(), v2.RandomHorizontalFlip()]))
    assert [label for label, _ in twice] == ["RandomHorizontalFlip #1", "RandomHorizontalFlip #2"]


def test_epoch_summary_leaves_worker_start_up_out_of_the_steady_rate(script) -> None:
    arrivals, counts = [0.5, 0.6, 1.0, 1.4], [8, 8, 8, 4]
    two = script.epoch_summary(arrivals, counts, workers=2)  # both workers' first batches: 0.5 and 0.6 s
    assert two["images"] == 28 and two["first_batch_s"] == 0.5
    assert two["epoch_images_per_second"] == pytest.approx(28 / 1.4)
    assert two["steady_images_per_second"] == pytest.approx((8 + 4) / (1.4 - 0.6))
    main = script.epoch_summary(arrivals, counts, workers=0)
    assert main["steady_images_per_second"] == pytest.approx((8 + 8 + 4) / (1.4 - 0.5))
    few = script.epoch_summary([0.2, 0.4], [8, 8], workers=4)  # too few batches: the whole epoch
    assert few["steady_images_per_second"] == pytest.approx(16 / 0.4)


def _loader_row(workers: int, steady: float, first_epoch: float = 50.0) -> dict:
    epoch = {"steady_images_per_second": steady, "epoch_images_per_second": first_epoch, "first_batch_s": 0.3}
    return {"workers": workers, "epochs": [epoch, epoch | {"first_batch_s": 0.05}], "batch_dtype": "torch.float32"}


def test_scaling_efficiency_against_n_times_one_worker_and_the_machine_capacity(script) -> None:
    rows = [_loader_row(0, 80.0), _loader_row(1, 100.0), _loader_row(2, 180.0), _loader_row(4, 200.0)]
    scaled = {r["workers"]: r for r in script.scaling(rows, {2: 1.5})}
    assert scaled[0]["efficiency"] is None and scaled[1]["efficiency"] == pytest.approx(1.0)
    assert scaled[2]["efficiency"] == pytest.approx(0.9) and scaled[4]["efficiency"] == pytest.approx(0.5)
    assert scaled[2]["of_capacity"] == pytest.approx(1.8 / 1.5) and scaled[4]["of_capacity"] is None
    assert scaled[2]["first_batch_s"] == [0.3, 0.05]
    assert script.scaling([_loader_row(0, 80.0)])[0]["efficiency"] is None  # no 1-worker run
    assert script.capacity(2, 0.1, 0.2) == pytest.approx(1.0)
    assert script.capacity(4, 0.1, 0.1) == pytest.approx(4.0)


def test_other_processes_counts_a_process_that_ended_through_its_parent(script) -> None:
    before = {1: 10.0, 2: 5.0, 3: 2.0}  # 3 is 2's child; it runs 1 s more, ends and is reaped by 2
    after = {1: 12.0, 2: 5.0 + 3.0, 4: 0.5}  # 4 started meanwhile
    busy = script.other_processes(before, after, seconds=2.0)
    assert busy["cores"] == pytest.approx((2.0 + 1.0 + 0.5) / 2.0)
    assert busy["busiest"]["pid"] == 2
    assert script.other_processes(None, after, 2.0) is None


def _result(script, isa: list[str]) -> dict:
    names = ["read", "decode", script.SEED_STAGE, "PILToTensor", "RandomResizedCrop", "RandomHorizontalFlip"]
    stages = [
        {"name": n, "group": script.stage_group(n), "ms": m}
        for n, m in zip(names, [0.1, 1.5, 0.3, 0.3, 0.6, 0.2], strict=True)
    ]
    result = {
        "machine": {
            "cpu": "Test CPU 9000",
            "isa": isa,
            "cores": 2,
            "usable_cores": 2,
            "load_average": [0.1, 0.1, 0.1],
            "torch": "2",
            "torchvision": "0.2",
            "pillow": "11",
            "pillow_simd": False,
            "libjpeg_turbo": "3.0",
            "parallel": [{"processes": 2, "alone_s": 0.1, "together_s": 0.125, "capacity_cores": 1.6}],
            "other_processes": {"seconds": 60.0, "cores": 0.02, "busiest": None},
        },
        "data": {
            "images": 512,
            "classes": 8,
            "source": "generated, seed 0",
            "quality": 90,
            "mean_kb": 110.0,
            "mean_pixels": 180000.0,
            "sizes": {"500x375": 300, "375x500": 212},
        },
        "crop": 224,
        "batch": 64,
        "epochs": 2,
        "gpu_rates": [[2075.0, "A100"], [3000.0, "H100"]],
        "stages": {
            "images": 512,
            "page_cache": "warm",
            "stages": stages,
            "decode_alternative": {"name": "decode_jpeg", "ms": 1.0, "pil_ms": 1.5},
            "seed_alternative": {"name": "torch.manual_seed", "ms": 0.3, "library_ms": 0.01},
            "sample": {"shape": [3, 224, 224], "dtype": "torch.uint8"},
        },
        "loader": [_loader_row(0, 80.0), _loader_row(1, 250.0), _loader_row(2, 400.0)],
    }
    result["summary"] = script.summarize(result)
    return result


def test_report_names_the_cpu_kind_and_instruction_sets_with_its_figures(script) -> None:
    result = _result(script, ["avx2", "fma"])
    s = result["summary"]
    assert s["per_worker_images_per_second"] == 250.0 and "1 worker" in s["per_worker_source"]
    assert [r["workers"] for r in s["workers_needed"]] == [9, 12]  # ceil(2075/250), ceil(3000/250)
    assert s["measured_efficiency"]["efficiency"] == pytest.approx(0.8)
    assert s["measured_efficiency"]["of_capacity"] == pytest.approx(1.6 / 1.6)
    text = script.render(result)
    assert cpu_kind(["avx2", "fma"]) == "avx2"
    assert "Test CPU 9000 (AVX2, FMA, no VNNI; avx2)" in text
    assert text.count("Test CPU 9000") >= 4  # header, stages, loader, workers needed
    assert "2075 img/s, A100: 9 workers, 10 cores" in text and "3000 img/s, H100: 12 workers, 13 cores" in text
    assert "assumes linear scaling (measured here: 80% at 2 workers" in text
    assert "per-worker rate: 333 images/s" in text  # 1000 / 3.0 ms
    assert "not Pillow-SIMD" in text and "libjpeg-turbo 3.0" in text
    assert "[shared:" not in text
    result["loader"][2]["other_processes"] = {"seconds": 3.0, "cores": 0.5, "busiest": None}
    flagged = [line for line in script.render(result).splitlines() if "[shared:" in line]
    assert len(flagged) == 1 and "0.50 cores" in flagged[0] and flagged[0].split()[0] == "2"
    vnni = script.render(_result(script, ["avx2", "fma", "avx512f", "avx512_vnni"]))
    assert "AVX-512 VNNI; avx512-vnni" in vnni and "no VNNI" not in vnni


def test_without_a_one_worker_run_the_stage_rate_is_used(script) -> None:
    result = _result(script, ["avx2"])
    result["loader"] = [_loader_row(0, 80.0)]
    s = script.summarize(result)
    assert s["per_worker_images_per_second"] == pytest.approx(1000 / 3.0) and "stage" in s["per_worker_source"]
    assert s["measured_efficiency"] is None


def test_generated_tree_has_the_requested_sizes_and_labels_and_decodes(script, tmp_path) -> None:
    from PIL import Image

    from resnet_deploy.data.imagefolder import load_imagefolder

    sizes = [(40, 30, 1.0), (30, 40, 1.0)]
    script.generate_tree(tmp_path / "a", images=6, classes=2, val_per_class=1, sizes=sizes, seed=1)
    files = sorted((tmp_path / "a" / "train").glob("*/*.jpg"))
    assert [f.parent.name for f in files] == ["class_000"] * 3 + ["class_001"] * 3
    for f in files:
        with Image.open(f) as image:
            assert image.format == "JPEG" and image.size in {(40, 30), (30, 40)}
            assert image.convert("RGB").getextrema() != ((0, 0), (0, 0), (0, 0))
    described = script.describe_tree(tmp_path / "a")
    assert described["images"] == 6 and described["classes"] == 2 and described["val_images"] == 2
    assert described["mean_pixels"] == 1200 and sum(described["sizes"].values()) == 6
    data = load_imagefolder(tmp_path / "a")
    assert data.class_names == ("class_000", "class_001") and len(data.train) == 6 and len(data.test) == 2
    batch = next(data.train.batches(6, size=16))
    assert batch.images.shape == (6, 3, 16, 16) and sorted(batch.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    script.generate_tree(tmp_path / "b", images=6, classes=2, val_per_class=1, sizes=sizes, seed=1)
    assert [f.read_bytes() for f in files] == [
        f.read_bytes() for f in sorted((tmp_path / "b" / "train").glob("*/*.jpg"))
    ]  # seeded


def test_generated_jpegs_compress_like_imagenet_photos(script) -> None:
    """500x375 at quality 90: ImageNet's typical file is ~110 KB."""
    data = io.BytesIO()
    script.photo_like(500, 375, seed=0).save(data, "JPEG", quality=90)
    assert 80_000 < len(data.getvalue()) < 150_000
    drawn = script.draw_sizes(400, script.SIZES, seed=0)
    assert set(drawn) == {(w, h) for w, h, _ in script.SIZES}
    assert drawn.count((500, 375)) > drawn.count((500, 500))  # 35% vs 10%


def test_tiny_run_end_to_end_writes_every_section(script, tmp_path, capsys) -> None:
    out = tmp_path / "results"
    argv = ["--data", str(tmp_path / "tree"), "--images", "16", "--classes", "2", "--sizes", "64x48", "48x64"]
    assert script.main([*argv, "--max-workers", "1", "--batch", "8", "--passes", "1", "--out", str(out)]) == 0
    kind = cpu_kind(script.machine()["isa"])
    result = json.loads((out / f"input-pipeline-{kind}.json").read_text())
    assert {"machine", "data", "crop", "batch", "gpu_rates", "stages", "loader", "summary"} <= set(result)
    assert result["data"]["images"] == 16 and result["data"]["source"].startswith("generated")
    assert result["stages"]["images"] == 16 and all(s["ms"] >= 0 for s in result["stages"]["stages"])
    assert {s["group"] for s in result["stages"]["stages"]} >= {"read", "decode", "resize", "augment"}
    assert [r["workers"] for r in result["loader"]] == [0, 1]
    for row in result["loader"]:
        assert row["skipped"] == 0 and [e["images"] for e in row["epochs"]] == [16, 16]
        assert row["epochs"][-1]["steady_images_per_second"] > 0
    summary = result["summary"]
    assert sum(s["share"] for s in summary["shares"]["stages"]) == pytest.approx(1.0)
    assert [r["gpu_images_per_second"] for r in summary["workers_needed"]] == [2075.0, 3000.0]
    per_worker = summary["per_worker_images_per_second"]
    assert summary["workers_needed"][0]["workers"] == script.workers_needed(2075.0, per_worker)
    text = (out / f"input-pipeline-{kind}.txt").read_text()
    assert text == script.render(result) + "\n" and kind in text
    (out / f"input-pipeline-{kind}.txt").unlink()
    assert script.main(["--render", str(out / f"input-pipeline-{kind}.json")]) == 0
    assert (out / f"input-pipeline-{kind}.txt").read_text() == text
    capsys.readouterr()
    assert script.main([*argv, "--max-workers", "0", "--batch", "8", "--passes", "1", "--no-save"]) == 0
    assert f"reused from {tmp_path / 'tree'}" in capsys.readouterr().out
