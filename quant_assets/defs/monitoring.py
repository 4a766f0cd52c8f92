"""Monitoring in Dagster: ``live_predictions`` (champion TFLite on the newest bars),
``drift_report`` (data and concept drift of the last hour, with the rollback decision), and the
``live_monitoring`` job and schedule. The work is ``monitoring.drift_monitor``'s."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from quant_assets.defs.deployment import champion_bundle
from quant_assets.defs.images import png_markdown
from quant_assets.defs.metadata import json_value
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.deployment.champion import NO_CHAMPION
from quant_assets.drift.report import DriftReport
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.market import calendar
from quant_assets.models.bundle import load_bundle
from quant_assets.models.inference import Predictor
from quant_assets.monitoring.drift_monitor import evaluate_drift, score_live_window

GROUP = "monitoring"


class LiveConfig(dg.Config):
    """When the live window ends; empty means now (a replay passes its simulated time)."""

    as_of: str = ""

    def end(self, step_minutes: int = 1) -> pd.Timestamp:
        """The window's end, floored to the evaluation grid."""
        ts = pd.Timestamp(self.as_of) if self.as_of else pd.Timestamp.now(tz="UTC")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.floor(f"{step_minutes}min")


def _skip(context: dg.AssetExecutionContext) -> dg.AssetObservation:
    """No champion: a warning in the run and an observation on the asset, no materialization
    (downstream steps are skipped too)."""
    context.log.warning(NO_CHAMPION)
    return dg.AssetObservation(asset_key=context.asset_key, metadata={"skipped": NO_CHAMPION})


@dg.asset(
    group_name=GROUP,
    kinds={"tflite", "sql"},
    deps=[dg.AssetKey("champion_model")],
    output_required=False,
    description=(
        "The champion's class probabilities for every minute of the last hour of every ticker "
        "(table predictions): the stream concept drift watches and an API would serve."
    ),
)
def live_predictions(
    context: dg.AssetExecutionContext,
    config: LiveConfig,
    database: DatabaseResource,
    market: MarketSourceResource,
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    """Score the minutes of [as_of - window, as_of) with the current champion."""
    folder = champion_bundle(database.settings())
    if folder is None:
        yield _skip(context)
        return
    predictor = Predictor.load(folder)
    live = score_live_window(
        database.engine, predictor, market.tickers, config.end(), DriftThresholds.from_env()
    )
    scored = live.scored
    context.log.info(f"{live.model}: scored {len(scored)} minutes, {live.written} new or changed")
    probs = scored[["p_down", "p_flat", "p_up"]]
    confidence = float(probs.max(axis=1).mean()) if len(scored) else 0.0
    yield dg.MaterializeResult(
        metadata={
            "model": live.model,
            "window": f"{live.start.isoformat()} .. {live.end.isoformat()}",
            "scored_minutes": len(scored),
            "tickers": int(scored["ticker"].nunique()) if len(scored) else 0,
            "mean_confidence": confidence,
            "class_counts": json_value(
                {str(k): int(v) for k, v in scored["label"].value_counts().items()}
            ),
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"sql", "scipy"},
    deps=[live_predictions],
    output_required=False,
    description=(
        "Drift of the last hour against the champion's training data: PSI and an "
        "autocorrelation-aware KS test per feature by time of session, mean confidence and "
        "entropy of the predictions; level none / warn / severe; the persistence and cool-down "
        "state machine decides whether to roll back (drift_rollback_sensor acts on it)."
    ),
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: LiveConfig,
    database: DatabaseResource,
    market: MarketSourceResource,
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    """Evaluate the window ending at as_of (on the 10-minute grid) and record the decision."""
    thresholds = DriftThresholds.from_env()
    folder = champion_bundle(database.settings())
    if folder is None:
        yield _skip(context)
        return
    bundle = load_bundle(folder)
    evaluation = evaluate_drift(
        database.engine, bundle, market.tickers, config.end(thresholds.step_minutes), thresholds
    )
    report, decision = evaluation.report, evaluation.decision
    context.log.info(f"{bundle.name} at {evaluation.end}: {report.reason}; {decision.reason}")
    if decision.rollback:
        context.log.warning(f"ROLLBACK requested for {bundle.name}: {decision.reason}")
    yield dg.MaterializeResult(
        metadata={
            "evaluated_at": evaluation.end.isoformat(),
            "model": bundle.name,
            "level": report.level or "not evaluated",
            "share_drifted": float(report.share_drifted),
            "rows": evaluation.rows,
            "rollback": decision.rollback,
            "decision": decision.reason,
            "consecutive_severe": decision.consecutive_severe,
            "report": dg.MetadataValue.md(report.to_markdown() + "\n\n" + _chart_md(report)),
        }
    )


def _chart_md(report: DriftReport) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return png_markdown(report.write_chart(Path(tmp) / "drift.png"), "drift")


live_monitoring_job = dg.define_asset_job(
    "live_monitoring",
    selection=dg.AssetSelection.assets(live_predictions, drift_report),
    description="Score the last hour with the champion and evaluate drift.",
)


@dg.schedule(
    job=live_monitoring_job,
    cron_schedule="*/10 9-16 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    description="Every 10 minutes while the market is open: score and check drift.",
)
def live_monitoring_schedule(context: dg.ScheduleEvaluationContext):
    """Skip outside regular sessions (holidays, before 09:40, after the close)."""
    now = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC")
    if not calendar.is_open(now - pd.Timedelta(minutes=1)):
        return dg.SkipReason(f"market closed at {now}")
    config = {"as_of": now.isoformat()}
    ops = {name: {"config": config} for name in ("live_predictions", "drift_report")}
    return dg.RunRequest(run_key=f"live-{now.isoformat()}", run_config={"ops": ops})
