"""The pipeline's orchestration, as a library: which ONNX a job starts from (exported, reused or
given), what is converted or calibrated on the way, the engine build, and the demo that runs it all.

The CLI only parses options and prints; each command calls one function here, and Python code can
too (see the README). Progress goes to ``out`` (anything with ``say`` and ``warn``: :class:`Printed`
prints); failures are the project's errors (``resnet_deploy.errors``).
"""

from __future__ import annotations

from resnet_deploy.messages import Messages, Printed
from resnet_deploy.pipeline.engines import EngineJob, build_engine, derive_graph, plan_engine, run_planned_engine
from resnet_deploy.pipeline.exports import (
    describe_verification,
    export_model,
    export_ours,
    export_planned,
    onnx_from_model_arg,
    plan_model_export,
    random_architecture,
    random_or_none,
)

__all__ = [
    "EngineJob",
    "Messages",
    "Printed",
    "build_engine",
    "derive_graph",
    "describe_verification",
    "export_model",
    "export_ours",
    "export_planned",
    "onnx_from_model_arg",
    "plan_engine",
    "plan_model_export",
    "random_architecture",
    "random_or_none",
    "run_planned_engine",
]
