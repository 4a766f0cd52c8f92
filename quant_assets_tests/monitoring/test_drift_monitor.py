"""evaluate_drift on a thin market (SQLite): the live window widens within the session by the
replay's rule, and an evaluation below the floor is stored as "not evaluated (n rows)"."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
from sqlalchemy import Engine

from quant_assets.corporate_actions.adjusted_store import rebuild_adjusted_bars
from quant_assets.drift.reference import concept_baseline_from_probs, reference_stats_from_frame
from quant_assets.drift.replay import rolling_windows
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.market import calendar
from quant_assets.market.synthetic import Liquidity, SyntheticConfig, SyntheticMarket
from quant_assets.models.inference import prediction_frame
from quant_assets.monitoring.drift_monitor import evaluate_drift, write_predictions
from quant_assets.storage.database import create_db_engine, read_from_db
from quant_assets_tests.drift.helpers import market_features, sessions_slice, standin_probs

TICKERS = ("T00", "T01")
FIRST = "2026-03-02"
N_SESSIONS = 6
THIN = Liquidity(traded=0.2, tick_bps=20.0)
MODEL = "lstm_v1"


def ny(day: pd.Timestamp, clock: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day.date()} {clock}", tz=calendar.MARKET_TZ).tz_convert("UTC")


def thin_database(engine: Engine, days: list[pd.Timestamp]) -> tuple[SimpleNamespace, pd.DataFrame]:
    """Bars of two thin tickers; a stand-in for the bundle (evaluate_drift reads its name,
    reference of sessions 1-3 and baseline of session 4); the stand-in classifier's predictions
    of the last session, stored as live scores. Returns the bundle and that session's features."""
    market = SyntheticMarket(
        SyntheticConfig(
            seed=3,
            tickers=TICKERS,
            start=str(days[0].date()),
            end=str(days[-1].date()),
            corporate_actions=False,
            liquidity=THIN,
        )
    )
    for ticker in TICKERS:
        ingest_sessions(market, engine, ticker, days)
    rebuild_adjusted_bars(engine, list(TICKERS))
    feats = market_features(TICKERS, FIRST, N_SESSIONS, seed=3, liquidity=THIN)
    ref = reference_stats_from_frame(sessions_slice(feats, days[1], days[3]), FEATURE_SPEC.columns)
    val = sessions_slice(feats, days[4], days[4])
    base = concept_baseline_from_probs(
        standin_probs(val, ref), window=20, groups=val["ticker"], ts=val["ts"]
    )
    today = sessions_slice(feats, days[5], days[5])
    write_predictions(prediction_frame(today[["ticker", "ts"]], standin_probs(today, ref)),
                      MODEL, engine)  # fmt: skip
    bundle = SimpleNamespace(
        name=MODEL,
        reference_stats=ref.to_dict(),
        validation_baseline=base.to_dict(),
        feature_spec=FEATURE_SPEC,
    )
    return bundle, today


def test_live_window_widens_within_the_session_and_reports_the_floor(settings_for) -> None:
    engine = create_db_engine(settings_for("sqlite"))
    days = list(calendar.sessions(FIRST, "2026-12-31")[:N_SESSIONS])
    bundle, today = thin_database(engine, days)
    th = DriftThresholds()
    open_ = calendar.session_bounds(days[5])[0]

    early = evaluate_drift(engine, bundle, TICKERS, ny(days[5], "09:40"), th)
    n = early.rows
    assert 0 < n < th.min_rows and early.start == open_
    assert early.report.level is None and early.report.reason == f"not evaluated ({n} rows < 30)"
    assert early.decision.reason == f"not evaluated ({n} rows < 30); streak unchanged"

    at = ny(days[5], "12:00")
    noon = evaluate_drift(engine, bundle, TICKERS, at, th)
    assert noon.report.evaluated and noon.rows >= th.min_rows
    assert open_ <= noon.start < at - pd.Timedelta(minutes=th.window_minutes)  # widened
    assert noon.report.widened and noon.report.window_start == noon.start
    # the replay picks exactly these rows for the same time (one rule for both)
    _, rows = next(rolling_windows(today, 60, 10, [at], th.min_rows))
    replayed = today.iloc[rows]
    assert len(replayed) == noon.rows and replayed["ts"].min() == noon.start

    stored = read_from_db("SELECT * FROM drift_reports ORDER BY evaluated_at", engine)
    assert len(stored) == 2 and pd.isna(stored["level"].iloc[0])
    assert stored["reason"].iloc[0] == f"not evaluated ({n} rows < 30)"
    assert json.loads(stored["report"].iloc[1])["widened"] is True
    engine.dispose()


def test_a_window_without_predictions_is_not_evaluated_rather_than_failing(settings_for) -> None:
    """Outside market hours (the UI's default as_of is now) nothing was scored: a clear
    'not evaluated', not a dtype error in the merge."""
    engine = create_db_engine(settings_for("sqlite"))
    days = list(calendar.sessions(FIRST, "2026-12-31")[:N_SESSIONS])
    bundle, _ = thin_database(engine, days)
    saturday = pd.Timestamp("2026-12-05 15:00", tz="UTC")
    after = calendar.next_session(days[-1])
    for at in (ny(after, "11:00"), saturday):
        evaluation = evaluate_drift(engine, bundle, TICKERS, at, DriftThresholds())
        assert evaluation.rows == 0 and evaluation.report.level is None
        assert evaluation.report.reason == "not evaluated (0 rows < 30)"
    engine.dispose()
