"""Write the README's TensorRT option x release table from the conformance cells.

    python scripts/trt_support_table.py          # rewrite the table in README.md
    python scripts/trt_support_table.py --check  # exit 1 when README.md is stale

The cells are those ``tests/engine/test_trt_conformance.py`` pins: every build-engine option
combination run through ``build_engine`` against the strict stand-ins of TensorRT 8.6, 10.3,
10.13, 10.16 and 11.1 and the real TensorRT-RTX (``tests/trt_matrix.py``). About 15 s on 2 cores; it
needs the test environment (pytest, tensorrt-rtx: the ``.venv`` that scripts/test.sh sets up).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
START, END = "<!-- trt-support-table:start -->\n", "<!-- trt-support-table:end -->"


def main(check: bool) -> int:
    import pytest

    from tests.trt_matrix import CASES, COLUMNS, make_inputs, run_case, table

    monkeypatch = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "inputs")
        try:
            cells = {
                (column, case.key): run_case(column, case, inputs, Path(tmp) / column / case.key, monkeypatch)
                for column in COLUMNS
                for case in CASES
            }
        finally:
            monkeypatch.undo()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START.strip()} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    old, tail = rest.split(END, 1)
    new = table(cells)
    if check:
        if old != new:
            print("README.md's TensorRT table is stale: run python scripts/trt_support_table.py", file=sys.stderr)
            return 1
        print("README.md's TensorRT table is current")
        return 0
    readme.write_text(head + START + new + END + tail)
    print(f"wrote the {len(CASES)} x {len(COLUMNS)} table into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
