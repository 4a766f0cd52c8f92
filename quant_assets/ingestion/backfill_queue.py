"""The persistent backfill queue (table ``backfill_queue``) and the check that settles an entry.

Life of an entry (one gap = one ticker, one session, minutes ``[start_ts, end_ts)``):

``pending``     the live poller found the gap (``enqueue_gaps``); nothing asked for it yet.
``requested``   a ``raw_bars`` run for its day × ticker partition was launched (sensor).
``done``        confirmed: every bar the source has in the gap is in ``price_data``.
``unfillable``  confirmed: the source has no (valid) bar anywhere in the gap — no trade, a halt,
                or (yfinance) older than the source's history.

``assess`` decides between the last two (or ``missing``: the source has bars we lack, so a run
is still needed) by asking the source for the gap's minutes and comparing with ``price_data``.
It makes one source request and one database read per (ticker, session), whatever the number
of entries there. The Dagster sensor and ``quant backfill`` both use it, before launching a run
(a gap of no-trade minutes needs no run) and after one (to confirm the run filled it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quant_assets.ingestion.gaps import Gap, span_per_session
from quant_assets.market import calendar
from quant_assets.market.bar_validation import validate_bars
from quant_assets.market.sources import MarketSource, SourceRangeError
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import to_db_timestamp, to_utc
from quant_assets.storage.schema import backfill_queue

log = logging.getLogger(__name__)

Status = Literal["pending", "requested", "done", "unfillable"]
OPEN_STATUSES: tuple[Status, ...] = ("pending", "requested")
Outcome = Literal["filled", "unfillable", "missing"]


@dataclass(frozen=True)
class GapEntry:
    """One row of ``backfill_queue``."""

    id: int
    ticker: str
    start: pd.Timestamp
    end: pd.Timestamp
    status: str
    detail: str | None
    created_at: pd.Timestamp
    updated_at: pd.Timestamp

    @property
    def day(self) -> pd.Timestamp:
        """The session (New York date label) of the gap: its raw_bars partition's date."""
        return calendar.session_of(self.start)

    @property
    def minutes(self) -> int:
        """How many one-minute bars the gap spans."""
        return int((self.end - self.start) / pd.Timedelta(minutes=1))


@dataclass(frozen=True)
class Assessment:
    """What the source and ``price_data`` say about one entry's minutes."""

    entry: GapEntry
    outcome: Outcome
    source_bars: int  # valid bars the source has in the gap
    stored_bars: int  # of those, how many price_data holds
    detail: str


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _db_ts(ts: pd.Timestamp, engine: Engine) -> object:
    value = to_db_timestamp(ts, engine)
    return value.to_pydatetime()


