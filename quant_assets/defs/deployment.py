"""Deployment in Dagster: ``champion_model`` and its check, the rollback job, and the sensors
that roll back on drift and reload a new champion.

* ``champion_model``: challenger vs champion on unseen data → ``model_config.json``. The asset
  only wires: ``deployment.validate_model.validate_and_deploy`` does the work. Its metadata
  records every decision: the comparison table (markdown), the outcome, the reason, and the
  champion before and after.
* ``champion_file_valid`` verifies that the champion named in the config has a file that exists,
  loads and matches its Keras model; it can also be run on its own (e.g. after a rollback).
* ``drift_rollback_sensor`` → ``rollback_job`` (``deployment.champion.rollback``) when a
  ``drift_report`` decided to roll back; ``champion_reload_sensor`` → a scoring run when the
  champion changed.
"""

import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from quant_assets.defs.configs import config_class, dataclass_values
from quant_assets.defs.images import png_markdown
from quant_assets.defs.metadata import json_value
from quant_assets.deployment import champion
from quant_assets.deployment.backtest_report import backtest_table, headline_metrics, log_backtests
from quant_assets.deployment.decision import DecisionRule, decision_summary
from quant_assets.deployment.holdout_value import DEFAULT_THRESHOLD
from quant_assets.deployment.model_config import file_sha256
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.deployment.scoring import load_validation_set
from quant_assets.deployment.validate_model import ValidationRun, validate_and_deploy
from quant_assets.evaluation.backtest import (
    DEFAULT_COST_BPS,
    DEFAULT_COSTS_BPS,
    BacktestSpec,
    write_equity_curve,
)
from quant_assets.labels import LabelSpec
from quant_assets.models.bundle import ARCHS, latest_bundles, load_bundle
from quant_assets.models.parity import check_bundle
from quant_assets.monitoring.drift_monitor import latest_scored_model
from quant_assets.settings import TRAINING_DATASET, Settings
from quant_assets.storage.database import get_engine

CHECK_CHAMPION_FILE = "champion_file_valid"
DRIFT_REPORT = dg.AssetKey("drift_report")
CHAMPION = dg.AssetKey("champion_model")


def backtest_spec(label_spec: LabelSpec | None, threshold: float, cost_bps: float) -> BacktestSpec:
    """A backtest policy: τ, the labels' horizon and barriers, the grid with ``cost_bps`` in it."""
    costs = tuple(sorted({*DEFAULT_COSTS_BPS, float(cost_bps)}))
    return BacktestSpec.from_label_spec(
        label_spec or LabelSpec(), threshold, costs_bps=costs, default_cost_bps=cost_bps
    )


class _ChampionConfigBase(dg.Config):
    archs: list[str] = Field(default_factory=lambda: list(ARCHS))
    dataset_path: str = Field(
        str(TRAINING_DATASET), description="training dataset, relative to QUANT_HOME"
    )
    segment: str = Field("holdout", description="the dataset segment used for validation")
    auto_recover: bool = True
    sync_mlflow: bool = True
    signal_threshold: float = Field(
        DEFAULT_THRESHOLD, description="backtest: long when p_up − p_down ≥ τ, short when ≤ −τ"
    )
    cost_bps: float = Field(
        DEFAULT_COST_BPS, description="backtest: the default cost, bps per side (in the grid)"
    )

    def backtest_spec(self, label_spec: LabelSpec | None) -> BacktestSpec:
        """The holdout backtest's policy: τ, the labels' horizon and barriers, the costs."""
        return backtest_spec(label_spec, self.signal_threshold, self.cost_bps)

    def rule(self) -> DecisionRule:
        """The DecisionRule these settings describe."""
        return DecisionRule(**dataclass_values(self, DecisionRule))


# The decision rule (DecisionRule's fields and defaults) and where the inputs are.
ChampionConfig = config_class(
    "ChampionConfig",
    DecisionRule,
    base=_ChampionConfigBase,
    descriptions={
        "margin": "min macro-F1 (UP/DOWN) gain, absolute",
        "confidence": "min bootstrap P(challenger better)",
        "block_length": "bootstrap block, in timestamps (≈ label horizon)",
        "baseline_needs_better_log_loss": "first run: also require a lower log-loss than the "
        "baseline",
    },
)


