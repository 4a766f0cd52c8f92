"""Live scoring: the champion's probabilities for every new minute, from stored bars.

The live window is built the way training saw its data: earlier sessions come from
``adjusted_bars`` (total-return adjusted, rebuilt before each open when an action arrives), the
current session from raw ``price_data`` (its bars need no factor until a later ex-date). The
same ``create_features`` runs as in training (train/serve parity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sqlalchemy import Engine, select

from quant_assets.corporate_actions import read_adjusted_bars
from quant_assets.features import create_features
from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS
from quant_assets.models.inference import Predictor
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import to_db_timestamp, to_utc, write_to_db
from quant_assets.storage.schema import predictions as predictions_table

HISTORY_SESSIONS = 2  # ≥ the 390-bar feature warm-up plus a 60-bar window, with gaps
PREDICTION_COLUMNS = ("ticker", "ts", "p_down", "p_flat", "p_up", "label")


def live_bars(
    engine: Engine, tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Bars for scoring [start, end): adjusted history sessions, then raw bars of the day."""
    day = calendar.session_of(start)
    first = calendar.session_before(day, HISTORY_SESSIONS)
    history_start, _ = calendar.span_of_days(first, first)
    day_start, _ = calendar.span_of_days(day, day)
    history = read_adjusted_bars(engine, list(tickers), history_start, day_start)
    today = read_bars(engine, list(tickers), day_start, end)
    bars = pd.concat([history[list(BAR_COLUMNS)], today], ignore_index=True)
    return bars.sort_values(["ticker", "ts"], ignore_index=True)


def score_range(
    predictor: Predictor, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of the bars in [start, end) and the predictor's probabilities for each.

    A minute is scored when its window of ``predictor.window`` bars is warm and finite; the
    returned features hold every bar in the range (drift looks at all of them).
    """
    features = create_features(bars) if len(bars) else pd.DataFrame(columns=["ticker", "ts"])
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
    scored = index.assign(p_down=proba[:, 0], p_flat=proba[:, 1], p_up=proba[:, 2])
    scored["label"] = np.array([-1, 0, 1])[proba.argmax(axis=1)]
    return features[in_range].reset_index(drop=True), scored


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
    frame["ts"] = to_utc(frame["ts"]) if len(frame) else frame["ts"]
    return frame
