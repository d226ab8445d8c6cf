"""The pipeline layer from Python, without the CLI: what the commands call, with the same guarantees."""

from __future__ import annotations

import pytest

from resnet_deploy.artifacts import ModelSpec
from resnet_deploy.errors import OutputPathError, UnknownModelError
from resnet_deploy.pipeline import export_model


class Collected:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def say(self, message: str = "") -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def export(out: Collected, path, **options):
    spec = ModelSpec(**options)
    return export_model(
        out, None, str(path), opset=None, static_batch=None, simplify=False, verify=False, tolerance=None, spec=spec
    )


def test_export_model_reports_through_its_messages_and_plans_its_output(tmp_path) -> None:
    out = Collected()
    result = export(out, tmp_path / "r20.onnx", depth=20, input_size=8)
    assert result.path == tmp_path / "r20.onnx" and result.path.is_file()
    assert out.warnings and "seed 0" in out.warnings[0]
    assert out.lines and out.lines[-1].startswith("exported resnet20 ->")
    mine = tmp_path / "mine.onnx"
    mine.write_text("not ours")
    with pytest.raises(OutputPathError, match="pass --overwrite"):
        export(Collected(), mine, depth=20, input_size=8)
    assert mine.read_text() == "not ours"
    with pytest.raises(UnknownModelError):
        export(Collected(), tmp_path / "x.onnx")
