"""The bars live scoring reads: one statement, fetched into columns (COPY on PostgreSQL).

A scoring needs each ticker's last ``history_bars`` adjusted bars before the current session
(history counted in the ticker's bars, so a thin ticker reaches further back) and the raw bars
of the session so far (``drift_monitor`` says why). Reading that per ticker, through
SQLAlchemy rows into a DataFrame, took ~165 ms for 20 tickers: 2 queries per ticker and pandas
probing every Row. Here it is one ``UNION ALL`` (its SQL text built once per ticker count) of
one ``ORDER BY ts DESC LIMIT n`` per ticker (a backward range scan of the (ticker, ts) key that
reads exactly n rows however long the history is; a ``row_number()`` window would read every
ticker's whole history) and the session's raw bars. PostgreSQL sends it as a binary ``COPY (…)
TO STDOUT`` of fixed-width columns, which numpy takes at once (``storage.pg_binary``: 3× faster
than the CSV COPY it replaced); other backends (SQLite) fill columns from the raw DBAPI
cursor's tuples block by block (``storage.bulk.fetch_columns``), without SQLAlchemy's row
processing. Tickers travel as their positions in the statement's list.
``read_history_bars`` and ``read_session_bars`` are the two halves, for ``live_scorer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, Engine, Float, Integer

from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, PRICE_COLUMNS, empty_bars
from quant_assets.storage.bars import ticker_position_sql
from quant_assets.storage.bulk import fetch_columns
from quant_assets.storage.pg_binary import copy_binary
from quant_assets.storage.schema import adjusted_bars, price_data

_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite (sorts as text)


def read_live_bars(
    engine: Engine,
    tickers: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    history_bars: int,
) -> pd.DataFrame:
    """Bars for scoring [start, end): each ticker's last ``history_bars`` adjusted bars before
    the session of ``start``, then its raw bars of that session before ``end``; sorted by
    ticker and ts, volume float64 (adjusted volumes are fractional after a split)."""
    return _read(engine, tickers, start, end, history_bars, history=True, session=True)


def read_history_bars(
    engine: Engine, tickers: Sequence[str], start: pd.Timestamp, history_bars: int
) -> pd.DataFrame:
    """The history part of ``read_live_bars`` alone: each ticker's last ``history_bars``
    adjusted bars before the session of ``start``."""
    return _read(engine, tickers, start, start, history_bars, history=True, session=False)


def read_session_bars(
    engine: Engine, tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """The session part of ``read_live_bars`` alone: the raw bars of the session of ``start``
    before ``end``."""
    return _read(engine, tickers, start, end, 1, history=False, session=True)


def _read(
    engine: Engine,
    tickers: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    history_bars: int,
    *,
    history: bool,
    session: bool,
) -> pd.DataFrame:
    if history_bars < 1:
        raise ValueError(f"history_bars must be >= 1, got {history_bars}")
    names = tuple(dict.fromkeys(tickers))
    if not names:
        return empty_bars().astype({"volume": "float64"})
    day = calendar.session_of(start)
    day_start, _ = calendar.span_of_days(day, day)
    postgres = engine.dialect.name == "postgresql"
    sql = live_bars_sql(len(names), postgres, history=history, session=session)
    first, last = (pd.Timestamp(t).tz_convert("UTC") for t in (day_start, end))
    if not postgres:
        first, last = first.strftime(_SQLITE_TS), last.strftime(_SQLITE_TS)
    params = {"first": first, "end": last, "n": int(history_bars)}
    params.update({f"t{k}": name for k, name in enumerate(names)})
    columns = (
        copy_binary(engine, sql, params, _BINARY_TYPES)
        if postgres
        else _cursor_columns(engine, sql, params)
    )
    return _frame(columns, names).sort_values(["ticker", "ts"], ignore_index=True)


@lru_cache(maxsize=64)
def live_bars_sql(n_tickers: int, postgres: bool, *, history: bool, session: bool) -> str:
    """The one statement for ``n_tickers`` tickers (bound :t0…, :first, :end, :n): with
    ``history`` per ticker its newest adjusted bars (``ORDER BY ts DESC LIMIT n`` inside, so
    the key's backward scan stops after n rows), with ``session`` the session's raw bars.
    Each ticker comes as its position (an integer: binary COPY reads only fixed-width columns,
    and SQLite makes no string per row); SQLite sends ts as stored (text)."""

    def ph(name: str) -> str:
        return f"%({name})s" if postgres else f":{name}"

    def cols(ticker: str) -> str:
        return f"{ticker}, ts, open, high, low, close, CAST(volume AS DOUBLE PRECISION)"

    raw = ", ".join(BAR_COLUMNS)
    parts = [
        f"SELECT {cols(f'CAST({k} AS INTEGER)')} FROM "
        f"(SELECT {raw} FROM {adjusted_bars.name} WHERE ticker = {ph(f't{k}')} "
        f"AND ts < {ph('first')} ORDER BY ts DESC LIMIT {ph('n')}) AS history_{k}"
        for k in range(n_tickers)
        if history
    ]
    names = ", ".join(ph(f"t{k}") for k in range(n_tickers))
    position = ticker_position_sql(n_tickers, ph)
    if session:
        parts.append(
            f"SELECT {cols(position)} FROM {price_data.name} WHERE ticker IN ({names}) "
            f"AND ts >= {ph('first')} AND ts < {ph('end')}"
        )
    if not parts:
        raise ValueError("nothing to read: neither history nor session")
    return " UNION ALL ".join(parts)


_BINARY_TYPES = (
    ("ticker", "int4"),
    ("ts", "timestamptz"),
    *((c, "float8") for c in (*PRICE_COLUMNS, "volume")),
)


_CURSOR_TYPES = (Integer(), DateTime(), *(Float() for _ in (*PRICE_COLUMNS, "volume")))


def _cursor_columns(engine: Engine, sql: str, params: dict) -> dict[str, np.ndarray]:
    """Other backends (SQLite): the DBAPI cursor's rows fetched into columns
    (``bulk.fetch_columns``), no Row objects."""
    with engine.connect() as conn:
        result = conn.exec_driver_sql(sql, params)
        try:
            values = fetch_columns(result.cursor, _CURSOR_TYPES)
        finally:
            result.close()
    return dict(zip(BAR_COLUMNS, values, strict=True))


def _frame(columns: dict[str, np.ndarray], names: tuple[str, ...]) -> pd.DataFrame:
    """The bar layout: ticker string (from its position in ``names``), ts datetime64[ns, UTC],
    prices and volume float64."""
    return pd.DataFrame(
        {
            "ticker": pd.array(names, dtype="string").take(columns["ticker"]),
            "ts": pd.DatetimeIndex(columns["ts"]).tz_localize("UTC"),
            **{c: np.asarray(columns[c], dtype="f8") for c in (*PRICE_COLUMNS, "volume")},
        }
    )
