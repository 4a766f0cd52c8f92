"""The drift monitor (the plan's ``drift_monitor.py``): live scores, drift, the rollback decision.

Two steps, each a Dagster asset run every 10 minutes in market hours (no Dagster import here):

* ``score_live_window``: the champion's probabilities for every minute of the live window of
  every ticker, stored in ``predictions`` (the stream concept drift watches). The window is
  built the way training saw its data: earlier sessions come from ``adjusted_bars``
  (total-return adjusted, rebuilt before each open when an action arrives), the current session
  from raw ``price_data`` (its bars need no factor until a later ex-date), read in one
  statement (``live_read``), and the same ``create_features`` runs as in training
  (train/serve parity) with its numba indicators (``features.kernels``: pandas-ta's numbers
  for all tickers in one pass).
* ``evaluate_drift``: the window's features and stored predictions (the last hour, widened
  back within the session to ``min_rows`` rows: ``drift.window``, the rule the replay uses too)
  against the champion's training reference (``drift``: PSI and autocorrelation-aware KS per
  feature by time of session, atoms such as zero returns by their shares, confidence and
  entropy against the validation baseline), then the severity state
  machine, whose state is the newest row of ``drift_reports`` (``previous_state``), decides
  whether to roll back; the evaluation is stored there (``store_evaluation``).

``latest_evaluation`` is what ``quant status`` shows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sqlalchemy import Engine, desc, select

from quant_assets.drift.reference import ConceptBaseline, ReferenceStats
from quant_assets.drift.report import DriftReport, evaluate_window
from quant_assets.drift.severity import DriftDecision, DriftState, advance
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.drift.window import live_window, read_start
from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FeatureSpec
from quant_assets.models.bundle import Bundle
from quant_assets.models.inference import (
    LIVE_INDICATORS,
    PREDICTION_COLUMNS,
    Predictor,
    prediction_frame,
)
from quant_assets.monitoring.live_read import read_live_bars
from quant_assets.storage.database import to_db_timestamp, to_utc, write_to_db
from quant_assets.storage.schema import drift_reports
from quant_assets.storage.schema import predictions as predictions_table

PROBABILITY_COLUMNS = ("p_down", "p_flat", "p_up")


@dataclass(frozen=True)
class LiveScores:
    """What one scoring of the live window produced and stored."""

    model: str
    start: pd.Timestamp
    end: pd.Timestamp
    scored: pd.DataFrame  # PREDICTION_COLUMNS
    written: int


@dataclass(frozen=True)
class DriftEvaluation:
    """One drift evaluation of the live window and the decision it led to."""

    model: str
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    report: DriftReport
    decision: DriftDecision


@dataclass(frozen=True)
class StoredEvaluation:
    """The newest row of ``drift_reports`` (for ``quant status``)."""

    evaluated_at: pd.Timestamp
    model: str
    level: str | None
    share_drifted: float | None
    rollback: bool
    reason: str


def score_live_window(
    engine: Engine,
    predictor: Predictor,
    tickers: Sequence[str],
    end: pd.Timestamp,
    thresholds: DriftThresholds,
) -> LiveScores:
    """Score the minutes of [end - window, end) with ``predictor`` and store them."""
    start = end - pd.Timedelta(minutes=thresholds.window_minutes)
    bars = read_live_bars(engine, tickers, start, end, predictor.min_bars)
    _, scored = score_range(predictor, bars, start, end)
    written = write_predictions(scored, predictor.name, engine)
    return LiveScores(predictor.name, start, end, scored, written)


def evaluate_drift(
    engine: Engine,
    bundle: Bundle,
    tickers: Sequence[str],
    end: pd.Timestamp,
    thresholds: DriftThresholds,
) -> DriftEvaluation:
    """Evaluate the window ending at ``end`` against ``bundle``; decide; store the evaluation."""
    first = read_start(end, thresholds)  # the session's open: the window may widen back to it
    reference = ReferenceStats.from_dict(bundle.reference_stats)
    baseline = ConceptBaseline.from_dict(bundle.validation_baseline)
    features = window_features(engine, tickers, first, end, bundle.feature_spec)
    preds = read_predictions(engine, bundle.name, first, end)
    scored = features.merge(preds, on=["ticker", "ts"], how="inner")
    start, rows = live_window(scored, end, thresholds)
    window = scored.iloc[rows].reset_index(drop=True)
    probs = window[list(PROBABILITY_COLUMNS)].to_numpy(np.float64)
    report = evaluate_window(window, reference, thresholds, probs, baseline, evaluated_at=end)
    state = previous_state(engine)
    decision = advance(
        state, report.level, end, thresholds, model_version=bundle.name, note=report.reason
    )
    store_evaluation(engine, bundle.name, report, decision)
    return DriftEvaluation(bundle.name, start, end, len(window), report, decision)


def score_range(
    predictor: Predictor, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of the bars in [start, end) and the predictor's probabilities for each.

    A minute is scored when its window of ``predictor.window`` bars is warm and finite; the
    returned features hold every bar in the range (drift looks at all of them).
    """
    spec = predictor.bundle.feature_spec
    features = (
        create_features(bars, spec, indicators=LIVE_INDICATORS)
        if len(bars)
        else pd.DataFrame(columns=["ticker", "ts"])
    )
    in_range = (features["ts"] >= start) & (features["ts"] < end) if len(features) else []
    keys, windows = [], []
    for _, group in features.groupby("ticker", sort=True, observed=True):
        values = group[list(predictor.columns)].to_numpy(np.float64)
        if len(group) < predictor.window:
            continue
        ok = group["warm"].to_numpy(bool) & np.isfinite(values).all(axis=1)
        win = sliding_window_view(values, predictor.window, axis=0).transpose(0, 2, 1)
        win_ok = sliding_window_view(ok, predictor.window).all(axis=1)
        ends = group.iloc[predictor.window - 1 :]
        wanted = win_ok & (ends["ts"] >= start).to_numpy() & (ends["ts"] < end).to_numpy()
        keys.append(ends.loc[wanted, ["ticker", "ts"]])
        windows.append(win[wanted])
    if not keys or sum(len(k) for k in keys) == 0:
        empty = pd.DataFrame(columns=list(PREDICTION_COLUMNS))
        return features[in_range].reset_index(drop=True), empty
    index = pd.concat(keys, ignore_index=True)
    proba = predictor.predict_windows(np.concatenate(windows).astype(np.float32))
    return features[in_range].reset_index(drop=True), prediction_frame(index, proba)