def enqueue_gaps(
    engine: Engine,
    gaps: Iterable[Gap],
    now: pd.Timestamp | None = None,
    *,
    merge: bool = False,
) -> int:
    """Insert gaps as ``pending`` entries in one transaction; return how many were new.

    A gap already queued (same ticker, start, end — whatever its status) is left alone, so the
    poller may report the same gap twice. With ``merge`` (the live poller) a ticker's gaps of one
    session become one entry: the gaps of the call are spanned, and a still-``pending`` entry of
    that ticker and session that ends before them is extended to cover them (the bars between
    are stored; ``assess`` counts them as kept). A thin ticker thus keeps one open entry per
    session instead of one per pause between its trades.
    """
    wanted = [g for g in gaps if g.end > g.start]
    if merge:
        wanted = span_per_session(wanted)
    if not wanted:
        return 0
    stamp = _db_ts(now or _now(), engine)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(backfill_queue).on_conflict_do_nothing(
        index_elements=["ticker", "start_ts", "end_ts"]
    )
    with engine.begin() as conn:
        if merge:
            wanted = [g for g in wanted if not _extend_pending(conn, engine, g, stamp)]
        if not wanted:
            return 0
        rows = [
            {
                "ticker": g.ticker,
                "start_ts": _db_ts(g.start, engine),
                "end_ts": _db_ts(g.end, engine),
                "status": "pending",
                "detail": None,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for g in wanted
        ]
        return max(conn.execute(stmt, rows).rowcount, 0)


def _extend_pending(conn: Connection, engine: Engine, gap: Gap, stamp: object) -> bool:
    """Stretch the ticker's newest pending entry of the gap's session over the gap, if any.

    When an entry with the stretched span is queued already (any status: e.g. a session
    replayed after its gaps were settled), that entry covers the gap: nothing changes, and the
    gap counts as queued (stretching would duplicate its key)."""
    day_start, _ = calendar.span_of_days(gap.day, gap.day)
    t = backfill_queue
    query = (
        select(t.c.id, t.c.start_ts, t.c.end_ts)
        .where(
            t.c.ticker == gap.ticker,
            t.c.status == "pending",
            t.c.start_ts >= _db_ts(day_start, engine),
            t.c.end_ts <= _db_ts(gap.start, engine),
        )
        .order_by(t.c.end_ts.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    if row is None:
        return False
    end = _db_ts(gap.end, engine)
    covering = select(t.c.id).where(
        t.c.ticker == gap.ticker, t.c.start_ts == row.start_ts, t.c.end_ts == end
    )
    if conn.execute(covering).first() is None:
        conn.execute(update(t).where(t.c.id == row.id).values(end_ts=end, updated_at=stamp))
    return True


def entries(
    engine: Engine,
    statuses: Collection[str] = OPEN_STATUSES,
    tickers: Collection[str] | None = None,
    limit: int | None = None,
) -> list[GapEntry]:
    """Queue entries with one of ``statuses``, oldest gap first."""
    query = select(backfill_queue).where(backfill_queue.c.status.in_(list(statuses)))
    if tickers is not None:
        query = query.where(backfill_queue.c.ticker.in_(list(tickers)))
    query = query.order_by(backfill_queue.c.start_ts, backfill_queue.c.ticker, backfill_queue.c.id)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().fetchall()
    if not rows:
        return []
    frame = pd.DataFrame([dict(r) for r in rows])
    for col in ("start_ts", "end_ts", "created_at", "updated_at"):
        frame[col] = to_utc(frame[col])
    return [
        GapEntry(
            id=int(r.id),
            ticker=str(r.ticker),
            start=r.start_ts,
            end=r.end_ts,
            status=str(r.status),
            detail=None if pd.isna(r.detail) else str(r.detail),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in frame.itertuples(index=False)
    ]


def set_status(
    engine: Engine,
    ids: Iterable[int],
    status: Status,
    detail: str | None = None,
    now: pd.Timestamp | None = None,
) -> int:
    """Move entries to ``status`` (with an optional human-readable detail); return rows changed."""
    id_list = sorted(set(ids))
    if not id_list:
        return 0
    values: dict[str, object] = {"status": status, "updated_at": _db_ts(now or _now(), engine)}
    if detail is not None:
        values["detail"] = detail
    stmt = update(backfill_queue).where(backfill_queue.c.id.in_(id_list)).values(**values)
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount


def settle(engine: Engine, assessments: Iterable[Assessment]) -> dict[str, int]:
    """Mark ``filled`` entries done and ``unfillable`` ones unfillable, all in one transaction;
    return counts per status."""
    now = _db_ts(_now(), engine)
    params = [
        {
            "eid": item.entry.id,
            "new_status": "done" if item.outcome == "filled" else "unfillable",
            "new_detail": item.detail,
        }
        for item in assessments
        if item.outcome != "missing"
    ]
    counts = {"done": 0, "unfillable": 0}
    if not params:
        return counts
    t = backfill_queue
    stmt = (
        update(t)
        .where(t.c.id == bindparam("eid"))
        .values(status=bindparam("new_status"), detail=bindparam("new_detail"), updated_at=now)
    )
    with engine.begin() as conn:
        conn.execute(stmt, params)
    for p in params:
        counts[p["new_status"]] += 1
    return counts


def status_counts(engine: Engine) -> dict[str, int]:
    """How many entries have each status (statuses with none are absent)."""
    query = select(backfill_queue.c.status, func.count()).group_by(backfill_queue.c.status)
    with engine.connect() as conn:
        return {str(status): int(n) for status, n in conn.execute(query).fetchall()}


def by_partition(items: Iterable[GapEntry]) -> dict[tuple[str, pd.Timestamp], list[GapEntry]]:
    """Group entries by (ticker, session): one raw_bars partition each."""
    groups: dict[tuple[str, pd.Timestamp], list[GapEntry]] = {}
    for entry in items:
        groups.setdefault((entry.ticker, entry.day), []).append(entry)
    return groups


def assess(
    engine: Engine,
    source: MarketSource,
    items: Sequence[GapEntry],
    universe: Collection[str],
) -> list[Assessment]:
    """Compare each entry's minutes at the source with ``price_data`` (see the module docstring).

    One source request and one read per (ticker, session). Source bars that bar validation
    refuses count as absent (they would be quarantined, never stored). Source errors propagate
    (the caller decides whether to retry later); a range the source cannot serve any more
    (``SourceRangeError``, e.g. yfinance's 30 days) makes the entries unfillable.
    """
    out: list[Assessment] = []
    for (ticker, _day), group in by_partition(items).items():
        start = min(e.start for e in group)
        end = max(e.end for e in group)
        try:
            fetched = source.get_bars(ticker, start, end)
        except SourceRangeError as err:
            out += [
                Assessment(e, "unfillable", 0, 0, f"source cannot serve it: {err}") for e in group
            ]
            continue
        have = pd.DatetimeIndex(validate_bars(fetched, universe, allow_empty=True).clean["ts"])
        stored = pd.DatetimeIndex(read_bars(engine, [ticker], start, end)["ts"])
        for entry in group:
            out.append(_assess_one(entry, have, stored))
    return out


def _assess_one(entry: GapEntry, have: pd.DatetimeIndex, stored: pd.DatetimeIndex) -> Assessment:
    at_source = have[(have >= entry.start) & (have < entry.end)]
    kept = at_source.isin(stored)
    n_source, n_kept = len(at_source), int(kept.sum())
    span = f"{entry.minutes} minute(s) from {entry.start:%Y-%m-%d %H:%M} UTC"
    if n_source == 0:
        return Assessment(
            entry, "unfillable", 0, 0, f"source has no bar in the {span} (no trade or halt)"
        )
    if n_kept == n_source:
        no_trade = entry.minutes - n_source
        detail = f"filled: {n_source} bar(s) of {span} stored"
        if no_trade:
            detail += f"; {no_trade} minute(s) without a trade at the source"
        return Assessment(entry, "filled", n_source, n_kept, detail)
    return Assessment(
        entry,
        "missing",
        n_source,
        n_kept,
        f"{n_source - n_kept} of {n_source} source bar(s) of {span} not stored yet",
    )


@dataclass
class BackfillReport:
    """What ``backfill`` did."""

    partitions: int = 0
    runs: int = 0
    failed_runs: int = 0
    done: int = 0
    unfillable: int = 0
    still_missing: int = 0


def backfill(
    engine: Engine,
    source: MarketSource,
    universe: Collection[str],
    items: Sequence[GapEntry],
    run_partition: Callable[[str, pd.Timestamp, list[GapEntry]], bool],
    on_partition: Callable[[str, pd.Timestamp], None] | None = None,
) -> BackfillReport:
    """Settle entries partition by partition, running ``run_partition`` where bars are missing.

    The after-hours path (``quant backfill``): for each (ticker, session) the entries are first
    assessed (no-trade gaps settle without a run); if the source has bars the database lacks,
    ``run_partition(ticker, day, entries)`` re-ingests the partition (it returns success) and
    the entries are assessed again. Entries still missing stay ``pending`` with a note.
    """
    report = BackfillReport()
    for (ticker, day), group in by_partition(items).items():
        report.partitions += 1
        missing = _settle_group(engine, source, universe, group, report)
        if missing:
            report.runs += 1
            if run_partition(ticker, day, missing):
                missing = _settle_group(engine, source, universe, missing, report)
                if missing:
                    set_status(
                        engine,
                        [e.id for e in missing],
                        "pending",
                        detail="source bars still not stored after a backfill run",
                    )
            else:
                report.failed_runs += 1
                set_status(engine, [e.id for e in missing], "pending", detail="backfill run failed")
            report.still_missing += len(missing)
        if on_partition is not None:
            on_partition(ticker, day)
    return report


def _settle_group(
    engine: Engine,
    source: MarketSource,
    universe: Collection[str],
    group: Sequence[GapEntry],
    report: BackfillReport,
) -> list[GapEntry]:
    assessments = assess(engine, source, group, universe)
    counts = settle(engine, assessments)
    report.done += counts["done"]
    report.unfillable += counts["unfillable"]
    return [a.entry for a in assessments if a.outcome == "missing"]
