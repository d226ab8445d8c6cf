"""scripts/bench_import.py: import and export of the same ResNet timed side by side; the ratio and the machine."""

from __future__ import annotations

import json

from tests.factories import load_script


def test_a_tiny_run_times_both_and_writes_the_ratio_with_the_machine(tmp_path) -> None:
    script = load_script("bench_import")
    assert script.main(["--depth", "18", "--size", "32", "--rounds", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "import-vs-export-resnet18.json").read_text())
    assert [len(result["seconds"][k]) for k in ("export", "import")] == [2, 2]
    assert all(t > 0 for k in ("export", "import") for t in result["seconds"][k])
    medians = result["median_seconds"]
    assert result["ratio_import_over_export"] == medians["import"] / medians["export"]
    text = (tmp_path / "import-vs-export-resnet18.txt").read_text().splitlines()
    assert text[1].startswith("Machine: ") and "cores" in text[1] and text[-1].startswith("import / export: ")
