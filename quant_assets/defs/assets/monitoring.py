"""Live path in Dagster: ``live_predictions`` (champion TFLite on the newest bars) and
``drift_report`` (data and concept drift of the last hour, with the rollback decision)."""

import base64
import json
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from sqlalchemy import Engine, desc, select

from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.features import create_features
from quant_assets.models.bundle import load_bundle
from quant_assets.models.inference import Predictor
from quant_assets.monitoring.live import live_bars, read_predictions, score_range, write_predictions
from quant_assets.monitoring.reference import ConceptBaseline, ReferenceStats
from quant_assets.monitoring.report import DriftReport, evaluate_window
from quant_assets.monitoring.severity import DriftDecision, DriftState, advance
from quant_assets.monitoring.thresholds import DriftThresholds
from quant_assets.settings import Settings
from quant_assets.storage.database import write_to_db
from quant_assets.storage.schema import drift_reports

GROUP = "monitoring"


class LiveConfig(dg.Config):
    """When the live window ends; empty means now (a replay passes its simulated time)."""

    as_of: str = ""

    def end(self, step_minutes: int = 1) -> pd.Timestamp:
        """The window's end, floored to the evaluation grid."""
        ts = pd.Timestamp(self.as_of) if self.as_of else pd.Timestamp.now(tz="UTC")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.floor(f"{step_minutes}min")


def champion_bundle(settings: Settings) -> Path:
    """The bundle folder of the champion in model_config.json; a clear error when none."""
    registry = ModelRegistry.from_settings(settings)
    champion = registry.champion()
    if champion is None:
        raise dg.Failure("no champion in model_config.json yet: run the nightly training first")
    return registry.bundle_path(champion.model)


@dg.asset(
    group_name=GROUP,
    kinds={"tflite", "sql"},
    deps=[dg.AssetKey("champion_model")],
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
) -> dg.MaterializeResult:
    """Score the minutes of [as_of - window, as_of) with the current champion."""
    settings = database.settings()
    thresholds = DriftThresholds.from_env()
    end = config.end()
    start = end - pd.Timedelta(minutes=thresholds.window_minutes)
    predictor = Predictor.load(champion_bundle(settings))
    bars = live_bars(database.engine, market.tickers, start, end)
    _, scored = score_range(predictor, bars, start, end)
    written = write_predictions(scored, predictor.name, database.engine)
    context.log.info(f"{predictor.name}: scored {len(scored)} minutes, {written} new or changed")
    probs = scored[["p_down", "p_flat", "p_up"]]
    confidence = float(probs.max(axis=1).mean()) if len(scored) else 0.0
    return dg.MaterializeResult(
        metadata={
            "model": predictor.name,
            "window": f"{start.isoformat()} .. {end.isoformat()}",
            "scored_minutes": len(scored),
            "tickers": int(scored["ticker"].nunique()) if len(scored) else 0,
            "mean_confidence": confidence,
            "class_counts": dg.MetadataValue.json(
                {str(k): int(v) for k, v in scored["label"].value_counts().items()}
            ),
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"sql", "scipy"},
    deps=[live_predictions],
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
) -> dg.MaterializeResult:
    """Evaluate the window ending at as_of (on the 10-minute grid) and record the decision."""
    settings = database.settings()
    engine = database.engine
    thresholds = DriftThresholds.from_env()
    end = config.end(thresholds.step_minutes)
    start = end - pd.Timedelta(minutes=thresholds.window_minutes)
    bundle = load_bundle(champion_bundle(settings))
    reference = ReferenceStats.from_dict(bundle.reference_stats)
    baseline = ConceptBaseline.from_dict(bundle.validation_baseline)
    features = window_features(engine, market.tickers, start, end)
    preds = read_predictions(engine, bundle.name, start, end)
    window = features.merge(preds, on=["ticker", "ts"], how="inner")
    probs = window[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    report = evaluate_window(window, reference, thresholds, probs, baseline, evaluated_at=end)
    state = previous_state(engine)
    decision = advance(state, report.level, end, thresholds, model_version=bundle.name)
    _store(engine, bundle.name, report, decision)
    context.log.info(f"{bundle.name} at {end}: {report.reason}; {decision.reason}")
    if decision.rollback:
        context.log.warning(f"ROLLBACK requested for {bundle.name}: {decision.reason}")
    return dg.MaterializeResult(
        metadata={
            "evaluated_at": end.isoformat(),
            "model": bundle.name,
            "level": report.level or "not evaluated",
            "share_drifted": float(report.share_drifted),
            "rows": len(window),
            "rollback": decision.rollback,
            "decision": decision.reason,
            "consecutive_severe": decision.consecutive_severe,
            "report": dg.MetadataValue.md(report.to_markdown() + "\n\n" + _chart_md(report)),
        }
    )


def window_features(
    engine: Engine, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Features of the live window (the same create_features as training)."""
    bars = live_bars(engine, tickers, start, end)
    features = create_features(bars)
    keep = (features["ts"] >= start) & (features["ts"] < end)
    return features[keep].reset_index(drop=True)


def previous_state(engine: Engine) -> DriftState:
    """The decision state after the newest stored evaluation (any model: a rollback changes it)."""
    query = select(drift_reports.c.decision).order_by(desc(drift_reports.c.evaluated_at)).limit(1)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return DriftState()
    return DriftState.from_dict(json.loads(row[0])["state"])


def _store(engine: Engine, model: str, report: DriftReport, decision: DriftDecision) -> None:
    row = pd.DataFrame(
        [
            {
                "evaluated_at": pd.Timestamp(decision.evaluated_at),
                "model": model,
                "level": report.level,
                "share_drifted": float(report.share_drifted),
                "reason": report.reason,
                "report": json.dumps(report.to_dict(), default=str),
                "rollback": bool(decision.rollback),
                "decision": json.dumps(decision.to_dict(), default=str),
            }
        ]
    )
    write_to_db(row, "drift_reports", engine)


def _chart_md(report: DriftReport) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = report.write_chart(Path(tmp) / "drift.png")
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![drift](data:image/png;base64,{encoded})"

