"""Reading and writing bar tables (raw ``price_data`` and the quarantine)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, DateTime, Engine, Float, Table, case, func, select

from quant_assets.market.frames import BAR_COLUMNS, as_bar_dtypes, empty_bars
from quant_assets.storage.bulk import read_select
from quant_assets.storage.database import insert_new, to_db_timestamp, to_utc, write_to_db
from quant_assets.storage.pg_binary import copy_binary
from quant_assets.storage.quarantine import quarantine_rows
from quant_assets.storage.schema import TABLES, bar_quarantine, price_data


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
    frame = read_ticker_rows(engine, price_data, BAR_COLUMNS, tickers, start, end)
    if frame.empty:
        return empty_bars()
    # The read already gives the stored types (UTC timestamps, float prices, BIGINT volumes);
    # only the ticker text becomes the bar layout's string dtype.
    frame["ticker"] = frame["ticker"].astype("string")
    return frame


def read_ticker_rows(
    engine: Engine,
    table: Table,
    columns: Sequence[str],
    tickers: Sequence[str] | None,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """``columns`` of ``table``'s rows with ``start <= ts < end`` (UTC) of ``tickers`` (all
    when None), in (ticker, ts) order: the bar tables' read.

    Named tickers travel as their positions (an integer per row instead of a string made per
    row; a single ticker not at all) and come back as pandas' string dtype. On PostgreSQL,
    when every other column is fixed-width and NOT NULL, by binary COPY (``pg_binary``: no
    float printed by the server nor parsed here); otherwise by ``read_select``. Either way the
    frame ``read_select`` gives for the plain query.
    """
    window = (
        table.c.ts >= to_db_timestamp(start, engine),
        table.c.ts < to_db_timestamp(end, engine),
    )
    order = (table.c.ticker, table.c.ts)
    if not tickers:
        query = select(*(table.c[c] for c in columns)).where(*window)
        if tickers is not None:  # none named: nothing to read, in the read's layout
            query = query.where(table.c.ticker.in_([]))
        with engine.connect() as conn:
            return read_select(conn, query.order_by(*order))
    names = sorted(set(tickers))
    wire = _binary_types(table, columns)
    if engine.dialect.name == "postgresql" and wire is not None:
        return _copy_ticker_rows(engine, table, columns, names, start, end, wire)
    # One ticker named: its name is not read at all; several: as positions in ``names``.
    single = len(names) == 1
    position = case({name: k for k, name in enumerate(names)}, value=table.c.ticker)
    selected = [
        position.label(c) if c == "ticker" else table.c[c]
        for c in columns
        if not (single and c == "ticker")
    ]
    query = select(*selected).where(*window, table.c.ticker.in_(names)).order_by(*order)
    with engine.connect() as conn:
        frame = read_select(conn, query)
    if single:
        codes = np.zeros(len(frame), np.int64)
        frame.insert(list(columns).index("ticker"), "ticker", _ticker_names(names, codes))
    else:
        frame["ticker"] = _ticker_names(names, frame["ticker"].to_numpy(np.int64))
    return frame


def _ticker_names(names: list[str], positions: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """The tickers at ``positions`` of ``names`` as pandas' string dtype, without a Python
    string per row."""
    return pd.array(names, dtype="string").take(positions)


def _copy_ticker_rows(
    engine: Engine,
    table: Table,
    columns: Sequence[str],
    names: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    wire: list[tuple[str, str]],
) -> pd.DataFrame:
    """PostgreSQL: the rows by binary COPY, each ticker as its position in ``names``."""
    position = ticker_position_sql(len(names), _pyformat)
    listed = ", ".join(_pyformat(f"t{k}") for k in range(len(names)))
    selected = ", ".join(position if c == "ticker" else c for c in columns)
    sql = (
        f"SELECT {selected} FROM {table.name} WHERE ticker IN ({listed}) "
        "AND ts >= %(start)s AND ts < %(end)s ORDER BY ticker, ts"
    )
    params = {"start": to_db_timestamp(start, engine), "end": to_db_timestamp(end, engine)}
    params.update({f"t{k}": name for k, name in enumerate(names)})
    with engine.connect() as conn:
        got = copy_binary(conn, sql, params, wire)
    got["ticker"] = _ticker_names(names, got["ticker"])
    frame = pd.DataFrame(got, copy=False)[list(columns)]
    for name in columns:
        if isinstance(table.c[name].type, DateTime):
            frame[name] = frame[name].dt.tz_localize("UTC")
    return frame


def ticker_position_sql(n_tickers: int, placeholder: Callable[[str], str]) -> str:
    """SQL of each row's ticker as its position (an int4) among the tickers bound as
    ``t0`` … ``t{n-1}`` (``placeholder`` writes a bound name in the statement's style)."""
    whens = " ".join(f"WHEN {placeholder(f't{k}')} THEN {k}" for k in range(n_tickers))
    return f"CAST(CASE ticker {whens} END AS INTEGER)"


def _pyformat(name: str) -> str:
    return f"%({name})s"


def _binary_types(table: Table, columns: Sequence[str]) -> list[tuple[str, str]] | None:
    """The binary COPY types of ``columns`` (ticker as its int4 position), or None when one
    is nullable or of a type ``pg_binary`` does not read."""
    wire: list[tuple[str, str]] = []
    for name in columns:
        column = table.c[name]
        if name == "ticker":
            wire.append((name, "int4"))
            continue
        kind = (
            "timestamptz" if isinstance(column.type, DateTime)
            else "float8" if isinstance(column.type, Float)
            else "int8" if isinstance(column.type, BigInteger)
            else None
        )  # fmt: skip
        if kind is None or column.nullable:
            return None
        wire.append((name, kind))
    return wire


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


def rows_per_ticker(
    engine: Engine,
    table_name: str,
    tickers: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> dict[str, int]:
    """Stored rows of a bar table (keyed by ticker, ts) per ticker with ``start <= ts < end``;
    every ticker named, zero where it has none."""
    table = TABLES[table_name]
    query = (
        select(table.c.ticker, func.count())
        .where(
            table.c.ticker.in_(list(tickers)),
            table.c.ts >= to_db_timestamp(start, engine),
            table.c.ts < to_db_timestamp(end, engine),
        )
        .group_by(table.c.ticker)
    )
    with engine.connect() as conn:
        counts = dict(conn.execute(query).tuples().all())
    return {t: int(counts.get(t, 0)) for t in tickers}


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
