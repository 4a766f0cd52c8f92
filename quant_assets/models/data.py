"""Labelled feature rows for training: from the database tables, or straight from bars.

``load_labelled_features`` reads table ``features`` LEFT JOIN ``labels`` on (ticker, ts) for
the New York days first_session … last_session (bars without a label are kept: they are the
history of later windows). ``labelled_features_from_bars`` computes the same frame from bars
with ``create_features`` and ``triple_barrier_labels`` (tests, benchmarks, the synthetic demo).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Engine, func, select

from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FEATURE_SPEC, FEATURE_WARMUP_BARS, FeatureSpec
from quant_assets.labels import LabelSpec, triple_barrier_labels
from quant_assets.market import calendar
from quant_assets.market.frames import PRICE_COLUMNS
from quant_assets.storage.bulk import read_select
from quant_assets.storage.database import to_db_timestamp, to_utc

LABEL_FIELDS: tuple[str, ...] = ("label", "t1", "ret", "sigma")
TICKERS_PER_READ = 8  # tickers per query of load_labelled_features (its peak memory)


def labelled_features_from_bars(
    bars: pd.DataFrame,
    label_spec: LabelSpec | None = None,
    warm_only: bool = True,
    feature_spec: FeatureSpec = FEATURE_SPEC,
) -> pd.DataFrame:
    """create_features + triple-barrier labels of bars (one or many tickers), one row per bar.

    ``warm_only`` drops each ticker's first ``FEATURE_WARMUP_BARS`` rows (not warmed up), as
    the features table does by reading earlier sessions as history.
    """
    spec = label_spec or LabelSpec()
    bars = bars.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)
    feats = create_features(bars, feature_spec)
    labels = triple_barrier_labels(bars, spec)
    out = feats.join(labels[list(LABEL_FIELDS)])
    if warm_only:
        out = out[out["warm"].astype(bool)].reset_index(drop=True)
    return out


def load_labelled_features(
    engine: Engine,
    tickers: Sequence[str],
    first_session: object,
    last_session: object,
    columns: Sequence[str] = FEATURE_SPEC.columns,
    *,
    prices: bool = False,
) -> pd.DataFrame:
    """features ⟕ labels for ``tickers`` on New York days first … last (inclusive).

    Columns: ticker, ts, ``columns``, warm, label (Int8, <NA> where unlabelled), t1, ret,
    sigma, label_spec (JSON text or None), and with ``prices`` the adjusted open, high, low
    and close of each bar (for backtests). Sorted by ticker, ts.

    Read ``TICKERS_PER_READ`` tickers at a time: the driver's rows are Python objects, ~7× the
    typed frame (~500 MiB at 80 tickers × 7 sessions), so one query for the whole universe
    made the peak memory grow with it; a block's rows are typed (``read_select``: straight into
    columns) before the next is read.
    """
    if not tickers:
        raise ValueError("no tickers to load")
    start, end = calendar.span_of_days(first_session, last_session)
    names = sorted(set(tickers))
    blocks = [
        _load_block(engine, names[i : i + TICKERS_PER_READ], start, end, columns, prices)
        for i in range(0, len(names), TICKERS_PER_READ)
    ]
    return pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else blocks[0]


def _load_block(
    engine: Engine,
    tickers: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    columns: Sequence[str],
    prices: bool,
) -> pd.DataFrame:
    """``load_labelled_features`` of a few tickers over [start, end), typed."""
    from quant_assets.storage.schema import adjusted_bars, features, labels

    f, lab, adj = features.c, labels.c, adjusted_bars.c
    price_columns = list(PRICE_COLUMNS) if prices else []
    cols = ["ticker", "ts", *columns, "warm", *LABEL_FIELDS, "label_spec", *price_columns]
    joined = features.outerjoin(labels, (lab.ticker == f.ticker) & (lab.ts == f.ts))
    if prices:
        joined = joined.outerjoin(adjusted_bars, (adj.ticker == f.ticker) & (adj.ts == f.ts))
    query = (
        select(
            f.ticker,
            f.ts,
            *(f[c] for c in (*columns, "warm")),
            *(lab[c] for c in (*LABEL_FIELDS, "label_spec")),
            *(adj[c] for c in price_columns),
        )
        .select_from(joined)
        .where(
            f.ticker.in_(list(tickers)),
            f.ts >= to_db_timestamp(start, engine),
            f.ts < to_db_timestamp(end, engine),
        )
        .order_by(f.ticker, f.ts)
    )
    with engine.connect() as conn:
        frame = read_select(conn, query)  # typed columns: no Row or object frame per value
    frame = frame[cols]
    frame["ticker"] = frame["ticker"].astype("string")
    frame["label_spec"] = frame["label_spec"].astype("str")  # also where a block has none
    for c in ("ts", "t1"):
        frame[c] = to_utc(frame[c]) if len(frame) else frame[c].astype("datetime64[ns, UTC]")
    frame["label"] = pd.array(frame["label"], dtype="Int8")
    frame["warm"] = frame["warm"].astype("boolean").fillna(False).astype(bool)
    for c in (*columns, "ret", "sigma", *price_columns):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame


def label_spec_of(frame: pd.DataFrame) -> LabelSpec | None:
    """The one LabelSpec the labelled rows were made with (ValueError if they disagree)."""
    if "label_spec" not in frame.columns:
        return None
    specs = frame.loc[frame["label"].notna(), "label_spec"].dropna().unique()
    if len(specs) == 0:
        return None
    if len(specs) > 1:
        raise ValueError(f"labels were made with {len(specs)} different label specs: {specs[:3]}")
    return LabelSpec.from_dict(json.loads(specs[0]))


def labelled_sessions(engine: Engine, tickers: Sequence[str]) -> pd.DatetimeIndex:
    """Sessions (New York dates) between the first and last labelled bar of ``tickers``."""
    from quant_assets.storage.schema import labels

    query = (
        select(func.min(labels.c.ts), func.max(labels.c.ts))
        .where(labels.c.ticker.in_(list(tickers)))
        .where(labels.c.label.is_not(None))
    )
    with engine.connect() as conn:
        first, last = conn.execute(query).one()
    if first is None:
        return pd.DatetimeIndex([])
    first_ts = pd.to_datetime(pd.Series([first, last]), utc=True)
    return calendar.sessions(
        calendar.session_of(first_ts.iloc[0]), calendar.session_of(first_ts.iloc[1])
    )


__all__ = [
    "FEATURE_WARMUP_BARS",
    "label_spec_of",
    "labelled_features_from_bars",
    "labelled_sessions",
    "load_labelled_features",
]
