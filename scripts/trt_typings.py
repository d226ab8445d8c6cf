"""Copy tensorrt-stubs into a directory mypy can use, fixing the generated stubs' syntax errors.

tensorrt-stubs installs bare ``tensorrt/`` and ``tensorrt_bindings/`` .pyi trees without a
``py.typed`` marker (so mypy ignores them in site-packages), and its generated signatures contain
parameters named ``in`` and parameters without defaults after ones with defaults, which mypy cannot
parse. This writes a fixed copy to DEST; ``scripts/test.sh`` points MYPYPATH at it.

    python scripts/trt_typings.py DEST
"""

from __future__ import annotations

import re
import shutil
import sys
import sysconfig
from pathlib import Path

PACKAGES = ("tensorrt", "tensorrt_bindings")


def _split_params(params: str) -> list[str]:
    out, depth, current = [], 0, ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        out.append(current)
    return out


def fix_def(line: str) -> str:
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*(->.*)?:\s*)$", line)
    if not match:
        return line
    params = _split_params(match.group(2))
    seen_default = False
    fixed = []
    for param in params:
        param = re.sub(r"^(\s*)in(\s*:)", r"\1in_\2", param)  # `in` is a keyword
        name = param.strip()
        if "=" in name:
            seen_default = True
        elif seen_default and name and not name.startswith("*") and name != "/":
            param = param + " = ..."
        fixed.append(param)
    return match.group(1) + ",".join(fixed) + match.group(3)


def main(dest: str) -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    target = Path(dest)
    for package in PACKAGES:
        source = site / package
        if not (source / "__init__.pyi").is_file():
            sys.exit(f"{source}/__init__.pyi not found: pip install --no-deps tensorrt-stubs first")
        shutil.rmtree(target / package, ignore_errors=True)
        for stub in source.rglob("*.pyi"):
            out = target / package / stub.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(fix_def(line) for line in stub.read_text().splitlines()) + "\n")
    print(f"tensorrt stubs for mypy in {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".venv/typings")
