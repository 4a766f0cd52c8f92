"""The bars live scoring reads: one statement, fetched into columns (COPY on PostgreSQL).

A scoring needs each ticker's last ``history_bars`` adjusted bars before the current session
(history counted in the ticker's bars, so a thin ticker reaches further back) and the raw bars
of the session so far (``drift_monitor`` says why). Reading that per ticker, through
SQLAlchemy rows into a DataFrame, took ~165 ms for 20 tickers: 2 queries per ticker and pandas
probing every Row. Here it is one ``UNION ALL`` (its SQL text built once per ticker count) of
one ``ORDER BY ts DESC LIMIT n`` per ticker (a backward range scan of the (ticker, ts) key that
reads exactly n rows however long the history is; a ``row_number()`` window would read every
ticker's whole history) and the session's raw bars. PostgreSQL sends it with ``COPY (…) TO
STDOUT`` as CSV, parsed by pandas' C reader; other backends (SQLite) fill columns from the raw
DBAPI cursor's tuples, without SQLAlchemy's row processing. Timestamps come back as ISO text
without an offset, which numpy parses.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, PRICE_COLUMNS, empty_bars
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
    if history_bars < 1:
        raise ValueError(f"history_bars must be >= 1, got {history_bars}")
    names = tuple(dict.fromkeys(tickers))
    if not names:
        return empty_bars().astype({"volume": "float64"})
    day = calendar.session_of(start)
    day_start, _ = calendar.span_of_days(day, day)
    postgres = engine.dialect.name == "postgresql"
    sql = live_bars_sql(len(names), postgres)
    first, last = (pd.Timestamp(t).tz_convert("UTC") for t in (day_start, end))
    if not postgres:
        first, last = first.strftime(_SQLITE_TS), last.strftime(_SQLITE_TS)
    params = {"first": first, "end": last, "n": int(history_bars)}
    params.update({f"t{k}": name for k, name in enumerate(names)})
    columns = (
        _copy_columns(engine, sql, params) if postgres else _cursor_columns(engine, sql, params)
    )
    return _frame(columns).sort_values(["ticker", "ts"], ignore_index=True)


@lru_cache(maxsize=64)
def live_bars_sql(n_tickers: int, postgres: bool) -> str:
    """The one statement for ``n_tickers`` tickers (bound :t0…, :first, :end, :n): per ticker
    its newest adjusted bars (``ORDER BY ts DESC LIMIT n`` inside, so the key's backward scan
    stops after n rows), then the session's raw bars; ts as ISO text without an offset."""

    def ph(name: str) -> str:
        return f"%({name})s" if postgres else f":{name}"

    ts = "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')" if postgres else "ts"
    cols = f"ticker, {ts}, open, high, low, close, CAST(volume AS DOUBLE PRECISION)"
    raw = ", ".join(BAR_COLUMNS)
    parts = [
        f"SELECT {cols} FROM (SELECT {raw} FROM {adjusted_bars.name} "
        f"WHERE ticker = {ph(f't{k}')} AND ts < {ph('first')} "
        f"ORDER BY ts DESC LIMIT {ph('n')}) AS history_{k}"
        for k in range(n_tickers)
    ]
    names = ", ".join(ph(f"t{k}") for k in range(n_tickers))
    parts.append(
        f"SELECT {cols} FROM {price_data.name} WHERE ticker IN ({names}) "
        f"AND ts >= {ph('first')} AND ts < {ph('end')}"
    )
    return " UNION ALL ".join(parts)


def _copy_columns(engine: Engine, sql: str, params: dict) -> dict[str, np.ndarray]:
    """PostgreSQL: ``COPY (statement) TO STDOUT`` as CSV into pandas' C parser."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            statement = cur.mogrify(sql, params).decode()
            buf = io.StringIO()
            cur.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)", buf)
        raw.commit()
    finally:
        raw.close()
    buf.seek(0)
    dtypes = {"ticker": "string", "ts": str, **dict.fromkeys((*PRICE_COLUMNS, "volume"), "f8")}
    frame = pd.read_csv(buf, names=list(BAR_COLUMNS), dtype=dtypes, engine="c")
    return {c: frame[c].to_numpy() for c in BAR_COLUMNS}


def _cursor_columns(engine: Engine, sql: str, params: dict) -> dict[str, np.ndarray]:
    """Other backends: the DBAPI cursor's tuples turned into columns, no Row objects."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(sql, params).cursor.fetchall()
    if not rows:
        return {
            c: np.zeros(0, dtype=object if c in ("ticker", "ts") else "f8") for c in BAR_COLUMNS
        }
    values = list(zip(*rows, strict=True))
    return {
        c: np.asarray(v, dtype=object if k < 2 else "f8")
        for k, (c, v) in enumerate(zip(BAR_COLUMNS, values, strict=True))
    }


def _frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The bar layout: ticker string, ts datetime64[ns, UTC] (parsed by numpy: ISO text
    without an offset), prices and volume float64."""
    ts = np.asarray(columns["ts"], dtype=str).astype("datetime64[ns]")
    return pd.DataFrame(
        {
            "ticker": pd.array(columns["ticker"], dtype="string"),
            "ts": pd.DatetimeIndex(ts).tz_localize("UTC"),
            **{c: np.asarray(columns[c], dtype="f8") for c in (*PRICE_COLUMNS, "volume")},
        }
    )
