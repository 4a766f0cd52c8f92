"""Deployment: the ``model_config.json`` registry and champion/challenger validation.

* ``registry``     — the documented, validated ``model_config.json`` (atomic, locked, journaled),
  ``promote``, ``rollback``, ``recover_from_history``.
* ``validation``   — metrics, the paired block bootstrap and the promotion decision (pure numpy).
* ``scoring``      — score model bundles (their TFLite files) on one validation set.
* ``mlflow_alias`` — keep the MLflow registry alias ``champion`` in step with the config.

Importing this package imports neither MLflow nor TensorFlow.
"""

from quant_assets.deployment.registry import (
    ModelConfig,
    ModelRef,
    ModelRegistry,
    PromoteResult,
    RecoveryResult,
    RegistryError,
    RollbackResult,
    promote,
    recover_from_history,
    rollback,
)
from quant_assets.deployment.validation import Decision, DecisionRule, decide

__all__ = [
    "Decision",
    "DecisionRule",
    "ModelConfig",
    "ModelRef",
    "ModelRegistry",
    "PromoteResult",
    "RecoveryResult",
    "RegistryError",
    "RollbackResult",
    "decide",
    "promote",
    "recover_from_history",
    "rollback",
]
