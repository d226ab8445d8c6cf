"""The documentation: the site builds with --strict (no broken link, page or snippet), every command has
a page whose options come from the command, and the README stays short and speaks about the software."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from resnet_deploy.cli import main

ROOT = Path(__file__).resolve().parents[1]
README_LINES = 250
# Words about how or when the project was made, which a page for users never needs.
NARRATION = re.compile(
    r"\b(this|previous|earlier|last) session\b|\b(previous|earlier) runs?\b|\bthis run's\b|\blent\b|\bat commit\b",
    re.IGNORECASE,
)


def test_the_readme_is_short_and_never_narrates() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_LINES
    for word in ("session", "lent", "this run's", "previous run"):
        assert not re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE), word


def test_no_page_docstring_or_result_narrates_how_it_was_made() -> None:
    files = [
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("resnet_deploy/**/*.py"),
        *ROOT.glob("scripts/*.py"),
        *ROOT.glob("scripts/results/*.txt"),
        ROOT / "CHANGELOG.md",
    ]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if NARRATION.search(line)
    ]
    assert found == []


def test_every_command_has_a_page_built_from_the_command() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for name in main.commands:
        page = ROOT / "docs" / "commands" / f"{name}.md"
        assert f"<!-- cli: {name} -->" in page.read_text(), page
        assert f"commands/{name}.md" in nav


def test_the_generated_reference_lists_every_option() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from mkdocs_hooks import command_reference, errors_table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    reference = command_reference("build-engine")
    for flag in ("`--onnx`", "`--int8`", "`--target-cc`", "`--dry-run`", "`--calib-images`", "`--percentile`"):
        assert flag in reference
    assert "UNSET" not in reference and "Sentinel" not in reference
    assert "| `AccuracyGateError` | 4 |" in errors_table()


def test_extras_alias_and_cover_each_other() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["torch"] == extras["train"]
    runtime_extras = ("train", "onnxruntime", "openvino", "rtx", "plot", "simplify", "video", "client")
    every = {dep for name in runtime_extras for dep in extras[name]}
    assert every == set(extras["all"]) and every | set(extras["docs"]) <= set(extras["dev"])
    # scripts/_venv.sh skips installing an extra that [dev] holds: each it names must be inside [dev]
    held = re.search(r'dev_holds=" ([\w ]+) "', (ROOT / "scripts" / "_venv.sh").read_text())
    assert held and all(set(extras[name]) <= set(extras["dev"]) for name in held.group(1).split())


@pytest.mark.skipif(not __import__("importlib").util.find_spec("mkdocs"), reason="needs the [docs] extra")
def test_the_site_builds_strict(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's notice about MkDocs 2
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    page = (tmp_path / "site" / "commands" / "validate" / "index.html").read_text()
    assert "--max-top1-drop" in page and "<table>" in page
    assert (tmp_path / "site" / "api" / "runner" / "index.html").is_file()
