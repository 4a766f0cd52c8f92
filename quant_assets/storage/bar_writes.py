"""What changed in ``price_data`` since a reader last looked: one write stamp per ticker.

Every write of raw bars (``database.upsert_frame`` / ``insert_frame`` on ``price_data``) also
replaces, in the same transaction, its tickers' rows of ``price_data_writes``: a new random
``write_id``, the ``previous_write_id`` it replaced and ``first_ts``, the earliest bar the write
stored for that ticker. A reader that kept a ticker's bars as of ``write_id`` = w then knows:

* the stamp still says w — nothing of that ticker changed;
* its previous write is w — exactly one write since, which touched only bars at or after its
  ``first_ts``;
* anything else (several writes, a stamp it never saw, a recreated table) — read it all again.

The ids are random rather than counted, so a table dropped and made again never repeats one.
On PostgreSQL the stamp is an upsert of the ticker's row, whose row lock makes concurrent
writers of one ticker replace it in their commit order (a sequence would number them in the
order they started). Rows go in ticker order, as the bars do, so writers lock in one order.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quant_assets.storage.schema import price_data_writes


@dataclass(frozen=True)
class WriteStamp:
    """A ticker's latest write of raw bars."""

    write_id: str
    previous_write_id: str | None
    first_ts: pd.Timestamp


def stamp_bar_writes(conn: Connection, bars: pd.DataFrame) -> None:
    """Replace the stamp of every ticker in ``bars`` (just written in ``conn``'s transaction)."""
    if bars.empty:
        return
    first = bars.groupby(bars["ticker"].astype(str), sort=True)["ts"].min()
    write_id = uuid.uuid4().hex
    now = pd.Timestamp.now(tz="UTC")
    sqlite = conn.dialect.name == "sqlite"
    rows = [
        {
            "ticker": ticker,
            "write_id": write_id,
            "first_ts": _db_time(ts, sqlite),
            "written_at": _db_time(now, sqlite),
        }
        for ticker, ts in first.items()
    ]
    t = price_data_writes
    stmt = (sqlite_insert if sqlite else postgres_insert)(t)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.ticker],
        set_={
            "previous_write_id": t.c.write_id,
            "write_id": stmt.excluded.write_id,
            "first_ts": stmt.excluded.first_ts,
            "written_at": stmt.excluded.written_at,
        },
    )
    conn.execute(stmt, rows)


def read_write_stamps(conn: Connection, tickers: Sequence[str]) -> dict[str, WriteStamp]:
    """The stamps of those tickers that have one (a ticker never written has none)."""
    if not tickers:
        return {}
    # The driver's own statement: the live scorer asks every minute, and SQLAlchemy's
    # expanding IN and result processing cost more than the query.
    sql = _stamps_sql(len(tickers), "?" if conn.dialect.paramstyle == "qmark" else "%s")
    return {
        ticker: WriteStamp(write_id, previous, _utc(first))
        for ticker, write_id, previous, first in conn.exec_driver_sql(sql, tuple(tickers))
    }


@functools.lru_cache(maxsize=16)
def _stamps_sql(n_tickers: int, placeholder: str) -> str:
    t = price_data_writes
    names = ", ".join([placeholder] * n_tickers)
    return (
        f"SELECT ticker, write_id, previous_write_id, first_ts FROM {t.name} "
        f"WHERE ticker IN ({names})"
    )


def _db_time(ts: pd.Timestamp, sqlite: bool) -> object:
    """UTC as the backend compares it (SQLite keeps naive UTC text)."""
    utc = pd.Timestamp(ts).tz_convert("UTC").to_pydatetime()
    return utc.replace(tzinfo=None) if sqlite else utc


def _utc(value: object) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
