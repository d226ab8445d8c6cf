"""The pipeline layer from Python, without the CLI: what the commands call, with the same guarantees."""

from __future__ import annotations

import pytest

from resnet_deploy.errors import OutputPathError, UnknownModelError
from resnet_deploy.messages import Recorded
from resnet_deploy.pipeline import ExportJob, plan, run


def export(out: Recorded, path, **options):
    return run(plan(ExportJob.of(output=path, verify=False, **options)), out)


def test_export_job_reports_through_its_messages_and_plans_its_output(tmp_path) -> None:
    out = Recorded()
    result = export(out, tmp_path / "r20.onnx", depth=20, input_size=8)
    assert result.path == tmp_path / "r20.onnx" and result.path.is_file()
    assert out.warnings and "seed 0" in out.warnings[0]
    assert out.lines and out.lines[-1].startswith("exported resnet20 ->")
    mine = tmp_path / "mine.onnx"
    mine.write_text("not ours")
    with pytest.raises(OutputPathError, match="pass `overwrite=True`"):
        export(Recorded(), mine, depth=20, input_size=8)
    assert mine.read_text() == "not ours"
    with pytest.raises(UnknownModelError):
        export(Recorded(), tmp_path / "x.onnx")