def champion_bundle(settings: Settings) -> Path | None:
    """The bundle folder of the champion in model_config.json; None when there is none."""
    registry = ModelRegistry.from_settings(settings)
    current = registry.champion()
    return None if current is None else registry.bundle_path(current.model)


@dg.asset(
    group_name="deployment",
    deps=[dg.AssetKey("lstm_model"), dg.AssetKey("transformer_model")],
    kinds={"tflite", "json"},
    description=(
        "The deployed model: the newest LSTM and Transformer bundles (challengers) and the "
        "champion in model_config.json are scored with their TFLite files on the unseen "
        "holdout sessions; a challenger replaces the champion only with a macro-F1 (UP/DOWN) "
        "gain ≥ margin and ≥ 95 % paired block-bootstrap confidence (first run: it must beat "
        "the majority baseline). Writes model_config.json atomically under a lock and keeps "
        "the MLflow alias 'champion' in step."
    ),
)
def champion_model(
    context: dg.AssetExecutionContext, config: ChampionConfig
) -> dg.MaterializeResult:
    """Validate the challengers against the champion and update model_config.json."""
    settings = Settings()
    registry = ModelRegistry.from_settings(settings)
    vs = load_validation_set(_home_path(settings, config.dataset_path), config.segment)
    challengers = latest_bundles(settings.models_dir, tuple(config.archs))
    context.log.info(
        f"challengers {sorted(challengers)}; validation: {vs.description}; registry {registry.path}"
    )

    run = validate_and_deploy(
        registry,
        vs,
        challengers,
        config.rule(),
        auto_recover=config.auto_recover,
        tracking_uri=settings.mlflow_tracking_uri if config.sync_mlflow else None,
        backtest=config.backtest_spec(vs.label_spec),
    )
    notes = list(run.notes)
    if config.sync_mlflow and run.backtests:
        run_ids = {n: s.meta.get("mlflow_run_id") for n, s in run.scored.items()}
        with tempfile.TemporaryDirectory() as tmp:
            notes += log_backtests(settings.mlflow_tracking_uri, run.backtests, run_ids, Path(tmp))
    for note in notes:
        context.log.warning(note)
    context.log.info(f"{run.action}: {run.decision.reason}")
    return dg.MaterializeResult(
        metadata=_metadata(run, registry) | _backtest_metadata(run),
        data_version=dg.DataVersion(f"{run.champion_after}@{run.revision}"),
    )