def write_predictions(scored: pd.DataFrame, model: str, engine: Engine) -> int:
    """Upsert a model's live predictions."""
    if scored.empty:
        return 0
    frame = scored.assign(model=model, scored_at=pd.Timestamp.now(tz="UTC"))
    return write_to_db(frame, "predictions", engine)


def read_predictions(
    engine: Engine, model: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """A model's stored predictions with ``start <= ts < end``, sorted by ticker and ts."""
    t = predictions_table
    query = (
        select(*(t.c[c] for c in PREDICTION_COLUMNS))
        .where(t.c.model == model)
        .where(t.c.ts >= to_db_timestamp(start, engine), t.c.ts < to_db_timestamp(end, engine))
        .order_by(t.c.ticker, t.c.ts)
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).fetchall(), columns=list(PREDICTION_COLUMNS))
    frame["ts"] = to_utc(frame["ts"]) if len(frame) else frame["ts"].astype("datetime64[ns, UTC]")
    return frame


def latest_scored_model(engine: Engine) -> str | None:
    """The model of the newest stored live prediction (None before any scoring)."""
    t = predictions_table
    query = select(t.c.model).order_by(t.c.scored_at.desc(), t.c.ts.desc()).limit(1)
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def window_features(
    engine: Engine,
    tickers: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    spec: FeatureSpec,
) -> pd.DataFrame:
    """Features of the live window (create_features as in training, numba indicators)."""
    bars = read_live_bars(engine, tickers, start, end, spec.warmup_bars)
    features = create_features(bars, spec, indicators=LIVE_INDICATORS)
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


def store_evaluation(
    engine: Engine, model: str, report: DriftReport, decision: DriftDecision
) -> None:
    """Keep one evaluation (its report and decision, with the state) in ``drift_reports``."""
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


def latest_evaluation(engine: Engine) -> StoredEvaluation | None:
    """The newest stored evaluation (None before the first one)."""
    t = drift_reports
    query = (
        select(t.c.evaluated_at, t.c.model, t.c.level, t.c.share_drifted, t.c.rollback, t.c.reason)
        .order_by(desc(t.c.evaluated_at))
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return StoredEvaluation(
        evaluated_at=to_utc(pd.Series([row.evaluated_at], dtype="object")).iloc[0],
        model=row.model,
        level=row.level,
        share_drifted=row.share_drifted,
        rollback=bool(row.rollback),
        reason=row.reason,
    )
