"""Automatic rollback: the drift sensor, the rollback job, and the champion reload sensor."""

import dagster as dg

from quant_assets.deployment.registry import rollback as rollback_registry
from quant_assets.models.bundle import load_bundle
from quant_assets.settings import Settings

DRIFT_REPORT = dg.AssetKey("drift_report")
CHAMPION = dg.AssetKey("champion_model")


class RollbackConfig(dg.Config):
    """Why the rollback happens, and the champion the drift was judged on."""

    reason: str
    expected_champion: str


@dg.op(description="Point model_config.json at the previous stable champion (atomic, locked).")
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig) -> None:
    """Roll back; record the change as a champion_model materialization so the UI shows it."""
    result = rollback_registry(
        config.reason, expected_champion=config.expected_champion, settings=Settings()
    )
    if result.outcome == "no_previous_version":
        context.log.error(
            f"ALERT: severe persistent drift on {config.expected_champion} but no previous "
            f"stable champion to roll back to ({config.reason}); the champion stays"
        )
    elif result.outcome != "rolled_back":
        context.log.warning(f"rollback not done: {result.outcome} ({config.reason})")
    else:
        context.log.warning(f"rolled back {result.previous} -> {result.current}: {config.reason}")
        context.log_event(
            dg.AssetMaterialization(
                asset_key=CHAMPION,
                description=f"rollback to {result.current}",
                metadata={
                    "action": "rollback",
                    "from": str(result.previous),
                    "champion": str(result.current),
                    "reason": config.reason,
                },
            )
        )


@dg.job(description="Roll the deployed model back to the previous stable champion.")
def rollback_job() -> None:
    """The job drift_rollback_sensor requests."""
    rollback_champion()


@dg.asset_sensor(
    asset_key=DRIFT_REPORT,
    job=rollback_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="On a drift_report whose decision is a rollback, request rollback_job once.",
)
def drift_rollback_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """The persistence (K) and cool-down logic ran in drift_report; this only acts on it."""
    materialization = asset_event.asset_materialization
    if materialization is None:
        return dg.SkipReason("event without a materialization")
    try:
        meta = {k: v.value for k, v in materialization.metadata.items()}
        if not meta.get("rollback"):
            return dg.SkipReason(f"drift level {meta.get('level')}: no rollback")
        model = str(meta["model"])
        evaluated_at = str(meta["evaluated_at"])
        config = RollbackConfig(reason=f"drift: {meta.get('decision')}", expected_champion=model)
    except Exception as err:  # a malformed report must not crash the daemon: report it
        return dg.SkipReason(f"error: unreadable drift_report metadata: {err!r}")
    # The run key makes the daemon request one rollback per (model, evaluation), however often
    # the tick re-reads it; the job itself is compare-and-swap on the expected champion.
    return dg.RunRequest(
        run_key=f"drift-rollback-{model}-{evaluated_at}",
        run_config=dg.RunConfig(ops={"rollback_champion": config}),
        tags={"quant/trigger": "drift"},
    )


@dg.asset_sensor(
    asset_key=CHAMPION,
    job_name="live_monitoring",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A new champion (promotion or rollback) is scored at once: no restart needed.",
)
def champion_reload_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """Check the new champion's bundle loads, then request a live scoring run with it."""
    try:
        from quant_assets.defs.assets.monitoring import champion_bundle

        bundle = load_bundle(champion_bundle(Settings()))
    except Exception as err:  # report, never crash the daemon
        return dg.SkipReason(f"error: the champion bundle cannot be loaded: {err}")
    return dg.RunRequest(
        # one scoring run per champion change (the run that promoted or rolled back)
        run_key=f"reload-{bundle.name}-{asset_event.run_id}",
        asset_selection=[dg.AssetKey("live_predictions")],
        tags={"quant/trigger": "champion_changed", "quant/champion": bundle.name},
    )
