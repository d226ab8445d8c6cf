"""resnet-deploy: ResNets from definition to validated ONNX and NVIDIA engines.

Every command is a Job with the command line's defaults, planned as data and run as planned::

    from resnet_deploy import CalibrateJob, EngineJob, BuildOptions, Printed, plan, run

    run(plan(CalibrateJob("r20.onnx")), Printed())                  # -> r20.int8.onnx
    job = EngineJob(onnx="r20.onnx", build=BuildOptions(precision="int8", target_cc=("8.9",)))
    result = run(plan(job))                                         # -> r20.int8.engine

    from resnet_deploy import Runner
    with Runner.load("r20.int8.engine") as runner:                  # or the .onnx, on the CPU
        print(runner.classify(images)[0].label)

Importing the package is cheap: torch, onnx and TensorRT load only when a name that needs them is
first used (``resnet_deploy.build_model`` imports torch then; the runner never does).
"""

from __future__ import annotations

from resnet_deploy._lazy import lazy_attributes
from resnet_deploy.errors import ResnetDeployError

__version__ = "0.2.0"

_PIPELINE = "resnet_deploy.pipeline"
_EXPORTS = {
    # the commands, as Jobs
    **dict.fromkeys(
        (
            "ExportJob",
            "ImportJob",
            "InspectJob",
            "ClassifyJob",
            "ConvertJob",
            "CalibrateJob",
            "SensitivityJob",
            "QatJob",
            "EngineJob",
            "ValidateJob",
            "BenchJob",
            "TrainJob",
            "DemoJob",
            "TritonJob",
            "ServeJob",
            "DeepStreamJob",
            "LoadTestJob",
            "Plan",
            "plan",
            "run",
            "build_engine",
        ),
        _PIPELINE,
    ),
    # what the Jobs hold
    "ModelSpec": "resnet_deploy.artifacts.model_spec",
    "ResNetConfig": "resnet_deploy.artifacts.model_spec",
    "model_config": "resnet_deploy.artifacts.model_spec",
    "BuildOptions": "resnet_deploy.engine.options",
    "CalibrationOptions": "resnet_deploy.quantize.options",
    "BudgetOptions": "resnet_deploy.quantize.budget",
    "QatOptions": "resnet_deploy.quantize.qat_options",
    "TrainOptions": "resnet_deploy.training.options",
    # where a job's progress goes
    **dict.fromkeys(("Messages", "Printed", "Recorded", "Silent"), "resnet_deploy.messages"),
    # running a deployed model
    **dict.fromkeys(("Runner", "Prediction", "open_backend"), "resnet_deploy.runtime"),
    # the building blocks
    **dict.fromkeys(("build_model", "get_model", "summarize", "ResNet"), "resnet_deploy.models"),
    "load_checkpoint": "resnet_deploy.models.checkpoint",
    "save_checkpoint": "resnet_deploy.models.checkpoint",
    "export_onnx": "resnet_deploy.convert.export",
    "verify_onnx": "resnet_deploy.convert.verify",
    "read_onnx_metadata": "resnet_deploy.artifacts.onnx_io",
}

__all__ = ["ResnetDeployError", "__version__", *_EXPORTS]
__getattr__ = lazy_attributes(__name__, _EXPORTS)
