"""Reading and writing bar tables (raw ``price_data`` and the quarantine)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Engine, func, select

from quant_assets.market.frames import BAR_COLUMNS, as_bar_dtypes, empty_bars
from quant_assets.storage.bulk import read_select
from quant_assets.storage.database import insert_new, to_db_timestamp, to_utc, write_to_db
from quant_assets.storage.quarantine import quarantine_rows
from quant_assets.storage.schema import bar_quarantine, price_data


def write_bars(bars: pd.DataFrame, engine: Engine) -> int:
    """Upsert validated raw bars into ``price_data``; return rows inserted or changed."""
    return write_to_db(as_bar_dtypes(bars), "price_data", engine)


def read_bars(
    engine: Engine,
    tickers: Sequence[str] | None,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """Raw bars with ``start <= ts < end`` (UTC) for the tickers (all when None), sorted."""
    query = select(*(price_data.c[c] for c in BAR_COLUMNS)).where(
        price_data.c.ts >= to_db_timestamp(start, engine),
        price_data.c.ts < to_db_timestamp(end, engine),
    )
    if tickers is not None:
        query = query.where(price_data.c.ticker.in_(list(tickers)))
    query = query.order_by(price_data.c.ticker, price_data.c.ts)
    with engine.connect() as conn:
        frame = read_select(conn, query)
    if frame.empty:
        return empty_bars()
    # The read already gives the stored types (UTC timestamps, float prices, BIGINT volumes);
    # only the ticker text becomes the bar layout's string dtype.
    frame["ticker"] = frame["ticker"].astype("string")
    return frame


def last_bar_times(engine: Engine, tickers: Sequence[str]) -> dict[str, pd.Timestamp]:
    """The newest stored bar start per ticker (tickers with no bars are absent)."""
    query = (
        select(price_data.c.ticker, func.max(price_data.c.ts))
        .where(price_data.c.ticker.in_(list(tickers)))
        .group_by(price_data.c.ticker)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    return {ticker: to_utc(pd.Series([ts])).iloc[0] for ticker, ts in rows if ts is not None}


def write_quarantine(quarantined: pd.DataFrame, engine: Engine) -> int:
    """Keep refused rows, with their reason, in ``bar_quarantine`` for inspection.

    A row seen again (same values, same reason) is stored once; its first ``seen_at`` stays.
    """
    if quarantined.empty:
        return 0
    rows = quarantine_rows(quarantined, pd.Timestamp.now(tz="UTC"))
    return insert_new(rows, "bar_quarantine", engine)


def quarantine_counts(
    engine: Engine, tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Quarantined rows per ticker and reason (ticker, reason, rows) with ``start <= ts < end``
    (rows kept without a timestamp belong to no range)."""
    q = bar_quarantine.c
    query = (
        select(q.ticker, q.reason, func.count().label("rows"))
        .where(
            q.ticker.in_(list(tickers)),
            q.ts >= to_db_timestamp(start, engine),
            q.ts < to_db_timestamp(end, engine),
        )
        .group_by(q.ticker, q.reason)
        .order_by(q.ticker, q.reason)
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).fetchall(), columns=["ticker", "reason", "rows"])
    return frame.astype({"ticker": "string", "reason": "string", "rows": "int64"})