def _home_path(settings: Settings, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else settings.home / p


def _metadata(run: ValidationRun, registry: ModelRegistry) -> dict[str, Any]:
    d = run.decision
    alias = run.alias_sync
    summary = decision_summary(d)
    return {
        "decision": dg.MetadataValue.text(run.action),
        "reason": dg.MetadataValue.text(d.reason),
        "champion_before": dg.MetadataValue.text(run.champion_before or "none"),
        "champion_after": dg.MetadataValue.text(run.champion_after or "none"),
        "comparison": dg.MetadataValue.md(d.comparison_table()),
        "validation_set": dg.MetadataValue.text(run.validation),
        "validation_samples": dg.MetadataValue.int(run.n_samples),
        "class_counts": json_value(summary["class_counts"]),
        "metrics": json_value(summary["metrics"]),
        "bootstrap": json_value(summary["comparisons"]),
        "rule": json_value(summary["rule"]),
        "notes": json_value(run.notes),
        "registry_revision": dg.MetadataValue.int(run.revision),
        "model_config": dg.MetadataValue.path(str(registry.path)),
        "mlflow_alias": dg.MetadataValue.text(
            "not synced" if alias is None else f"{alias.action}: {alias.message}"
        ),
    }


def _backtest_metadata(run: ValidationRun) -> dict[str, Any]:
    """The holdout backtests: the table, each model's equity curve, the figures."""
    if not run.backtests:
        return {"backtest": dg.MetadataValue.text("no holdout backtest")}
    with tempfile.TemporaryDirectory() as tmp:
        curves = "\n\n".join(
            png_markdown(write_equity_curve(r, Path(tmp) / f"{n}.png"), f"{n} equity curve")
            for n, r in run.backtests.items()
        )
    return {
        "backtest": dg.MetadataValue.md(backtest_table(run.backtests) + "\n\n" + curves),
        "backtest_figures": json_value({n: headline_metrics(r) for n, r in run.backtests.items()}),
    }


@dg.asset_check(
    asset=champion_model,
    name=CHECK_CHAMPION_FILE,
    description=(
        "The champion named in model_config.json has a TFLite file that exists, matches the "
        "recorded sha256, loads, returns probabilities and agrees with its Keras model "
        "(max |Δp| ≤ 1e-4 on 32 windows)."
    ),
)
def champion_file_valid(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Check the config's champion file (runs after champion_model or on its own)."""
    registry = ModelRegistry.from_settings(Settings())
    status = registry.status()
    if not status.ok or status.config is None:
        return dg.AssetCheckResult(
            passed=False, metadata={"registry": dg.MetadataValue.text(status.message)}
        )
    champion = status.config.champion
    if champion is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"registry": dg.MetadataValue.text("no champion promoted yet")},
        )
    path = registry.resolve(champion.model)
    sha_ok = champion.model.sha256 is None or (
        path.is_file() and file_sha256(path) == champion.model.sha256
    )
    check = check_bundle(registry.home / champion.model.bundle_dir)
    context.log.info(f"{champion.model.name}: {check.message}")
    return dg.AssetCheckResult(
        passed=check.passed and sha_ok,
        metadata={
            "champion": dg.MetadataValue.text(champion.model.name),
            "path": dg.MetadataValue.path(str(path)),
            "exists": dg.MetadataValue.bool(check.exists),
            "loads": dg.MetadataValue.bool(check.loads),
            "sha256_matches": dg.MetadataValue.bool(sha_ok),
            "parity_max_abs_diff": dg.MetadataValue.text(
                "not measured"
                if check.parity_max_abs_diff is None
                else f"{check.parity_max_abs_diff:.3e}"
            ),
            "message": dg.MetadataValue.text(check.message),
            "metrics_at_promotion": json_value(dict(champion.metrics)),
        },
    )


# --- rollback and reload -----------------------------------------------------------------
class RollbackConfig(dg.Config):
    """Why the rollback happens, and the champion the drift was judged on."""

    reason: str
    expected_champion: str


@dg.op(description="Point model_config.json at the previous stable champion (atomic, locked).")
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig) -> None:
    """Roll back; record the change as a champion_model materialization so the UI shows it."""
    settings = Settings()
    result = champion.rollback(
        ModelRegistry.from_settings(settings),
        config.reason,
        expected_champion=config.expected_champion,
        tracking_uri=settings.mlflow_tracking_uri,
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
    description=(
        "A new champion (promotion or rollback) is scored at once: no restart needed. A "
        "champion_model event that left the serving model as it was (a night that kept it) "
        "requests nothing."
    ),
)
def champion_reload_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """Check the new champion's bundle loads, then request a live scoring run with it."""
    settings = Settings()
    try:
        folder = champion_bundle(settings)
        if folder is None:
            return dg.SkipReason(champion.NO_CHAMPION)
        bundle = load_bundle(folder)
        scored_by = latest_scored_model(get_engine(settings))
    except Exception as err:  # report, never crash the daemon
        return dg.SkipReason(f"error: the champion bundle cannot be loaded: {err}")
    if scored_by == bundle.name:
        return dg.SkipReason(f"{bundle.name} already scores the live window: nothing to reload")
    return dg.RunRequest(
        # one scoring run per champion change (the run that promoted or rolled back)
        run_key=f"reload-{bundle.name}-{asset_event.run_id}",
        asset_selection=[dg.AssetKey("live_predictions")],
        tags={"quant/trigger": "champion_changed", "quant/champion": bundle.name},
    )
