"""Every command as a Job: what it is asked, planned as data, then run exactly as planned.

Each command that does work has a frozen Job record holding the library's defaults (the CLI's are the
same). ``plan(job)`` checks the job and returns its :class:`Plan`: a few typed steps, each naming what
it reads, what it writes and why, every output checked before any work (never over an input, a
companion or a file the command did not make from these inputs). ``run(plan, out)`` runs exactly
those steps and returns the job's typed result. Progress goes to ``out`` (:class:`Printed` prints,
:class:`Recorded` keeps, the default says nothing); failures are the project's errors.

    from resnet_deploy import CalibrateJob, EngineJob, BuildOptions, Printed, plan, run

    planned = plan(CalibrateJob("r20.onnx"))
    print("\\n".join(planned.describe()))          # what it will read and write, and why
    result = run(planned, Printed())               # -> r20.int8.onnx

| command | Job | result |
|---|---|---|
| train | :class:`TrainJob` | ``TrainResult`` |
| export | :class:`ExportJob` | ``ExportResult`` |
| import | :class:`ImportJob` | ``ImportResult`` (ONNX) or ``ExportResult`` (weights) |
| convert | :class:`ConvertJob` | ``Fp16Result`` |
| calibrate | :class:`CalibrateJob` | ``CalibrateResult`` |
| sensitivity | :class:`SensitivityJob` | ``SensitivityReport`` |
| qat | :class:`QatJob` | ``QatResult`` |
| build-engine | :class:`EngineJob` | ``BuildResult`` |
| validate | :class:`ValidateJob` | ``ValidationReport`` |
| bench | :class:`BenchJob` | ``BenchReport`` or ``ThroughputReport`` |
| classify | :class:`ClassifyJob` | ``ClassifyReport`` |
| demo | :class:`DemoJob` | :class:`DemoResult` |
| inspect | :class:`InspectJob` | :class:`Inspection` |
| triton | :class:`TritonJob` | ``TritonReport`` |
| serve | :class:`ServeJob` | ``ServeReport`` |
| load-test | :class:`LoadTestJob` | ``LoadReport`` |
| deepstream | :class:`DeepStreamJob` | ``DeepStreamResult`` |
"""

from __future__ import annotations

from typing import TypeVar

from resnet_deploy.messages import Messages, Printed, Recorded, Silent
from resnet_deploy.pipeline.bench import BenchJob
from resnet_deploy.pipeline.calibrate import CalibrateJob
from resnet_deploy.pipeline.classify import ClassifyJob
from resnet_deploy.pipeline.convert import ConvertJob
from resnet_deploy.pipeline.deepstream import DeepStreamJob, DeepStreamResult
from resnet_deploy.pipeline.demo import DemoJob, DemoResult
from resnet_deploy.pipeline.engine import EngineJob, build_engine
from resnet_deploy.pipeline.export import ExportJob
from resnet_deploy.pipeline.import_model import ImportJob
from resnet_deploy.pipeline.inspect import Inspection, InspectJob
from resnet_deploy.pipeline.job import Job
from resnet_deploy.pipeline.load_test import LoadTestJob
from resnet_deploy.pipeline.plan import Plan, Step, run
from resnet_deploy.pipeline.qat import QatJob
from resnet_deploy.pipeline.sensitivity import SensitivityJob
from resnet_deploy.pipeline.serve import ServeJob, ServeReport
from resnet_deploy.pipeline.train import TrainJob
from resnet_deploy.pipeline.triton import TritonJob, TritonReport
from resnet_deploy.pipeline.validate import ValidateJob

R = TypeVar("R")


def plan(job: Job[R]) -> Plan[R]:
    """``job`` checked and planned: its steps, every output checked before any work."""
    return job.plan()


__all__ = [
    "BenchJob",
    "CalibrateJob",
    "ClassifyJob",
    "ConvertJob",
    "DeepStreamJob",
    "DeepStreamResult",
    "DemoJob",
    "DemoResult",
    "EngineJob",
    "ExportJob",
    "ImportJob",
    "InspectJob",
    "Inspection",
    "Job",
    "LoadTestJob",
    "Messages",
    "Plan",
    "Printed",
    "QatJob",
    "Recorded",
    "SensitivityJob",
    "ServeJob",
    "ServeReport",
    "Silent",
    "Step",
    "TrainJob",
    "TritonJob",
    "TritonReport",
    "ValidateJob",
    "build_engine",
    "plan",
    "run",
]
