"""Champion operations: promote, roll back or recover the registry, then mirror it in MLflow.

The one path every caller takes to change who serves (``validate_model``, the rollback job, the
``quant registry`` commands): the change is made by ``ModelRegistry`` under its lock, and only
after the file is written is the MLflow alias synced (``mlflow_alias``; a failure there is
reported in ``alias_sync``, never raised). ``tracking_uri=None`` leaves MLflow alone.
"""

from __future__ import annotations

from dataclasses import replace

from quant_assets.deployment.mlflow_alias import sync_champion_alias
from quant_assets.deployment.model_config import ModelRef
from quant_assets.deployment.outcomes import (
    UNSET,
    AliasSyncResult,
    PromoteResult,
    RecoveryResult,
    RollbackResult,
    Unset,
)
from quant_assets.deployment.registry import ModelRegistry


def mirror_alias(registry: ModelRegistry, tracking_uri: str | None) -> AliasSyncResult | None:
    """Point MLflow's ``champion`` aliases at the registry's champion (None: not asked to)."""
    if tracking_uri is None:
        return None
    return sync_champion_alias(registry, tracking_uri=tracking_uri)


def promote(
    registry: ModelRegistry,
    model: ModelRef,
    *,
    reason: str,
    metrics: dict[str, float] | None = None,
    mlflow_run_id: str | None = None,
    expected_champion: str | Unset | None = UNSET,
    tracking_uri: str | None = None,
) -> PromoteResult:
    """``ModelRegistry.promote``, then the MLflow alias when the champion changed."""
    result = registry.promote(
        model,
        reason=reason,
        metrics=metrics,
        mlflow_run_id=mlflow_run_id,
        expected_champion=expected_champion,
    )
    if not result.changed:
        return result
    return replace(result, alias_sync=mirror_alias(registry, tracking_uri))


def rollback(
    registry: ModelRegistry,
    reason: str,
    *,
    expected_champion: str | Unset | None = UNSET,
    tracking_uri: str | None = None,
) -> RollbackResult:
    """Roll back to the previous stable champion (never raises for a bad registry or an empty
    history; see ``RollbackResult.outcome``), then the MLflow alias when it switched."""
    result = registry.rollback(reason, expected_champion=expected_champion)
    if not result.changed:
        return result
    return replace(result, alias_sync=mirror_alias(registry, tracking_uri))


def recover(
    registry: ModelRegistry,
    reason: str = "recovery",
    *,
    force: bool = False,
    allow_empty: bool = False,
    tracking_uri: str | None = None,
) -> RecoveryResult:
    """``ModelRegistry.recover_from_history``, then the MLflow alias when anything changed."""
    result = registry.recover_from_history(reason, force=force, allow_empty=allow_empty)
    if result.outcome == "healthy":
        return result
    return replace(result, alias_sync=mirror_alias(registry, tracking_uri))
