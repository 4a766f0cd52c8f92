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
processing. Tickers travel as their positions in the sorted list of names.
``read_history_columns`` and ``read_session_columns`` are the two halves as arrays, for
``live_scorer``, which keeps both between minutes (the session's bars read from a given time
per ticker); ``bars_frame`` turns them into the frame ``read_live_bars`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from sqlalchemy import Connection, DateTime, Engine, Float, Integer

from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, PRICE_COLUMNS
from quant_assets.storage.bars import ticker_position_sql
from quant_assets.storage.bulk import fetch_columns
from quant_assets.storage.pg_binary import copy_binary
from quant_assets.storage.schema import adjusted_bars, price_data

_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite (sorts as text)


Columns = dict[str, np.ndarray]
"""Bars as arrays by ``BAR_COLUMNS`` name: ticker as its position in the sorted names read,
ts ``datetime64[ns]`` (naive UTC), prices and volume float64."""


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
    names = ticker_names(tickers)
    with engine.connect() as conn:
        columns = _read(conn, names, start, end, history_bars, session=True)
    return bars_frame(columns, names)


def ticker_names(tickers: Sequence[str]) -> tuple[str, ...]:
    """The tickers as the reads number them: distinct and sorted (so positions sort as the
    names do)."""
    return tuple(sorted(set(tickers)))


def read_history_columns(
    conn: Connection, names: tuple[str, ...], start: pd.Timestamp, history_bars: int
) -> Columns:
    """The history part of ``read_live_bars`` alone, as columns: each ticker's last
    ``history_bars`` adjusted bars before the session of ``start``."""
    return _read(conn, names, start, start, history_bars, session=False)


def read_session_columns(
    conn: Connection,
    names: tuple[str, ...],
    start: pd.Timestamp,
    end: pd.Timestamp,
    since: Sequence[pd.Timestamp] | None = None,
) -> Columns:
    """The session part of ``read_live_bars`` alone, as columns: the raw bars of the session of
    ``start`` before ``end`` — for each ticker only those at or after its ``since`` when given
    (one per name; a reader that kept the earlier ones)."""
    if since is None:
        return _read(conn, names, start, end, None, session=True)
    if len(since) != len(names):
        raise ValueError(f"one since per ticker: {len(since)} for {len(names)} tickers")
    # One range from the earliest since (usually all the same minute), cut per ticker here.
    columns = _read(conn, names, start, end, None, session=True, since=min(since, default=end))
    cut = np.array([pd.Timestamp(t).tz_convert("UTC").value for t in since], "datetime64[ns]")
    keep = columns["ts"] >= cut[columns["ticker"]]
    return {name: values[keep] for name, values in columns.items()}


def bars_frame(columns: Columns, names: tuple[str, ...]) -> pd.DataFrame:
    """The bar layout of ``columns``, sorted by ticker and ts: ticker string (from its
    position in ``names``), ts datetime64[ns, UTC], prices and volume float64."""
    order = np.lexsort((columns["ts"], columns["ticker"]))
    return pd.DataFrame(
        {
            "ticker": pd.array(names, dtype="string").take(columns["ticker"][order]),
            "ts": pd.DatetimeIndex(columns["ts"][order]).tz_localize("UTC"),
            **{c: np.asarray(columns[c][order], "f8") for c in (*PRICE_COLUMNS, "volume")},
        }
    )


def _read(
    conn: Connection,
    names: tuple[str, ...],
    start: pd.Timestamp,
    end: pd.Timestamp,
    history_bars: int | None,
    *,
    session: bool,
    since: pd.Timestamp | None = None,
) -> Columns:
    """``history_bars`` None: no history part; the session part from ``since`` when given
    (else from the session's start)."""
    if history_bars is not None and history_bars < 1:
        raise ValueError(f"history_bars must be >= 1, got {history_bars}")
    if not names:
        return _empty_columns()
    day = calendar.session_of(start)
    day_start, _ = calendar.span_of_days(day, day)
    postgres = conn.dialect.name == "postgresql"
    times = {"first": day_start, "end": end}
    if session:
        times["since"] = day_start if since is None else max(since, day_start)
    params: dict[str, object] = {"n": history_bars or 1}
    for key, ts in times.items():
        utc = pd.Timestamp(ts).tz_convert("UTC")
        params[key] = utc if postgres else utc.strftime(_SQLITE_TS)
    params.update({f"t{k}": name for k, name in enumerate(names)})
    sql = live_bars_sql(len(names), postgres, history=history_bars is not None, session=session)
    if not postgres:
        return _cursor_columns(conn, sql, params)
    columns = copy_binary(conn, sql, params, _BINARY_TYPES)
    columns["ticker"] = columns["ticker"].astype(np.intp)
    return columns


@lru_cache(maxsize=64)
def live_bars_sql(n_tickers: int, postgres: bool, *, history: bool, session: bool) -> str:
    """The one statement for ``n_tickers`` tickers (bound :t0…, :first, :since, :end, :n):
    with ``history`` per ticker its newest adjusted bars before :first (``ORDER BY ts DESC
    LIMIT n`` inside, so the key's backward scan stops after n rows), with ``session`` the raw
    bars from :since to :end. Each ticker comes as its position (an integer: binary COPY reads
    only fixed-width columns, and SQLite makes no string per row); SQLite sends ts as stored
    (text)."""

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
    if session:
        parts.append(
            f"SELECT {cols(ticker_position_sql(n_tickers, ph))} FROM {price_data.name} "
            f"WHERE ticker IN ({names}) AND ts >= {ph('since')} AND ts < {ph('end')}"
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


def _cursor_columns(conn: Connection, sql: str, params: dict) -> Columns:
    """Other backends (SQLite): the DBAPI cursor's rows fetched into columns
    (``bulk.fetch_columns``), no Row objects."""
    result = conn.exec_driver_sql(sql, params)
    try:
        values = fetch_columns(result.cursor, _CURSOR_TYPES)
    finally:
        result.close()
    return dict(zip(BAR_COLUMNS, values, strict=True))


def _empty_columns() -> Columns:
    return {
        "ticker": np.zeros(0, np.intp),
        "ts": np.zeros(0, "datetime64[ns]"),
        **{c: np.zeros(0, np.float64) for c in (*PRICE_COLUMNS, "volume")},
    }
