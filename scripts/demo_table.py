"""The README's demo tables, from a run this script repeats.

    .venv/bin/python scripts/demo_table.py --readme README.md         # run the demo, write results, rewrite README
    .venv/bin/python scripts/demo_table.py --readme README.md --check  # exit 1 when README.md differs from the results
    .venv/bin/python scripts/demo_table.py --from-results scripts/results/demo-resnet20-digits.json --readme README.md
    .venv/bin/python scripts/demo_table.py -- --epochs 5                # options after -- go to the demo

Runs ``resnet-deploy demo --json`` (a few minutes on 2 cores; its human output goes to stderr),
then writes OUT/demo-<name>.json (the demo's JSON result with the machine: CPU model, instruction
sets, cores; the commands; the package versions; the git commit) and OUT/demo-<name>.txt (the
README block), and with --readme replaces the block between ``<!-- demo-table:start -->`` and
``<!-- demo-table:end -->``. --from-results renders an earlier results file without running.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resnet_deploy.runtime.machine import describe_isa  # noqa: E402  (light: no torch, no onnx)

START, END = "<!-- demo-table:start -->\n", "<!-- demo-table:end -->"
PACKAGES = ("torch", "onnxruntime", "onnx", "numpy", "tensorrt-rtx", "tensorrt", "resnet-deploy")


class TableError(Exception):
    """A README or results file this script cannot use (one line, exit 2)."""


def describe_machine() -> dict[str, Any]:
    from resnet_deploy.runtime.machine import cpu_flags, cpu_name

    return {
        "cpu": cpu_name(),
        "isa": cpu_flags(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or None, "local_changes": bool(changed)}


def run_demo(out_dir: Path, demo_args: list[str]) -> tuple[dict[str, Any], list[str], float]:
    """The demo's --json result, its command line and its wall time; its human output passes to stderr."""
    command = [sys.executable, "-m", "resnet_deploy", "demo", "--out", str(out_dir), "--json", *demo_args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise TableError(f"the demo failed (exit {done.returncode}); its messages are above")
    shown = ["resnet-deploy", "demo", "--out", "DIR", "--json", *demo_args]
    text = done.stdout
    start = text.find("{\n") if not text.startswith("{") else 0  # anything a native library printed first
    try:
        return json.loads(text[max(start, 0) :]), shown, seconds
    except ValueError:
        raise TableError(f"the demo printed no JSON result: {text[-300:]!r}") from None


def render(results: dict[str, Any]) -> str:
    """The README block (between the markers) for a results file: where and how the numbers were
    measured, then the demo's validation and bench tables as it prints them."""
    from resnet_deploy.evaluate.bench import BenchReport, BenchRow
    from resnet_deploy.evaluate.validate import Score, ValidationReport

    try:
        demo, machine, versions = results["demo"], results["machine"], results["versions"]
        val = demo["validation"]
        validation = ValidationReport(
            dataset=val["dataset"],
            images=val["images"],
            reference=Score(**val["reference"]),
            artifacts=[recorded_artifact(a) for a in val["artifacts"]],
        )
        names = {f.name for f in dataclasses.fields(BenchRow)}
        bench = BenchReport(
            demo["bench"]["machine"],
            [BenchRow(**{k: v for k, v in r.items() if k in names}) for r in demo["bench"]["rows"]],
        )
    except (KeyError, TypeError) as exc:
        raise TableError(f"not a demo_table.py results file: {exc!r} missing or malformed") from None
    gpu = demo["bench"]["machine"].get("gpu")
    isa = describe_isa(machine.get("isa") or [])
    packages = ", ".join(f"{name} {v}" for name, v in versions.items() if v and name != "resnet-deploy")
    engines = ", ".join(Path(e).name for e in demo.get("engines") or []) or "none"
    ref = validation.reference
    lines = [
        f"`{results['command']}` on {machine['cpu']}"
        + (f" ({isa})" if isa else "")
        + f", {machine['cores']} cores, {'GPU ' + gpu if gpu else 'no GPU'}; {packages}.",
        f"The demo (`{' '.join(results['demo_command'])}`) trained {demo['model']} for {demo['epochs']} epochs "
        f"and took {demo['seconds']:.0f} s wall (training {demo['train_seconds']:.0f} s); "
        f"{ref.top1_error:.2f}% top-1 error is {round(ref.top1_error * validation.images / 100)} of "
        f"{validation.images} test images; engines built: {engines}. "
        f"Results: `{results['files']}.{{json,txt}}`.",
        "",
        "```",
        validation.table(),
        "",
        bench.table(),
        "```",
    ]
    return "\n".join(lines) + "\n"


PAIRED_FIELDS = ("worse", "better", "delta_top1_low_pp", "delta_top1_high_pp", "p_value", "significant")


def recorded_artifact(row: dict[str, Any]) -> Any:
    """An artifact's validation row (a ``Score``) from a results file.

    A row recorded before ``validate`` reported paired statistics gets them back only where the row
    settles them: an artifact whose top-1 class matched the reference's on every image was right on
    the same images (0 worse, 0 better). Any other such row cannot be rendered honestly.
    """
    from resnet_deploy.evaluate.paired_stats import change_from_counts
    from resnet_deploy.evaluate.validate import Score

    score = Score(**row)
    if all(name in row for name in PAIRED_FIELDS):
        return score
    if score.top1_agreement != 1.0:
        raise TableError(
            f"{score.artifact} was recorded without its worse/better counts, which its "
            f"{100 * score.top1_agreement:.2f}% top-1 agreement does not settle: measure again"
        )
    score.record_change(change_from_counts(score.images, 0, 0))
    return score


def rewrite_readme(text: str, block: str) -> str:
    """``text`` with the block between the demo-table markers replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise TableError(f"the README needs one {START.strip()} line before one {END} line around the demo table")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + block + END + tail


def results_path(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, help="rewrite the demo-table block of this README")
    parser.add_argument("--check", action="store_true", help="with --readme: exit 1 when its block is stale")
    parser.add_argument("--from-results", type=Path, help="render this results file instead of running the demo")
    parser.add_argument("--name", help="results file name (default demo-<model>-digits)")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results", help="results directory")
    parser.add_argument("--demo-out", type=Path, help="keep the demo's artifacts here (default: a temporary directory)")
    parser.add_argument("demo_args", nargs="*", help="options for resnet-deploy demo, after --")
    args = parser.parse_args(argv)
    try:
        if args.check and not args.readme:
            raise TableError("--check compares a README: give --readme README.md")
        if args.from_results or args.check:
            path = args.from_results or results_path(args.out, args.name or "demo-resnet20-digits")
            try:
                results = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise TableError(f"cannot read results {path}: {exc}") from None
        else:
            results = measure(args)
        block = render(results)
        if args.readme:
            text = args.readme.read_text()
            new = rewrite_readme(text, block)
            if args.check:
                if new != text:
                    print(
                        f"{args.readme}'s demo table is stale: python scripts/demo_table.py --readme {args.readme} "
                        f"--from-results {path} (or without --from-results to measure again)",
                        file=sys.stderr,
                    )
                    return 1
                print(f"{args.readme}'s demo table matches {path}")
                return 0
            if new != text:
                args.readme.write_text(new)
            print(f"wrote the demo table into {args.readme}")
        else:
            print(block, end="")
    except TableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo and write its results (JSON and the rendered block) under ``args.out``."""
    command = " ".join(["python scripts/demo_table.py", *map(shlex.quote, sys.argv[1:])])
    with tempfile.TemporaryDirectory() as tmp:
        demo, demo_command, seconds = run_demo(args.demo_out or Path(tmp) / "demo-out", args.demo_args)
    name = args.name or f"demo-{demo['model']}-digits"
    stem = (args.out / name).resolve()
    results = {
        "name": name,
        "files": str(stem.relative_to(ROOT)) if stem.is_relative_to(ROOT) else str(stem),
        "command": command,
        "demo_command": demo_command,
        "machine": describe_machine(),
        "versions": {**package_versions(), "torch": demo["bench"]["machine"].get("torch") or metadata.version("torch")},
        "git": git_state(),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_seconds": round(seconds, 1),
        "demo": demo,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results_path(args.out, name).write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{name}.txt").write_text(render(results))
    print(f"wrote {results_path(args.out, name)} and {name}.txt", file=sys.stderr)
    return results


if __name__ == "__main__":
    sys.exit(main())
