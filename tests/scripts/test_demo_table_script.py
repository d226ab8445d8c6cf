"""scripts/demo_table.py: the README's demo block is rendered from a results file, and only the block
between its markers is rewritten. A synthetic results file stands in for a demo run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from resnet_deploy.evaluate.bench import BenchReport, BenchRow
from resnet_deploy.evaluate.paired_stats import change_from_counts
from resnet_deploy.evaluate.validate import Score
from tests.factories import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo_table.py"


@pytest.fixture(scope="module")
def script():
    return load_script("demo_table")


def synthetic_results() -> dict:
    ref = Score("model.pt", "pytorch", "fp32", images=360, top1_error=100 * 5 / 360, images_per_second=700)
    int8 = Score(
        "resnet20.int8.onnx", "onnxruntime", "int8", 360, 100 * 6 / 360, 0.0, 100 / 360, 0.0, 0.9944, 0.8, 0.07
    )
    int8.record_change(change_from_counts(360, 1, 0))
    row = dict(backend="pytorch", precision="fp32", p90_ms=5.5, p99_ms=6.0, mean_ms=5.2, iters=15, iqr_ms=0.5)
    bench = BenchReport(
        {"cpu": "Test CPU", "torch": "2.14.1+cu130", "gpu": None},
        [
            BenchRow("model.pt", batch=1, p50_ms=5.0, images_per_second=200.0, max_ms=6.0, **row),
            BenchRow("resnet20.int8.onnx", batch=1, p50_ms=2.5, images_per_second=400.0, max_ms=9.0, **row),
        ],
    )
    demo = {
        "ok": True,
        "model": "resnet20",
        "epochs": 20,
        "validation": {
            "dataset": "digits",
            "images": 360,
            "machine": "",
            "seconds": 1.0,
            "reference": asdict(ref),
            "artifacts": [asdict(int8)],
        },
        "engines": ["/tmp/x/resnet20.int8.engine"],
        "bench": bench.to_dict(),
        "seconds": 151.4,
        "train_seconds": 88.6,
    }
    return {
        "name": "demo-resnet20-digits",
        "files": "scripts/results/demo-resnet20-digits",
        "command": "python scripts/demo_table.py --readme README.md",
        "demo_command": ["resnet-deploy", "demo", "--out", "DIR", "--json"],
        "machine": {"cpu": "Test CPU", "isa": ["avx2", "fma", "avx512f", "avx512_vnni"], "cores": 2},
        "versions": {"torch": "2.14.1+cu130", "onnxruntime": "1.32.0", "tensorrt-rtx": "1.7.1.116", "tensorrt": None},
        "git": {"commit": "0123456789abcdef", "local_changes": False},
        "demo": demo,
    }


def test_block_names_machine_versions_and_numbers(script) -> None:
    block = script.render(synthetic_results())
    lines = block.splitlines()
    assert lines[0] == (
        "`python scripts/demo_table.py --readme README.md` on Test CPU "
        "(AVX2, FMA, AVX-512F, AVX-512 VNNI), 2 cores, no GPU; torch 2.14.1+cu130, onnxruntime 1.32.0, "
        "tensorrt-rtx 1.7.1.116."
    )
    assert "trained resnet20 for 20 epochs and took 151 s wall (training 89 s)" in lines[1]
    assert "1.39% top-1 error is 5 of 360 test images; engines built: resnet20.int8.engine" in lines[1]
    assert "`scripts/results/demo-resnet20-digits.{json,txt}`" in lines[1]
    assert lines[3] == "```" and lines[-1] == "```" and block.endswith("```\n")
    int8_row = next(line for line in lines if line.startswith("resnet20.int8.onnx") and "pp" in line)
    assert "1.67%" in int8_row and "+0.28 pp [-0.78, +1.56] " in int8_row and "99.44%" in int8_row
    assert int8_row.split()[8] == "1/0" and "(McNemar p < 0.05)." in block
    bench_rows = [line for line in lines if line.startswith(("model.pt ", "resnet20.int8.onnx ")) and "x" in line[-1:]]
    assert bench_rows[1].split()[-3:] == ["20%!", "400.0", "2.00x"]  # max 9.0 ms = 3.6x p50: unstable
    assert "* p99 of N<100 runs is their max (N = 15)" in lines


def test_a_row_recorded_before_paired_statistics(script) -> None:
    """Full agreement settles the counts (0 worse, 0 better); anything less cannot be rendered honestly."""
    results = synthetic_results()
    rows = results["demo"]["validation"]["artifacts"]
    old = {k: v for k, v in rows[0].items() if k not in script.PAIRED_FIELDS}
    rows[:] = [
        {**old, "artifact": "resnet20.onnx", "top1_error": 100 * 5 / 360, "delta_top1_pp": 0.0, "top1_agreement": 1.0}
    ]
    row = next(line for line in script.render(results).splitlines() if line.startswith("resnet20.onnx "))
    assert "+0.00 pp [-1.06, +1.06] " in row and row.split()[8] == "0/0"
    rows[:] = [old]
    with pytest.raises(script.TableError, match=r"resnet20\.int8\.onnx was recorded without its worse/better counts"):
        script.render(results)


def test_vnni_absence_is_named(script) -> None:
    assert script.describe_isa(["avx2", "fma"]) == "AVX2, FMA, no VNNI"
    assert script.describe_isa(["avx2", "avx_vnni"]) == "AVX2, AVX-VNNI"
    assert script.describe_isa(["asimd", "asimddp"]) == "NEON, NEON dot product"


README = "# title\n\nintro\n\n<!-- demo-table:start -->\nold 1.67% table\n<!-- demo-table:end -->\n\nafter\n"


def test_only_the_block_between_the_markers_is_rewritten(script) -> None:
    new = script.rewrite_readme(README, "new block\n")
    assert new == README.replace("old 1.67% table\n", "new block\n")
    assert script.rewrite_readme(new, "new block\n") == new  # idempotent
    for broken in (
        "no markers",
        README.replace("<!-- demo-table:end -->", ""),
        "<!-- demo-table:end -->\n<!-- demo-table:start -->\n",
        README + README,
    ):
        with pytest.raises(script.TableError, match="demo-table:start"):
            script.rewrite_readme(broken, "x\n")


def test_cli_from_results_rewrites_and_checks_the_readme(script, tmp_path, capsys) -> None:
    results, readme = tmp_path / "demo-resnet20-digits.json", tmp_path / "README.md"
    results.write_text(json.dumps(synthetic_results()))
    readme.write_text(README)
    check = ["--from-results", str(results), "--readme", str(readme), "--check"]
    assert script.main(check) == 1  # the old table is stale
    assert readme.read_text() == README
    assert script.main(["--from-results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n<!-- demo-table:start -->\n`python scripts/demo_table.py")
    assert text.endswith("```\n<!-- demo-table:end -->\n\nafter\n") and "old 1.67%" not in text
    assert script.main(check) == 0
    capsys.readouterr()
    readme.write_text("no markers\n")
    assert script.main(["--from-results", str(results), "--readme", str(readme)]) == 2
    assert capsys.readouterr().err.startswith("error: the README needs one <!-- demo-table:start --> line")
    results.write_text(json.dumps({"demo": {}}))
    assert script.main(["--from-results", str(results)]) == 2
    assert "not a demo_table.py results file" in capsys.readouterr().err


def test_readme_block_matches_the_recorded_run(script) -> None:
    """Once README.md carries the markers, its block is the render of scripts/results/demo-*.json."""
    readme = (ROOT / "README.md").read_text()
    if script.START not in readme:
        pytest.skip("README.md has no demo-table markers yet")
    recorded = sorted((ROOT / "scripts" / "results").glob("demo-*.json"))
    assert recorded, "README.md has a demo table but scripts/results has no demo-*.json behind it"
    blocks = [script.render(json.loads(path.read_text())) for path in recorded]
    assert readme.split(script.START, 1)[1].split(script.END, 1)[0] in blocks, (
        "README demo table is stale: python scripts/demo_table.py --readme README.md --from-results "
        "scripts/results/demo-resnet20-digits.json (or without --from-results to measure again)"
    )
