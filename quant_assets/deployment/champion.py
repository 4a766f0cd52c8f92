"""Champion operations: promote, roll back or recover the registry, then mirror it in MLflow.

The one path every caller takes to change who serves (``validate_model``, the rollback job, the
``quant registry`` commands, a person's ``promote_manually``): the change is made by
``ModelRegistry`` under its lock, and only after the file is written is the MLflow alias synced
(``mlflow_alias``; a failure there is reported in ``alias_sync``, never raised).
``tracking_uri=None`` leaves MLflow alone.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from quant_assets.deployment.mlflow_alias import sync_champion_alias
from quant_assets.deployment.model_config import ModelFileMissingError, ModelRef
from quant_assets.deployment.outcomes import (
    UNSET,
    AliasSyncResult,
    PromoteResult,
    RecoveryResult,
    RollbackResult,
    Unset,
)
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.models.bundle import load_bundle
from quant_assets.models.parity import check_bundle

NO_CHAMPION = (
    "no champion in model_config.json yet: live scoring and drift are skipped until the "
    "nightly promotes one, or `quant registry promote MODEL --reason …` does"
)


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


def promote_manually(
    registry: ModelRegistry, bundle_dir: Path, *, reason: str, tracking_uri: str | None = None
) -> PromoteResult:
    """A person's deliberate promotion of a bundle (``quant registry promote``), recorded as
    ``manual_promote``. The bundle must load and its TFLite file agree with its Keras model;
    ``ModelFileMissingError`` otherwise."""
    check = check_bundle(bundle_dir)
    if not check.passed:
        raise ModelFileMissingError(f"cannot promote {Path(bundle_dir).name}: {check.message}")
    bundle = load_bundle(bundle_dir)
    test = bundle.metrics.get("test", {})
    result = registry.promote(
        ModelRef.for_bundle(registry.home, Path(bundle_dir)),
        reason=reason,
        metrics={k: float(v) for k, v in test.items() if isinstance(v, int | float)},
        mlflow_run_id=bundle.mlflow_run_id,
        manual=True,
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
