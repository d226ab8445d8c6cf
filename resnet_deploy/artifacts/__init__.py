"""Every file format resnet-deploy writes and reads, as typed, versioned records (pure Python).

- :class:`ModelSpec` (what a user asks for) and :class:`ResNetConfig` (what it resolves to);
- :class:`Preprocess`, the evaluation preprocessing an artifact records;
- :class:`ArtifactMetadata`, an ONNX file's ``metadata_props`` (schema ``resnet-deploy/N``);
- :class:`EngineSidecar`, the JSON beside every engine (``resnet-deploy-engine/N``);
- :class:`CheckpointMeta`, the JSON beside every checkpoint (``resnet-deploy-checkpoint/N``);
- :class:`RunSetup` and :class:`EpochRecord`, a training run's resumable state and log rows
  (``resnet-deploy-train-state/N``).

A newer format version than this release knows is refused with a message; an older one is read.
Everything above this package (models, export, engine, runtime, ...) imports its records from here,
so the engine builder and the runner share one sidecar type without importing each other.
"""

from __future__ import annotations

from resnet_deploy.artifacts.engine_sidecar import EngineSidecar, EngineTargets
from resnet_deploy.artifacts.model_spec import ModelSpec, ResNetConfig, model_config
from resnet_deploy.artifacts.onnx_metadata import ArtifactMetadata
from resnet_deploy.artifacts.preprocess import Preprocess
from resnet_deploy.artifacts.train_state import EpochRecord, RunSetup

__all__ = [
    "ArtifactMetadata",
    "EngineSidecar",
    "EngineTargets",
    "EpochRecord",
    "ModelSpec",
    "Preprocess",
    "ResNetConfig",
    "RunSetup",
    "model_config",
]
