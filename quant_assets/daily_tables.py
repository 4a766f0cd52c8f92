"""Build and store the derived tables ``features`` and ``labels`` from adjusted bars.

Both are computed per ticker over the days asked for, with enough of the ticker's earlier bars
read as history — counted in bars, not sessions: a thin ticker needs many more sessions than a
liquid one — that every row that can be is warmed up (features) or has its barrier volatility
(labels); only the rows of the asked days are written. Upserts make re-runs idempotent, and a
stored warm feature row is never replaced by a cold one (a run with less history at hand would
otherwise undo an earlier, better one). A run that builds both tables reads each ticker's bars
once (``build_features_and_labels``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd
from sqlalchemy import Engine, select

from quant_assets.corporate_actions.adjusted_store import history_start, read_adjusted_bars
from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FEATURE_SPEC, FEATURE_TABLE_COLUMNS, FeatureSpec
from quant_assets.labels import LabelSpec, triple_barrier_labels
from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS
from quant_assets.storage.database import to_db_timestamp, to_utc, write_to_db
from quant_assets.storage.schema import features as features_table


def _bars_for(
    engine: Engine, ticker: str, spans: Sequence[tuple[Sequence[pd.Timestamp], int]]
) -> list[pd.DataFrame]:
    """For each (days, bars_needed): the ticker's adjusted bars on those days and the
    ``bars_needed`` bars before them — all from one read of the table."""
    bounds = []
    for days, bars_needed in spans:
        first, _ = calendar.span_of_days(min(days), min(days))
        _, end = calendar.span_of_days(max(days), max(days))
        bounds.append((history_start(engine, ticker, first, bars_needed), end))
    start, end = min(b[0] for b in bounds), max(b[1] for b in bounds)
    bars = read_adjusted_bars(engine, [ticker], start, end)[list(BAR_COLUMNS)]
    return [
        bars[(bars["ts"] >= lo) & (bars["ts"] < hi)].reset_index(drop=True) for lo, hi in bounds
    ]


def _on_days(frame: pd.DataFrame, days: Sequence[pd.Timestamp]) -> pd.DataFrame:
    wanted = {calendar.to_session_label(d) for d in days}
    return frame[calendar.session_labels(frame["ts"]).isin(wanted)].reset_index(drop=True)


def build_features(
    engine: Engine, ticker: str, days: Sequence[pd.Timestamp], spec: FeatureSpec = FEATURE_SPEC
) -> pd.DataFrame:
    """Features of one ticker's adjusted bars on ``days`` (warmed up from its earlier bars)."""
    (bars,) = _bars_for(engine, ticker, [(days, spec.warmup_bars)])
    return _features_on(bars, days, spec)


def _features_on(
    bars: pd.DataFrame, days: Sequence[pd.Timestamp], spec: FeatureSpec
) -> pd.DataFrame:
    if bars.empty:
        return pd.DataFrame(columns=list(FEATURE_TABLE_COLUMNS))
    return _on_days(create_features(bars, spec)[list(FEATURE_TABLE_COLUMNS)], days)


def write_features(frame: pd.DataFrame, engine: Engine, spec: FeatureSpec = FEATURE_SPEC) -> int:
    """Upsert feature rows (tagged with the feature spec's version); a stored warm row is never
    replaced by a cold one."""
    fresh = frame[~_cold_over_warm(frame, engine)]
    return write_to_db(fresh.assign(feature_version=spec.version), "features", engine)


def _cold_over_warm(frame: pd.DataFrame, engine: Engine) -> pd.Series:
    """Rows of ``frame`` that are cold where the stored row of the same key is warm."""
    cold = ~frame["warm"].astype(bool) if len(frame) else pd.Series(False, index=frame.index)
    if not cold.any():
        return cold
    t = features_table
    ts = pd.to_datetime(frame["ts"], utc=True)
    query = select(t.c.ticker, t.c.ts).where(
        t.c.ticker.in_(sorted(set(frame.loc[cold, "ticker"].astype(str)))),
        t.c.ts >= to_db_timestamp(ts[cold].min(), engine),
        t.c.ts <= to_db_timestamp(ts[cold].max(), engine),
        t.c.warm.is_(True),
    )
    with engine.connect() as conn:
        warm = pd.DataFrame(conn.execute(query).fetchall(), columns=["ticker", "ts"])
    if warm.empty:
        return pd.Series(False, index=frame.index)
    stored = pd.MultiIndex.from_arrays([warm["ticker"].astype(str), to_utc(warm["ts"])])
    keys = pd.MultiIndex.from_arrays([frame["ticker"].astype(str), ts])
    return cold & pd.Series(keys.isin(stored), index=frame.index)


def build_labels(
    engine: Engine, ticker: str, days: Sequence[pd.Timestamp], spec: LabelSpec
) -> pd.DataFrame:
    """Triple-barrier labels of one ticker's adjusted bars on ``days``.

    Only completed sessions should be passed: the vertical barrier of a live session's last
    minutes could still move (see ``labels.triple_barrier_labels``).
    """
    (bars,) = _bars_for(engine, ticker, [(days, spec.history_bars)])
    return _labels_on(bars, days, spec)


def build_features_and_labels(
    engine: Engine,
    ticker: str,
    feature_days: Sequence[pd.Timestamp],
    label_days: Sequence[pd.Timestamp],
    label_spec: LabelSpec,
    feature_spec: FeatureSpec = FEATURE_SPEC,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``build_features`` and ``build_labels`` of one ticker from one read of its bars (each
    computed from exactly the bars it would read alone; ``label_days`` may be empty)."""
    spans = [(feature_days, feature_spec.warmup_bars)]
    if label_days:
        spans.append((label_days, label_spec.history_bars))
    found = _bars_for(engine, ticker, spans)
    features = _features_on(found[0], feature_days, feature_spec)
    labels = _labels_on(found[1] if label_days else found[0].iloc[:0], label_days, label_spec)
    return features, labels


def _labels_on(bars: pd.DataFrame, days: Sequence[pd.Timestamp], spec: LabelSpec) -> pd.DataFrame:
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
