"""Build and store the derived tables ``features`` and ``labels`` from adjusted bars.

Both are computed per ticker over the days asked for, with enough earlier sessions read as
history that every kept row is fully warmed up (features) or has its barrier volatility
(labels); only the rows of the asked days are written. Upserts make re-runs idempotent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd
from sqlalchemy import Engine

from quant_assets.corporate_actions.adjusted_store import read_adjusted_bars
from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FEATURE_SPEC, FEATURE_TABLE_COLUMNS
from quant_assets.labels import LabelSpec, triple_barrier_labels
from quant_assets.market import calendar
from quant_assets.market.calendar import SESSION_MINUTES
from quant_assets.market.frames import BAR_COLUMNS
from quant_assets.storage.database import write_to_db


def history_sessions(bars_needed: int) -> int:
    """Whole sessions of history that hold ``bars_needed`` bars, plus one for missing minutes."""
    return math.ceil(bars_needed / SESSION_MINUTES) + 1


def _bars_with_history(
    engine: Engine, ticker: str, days: Sequence[pd.Timestamp], bars_needed: int
) -> pd.DataFrame:
    first = calendar.session_before(min(days), history_sessions(bars_needed))
    start, _ = calendar.span_of_days(first, first)
    _, end = calendar.span_of_days(max(days), max(days))
    return read_adjusted_bars(engine, [ticker], start, end)[list(BAR_COLUMNS)]


def _on_days(frame: pd.DataFrame, days: Sequence[pd.Timestamp]) -> pd.DataFrame:
    wanted = {calendar.to_session_label(d) for d in days}
    return frame[calendar.session_labels(frame["ts"]).isin(wanted)].reset_index(drop=True)


def build_features(engine: Engine, ticker: str, days: Sequence[pd.Timestamp]) -> pd.DataFrame:
    """Features of one ticker's adjusted bars on ``days`` (warmed up from earlier sessions)."""
    bars = _bars_with_history(engine, ticker, days, FEATURE_SPEC.warmup_bars)
    if bars.empty:
        return pd.DataFrame(columns=list(FEATURE_TABLE_COLUMNS))
    return _on_days(create_features(bars)[list(FEATURE_TABLE_COLUMNS)], days)


def write_features(frame: pd.DataFrame, engine: Engine) -> int:
    """Upsert feature rows (tagged with the feature spec's version)."""
    return write_to_db(frame.assign(feature_version=FEATURE_SPEC.version), "features", engine)


def build_labels(
    engine: Engine, ticker: str, days: Sequence[pd.Timestamp], spec: LabelSpec
) -> pd.DataFrame:
    """Triple-barrier labels of one ticker's adjusted bars on ``days``.

    Only completed sessions should be passed: the vertical barrier of a live session's last
    bars could still move (see ``labels.triple_barrier_labels``).
    """
    bars = _bars_with_history(engine, ticker, days, spec.vol_span)
    if bars.empty:
        return pd.DataFrame(columns=["ticker", "ts", "label", "t1", "ret", "sigma"])
    return _on_days(triple_barrier_labels(bars, spec), days)


def write_labels(frame: pd.DataFrame, spec: LabelSpec, engine: Engine) -> int:
    """Upsert label rows with the spec that made them."""
    out = frame.copy()
    out["label"] = out["label"].astype("Int16")
    return write_to_db(out.assign(label_spec=label_spec_json(spec)), "labels", engine)


def label_spec_json(spec: LabelSpec) -> str:
    """The canonical JSON text of a label spec (stored beside each label)."""
    return json.dumps(asdict(spec), sort_keys=True, separators=(",", ":"))
