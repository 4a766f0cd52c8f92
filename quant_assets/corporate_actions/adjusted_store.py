"""The adjusted-bars store: raw bars × the plan's factors, rebuilt per ticker in one transaction.

Rebuild (``rebuild_ticker`` / ``rebuild_adjusted_bars``)
    When a ticker's fingerprint differs from the one its adjusted bars were built with (a new or
    revised action, an action that became effective, a changed C) every stored session of that
    ticker is rebuilt in **one transaction**: delete the ticker's adjusted rows, insert the new
    ones, record the new state and the ``processed_at`` marks. An exception anywhere inside rolls
    everything back and leaves the previous adjusted rows intact; the next run completes it.
    Otherwise only the sessions asked for are (re)written, also in one transaction.

The plan's ``adjust_prices_for_splits`` / ``adjust_prices_for_dividends`` are here too: each
rebuilds the tickers with an unprocessed action of its kind. ``read_adjusted_bars`` is how the
rest of the system reads the adjusted series.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, text, update

from quant_assets.corporate_actions.adjustment import (
    ADJUSTED_COLUMNS,
    AdjustmentPlan,
    adjust_bars,
    applied_from_json,
    applied_to_json,
    changed_sessions,
    ledger_changes,
    plan_adjustment,
)
from quant_assets.corporate_actions.ledger import (
    DIVIDEND,
    SPLIT,
    describe_action,
    read_corporate_actions,
    stored_prior_closes,
)
from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, AdjustmentKind
from quant_assets.storage.bars import read_bars, read_ticker_rows
from quant_assets.storage.database import get_engine, insert_frame, to_db_timestamp, to_utc
from quant_assets.storage.schema import (
    adjusted_bars,
    adjusted_bars_state,
    corporate_actions,
    price_data,
)

log = logging.getLogger(__name__)

INSERT_CHUNK_ROWS = 50_000

BuildMode = Literal["full", "sessions", "unchanged", "empty"]


# --- database: building adjusted bars ------------------------------------------------------------
@dataclass(frozen=True)
class RawSpan:
    """A ticker's stored raw bars: first and last bar start, and the row count."""

    first_ts: pd.Timestamp
    last_ts: pd.Timestamp
    rows: int


@dataclass(frozen=True)
class BuildState:
    """What a ticker's adjusted bars were last built from (table ``adjusted_bars_state``)."""

    ticker: str
    ledger_hash: str
    applied: pd.DataFrame
    as_of: pd.Timestamp
    raw_rows: int
    raw_last_ts: pd.Timestamp
    built_at: pd.Timestamp


@dataclass(frozen=True)
class TickerBuild:
    """What one ticker's build did.

    mode: ``full`` (every stored session rebuilt in one transaction), ``sessions`` (only the
    sessions asked for), ``unchanged`` (already current), ``empty`` (no raw bars).
    ``stale_sessions``: sessions whose factors changed in this build (earlier data that was
    stale); ``changes``: the ledger differences that caused it, in words.
    """

    ticker: str
    mode: BuildMode
    plan: AdjustmentPlan
    rows_written: int = 0
    sessions_written: list[pd.Timestamp] = field(default_factory=list)
    stale_sessions: list[pd.Timestamp] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    reason: str = ""

    def summary(self) -> str:
        """One line for logs and metadata."""
        if self.mode == "full" and self.reason == "first build":
            return (
                f"{self.ticker}: first build, {len(self.sessions_written)} sessions, "
                f"{len(self.plan.applied)} actions applied"
            )
        if self.mode == "full" and self.stale_sessions:
            return (
                f"rebuilt {len(self.stale_sessions)} earlier sessions of {self.ticker} "
                f"because of {'; '.join(self.changes) or self.reason}"
            )
        return f"{self.ticker}: {self.mode}, {self.rows_written} rows ({self.reason})"


@dataclass(frozen=True)
class Staleness:
    """A ticker whose adjusted bars no longer match the ledger as of its data."""

    ticker: str
    changes: list[str]
    stale_sessions: int
    first_stale: pd.Timestamp | None
    last_session: pd.Timestamp
    fingerprint: str


def raw_span(engine: Engine, ticker: str) -> RawSpan | None:
    """First/last stored raw bar and row count of a ticker (None when it has none)."""
    query = select(func.min(price_data.c.ts), func.max(price_data.c.ts), func.count()).where(
        price_data.c.ticker == ticker
    )
    with engine.connect() as conn:
        first, last, rows = conn.execute(query).one()
    if not rows:
        return None
    both = to_utc(pd.Series([first, last]))
    return RawSpan(both.iloc[0], both.iloc[1], int(rows))


def current_plan(engine: Engine, ticker: str) -> tuple[RawSpan | None, AdjustmentPlan]:
    """The plan a build of ``ticker`` would apply now (ledger as of its last stored session)."""
    span = raw_span(engine, ticker)
    ledger = read_corporate_actions(engine, [ticker])
    as_of = None if span is None else calendar.session_of(span.last_ts)
    candidates = (
        ledger["ex_date"] if as_of is None else ledger["ex_date"][ledger["ex_date"] <= as_of]
    )
    closes = {} if span is None else stored_prior_closes(engine, ticker, candidates)
    plan = plan_adjustment(ticker, ledger, as_of, closes)
    return span, plan


def read_build_state(engine: Engine, ticker: str) -> BuildState | None:
    """The stored state of a ticker's adjusted bars (None: never built)."""
    t = adjusted_bars_state
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.ticker == ticker)).mappings().first()
    if row is None:
        return None
    times = to_utc(pd.Series([row["raw_last_ts"], row["built_at"]]))
    return BuildState(
        ticker=ticker,
        ledger_hash=row["ledger_hash"],
        applied=applied_from_json(row["applied"]),
        as_of=calendar.to_session_label(pd.Timestamp(row["as_of"])),
        raw_rows=int(row["raw_rows"]),
        raw_last_ts=times.iloc[0],
        built_at=times.iloc[1],
    )


def adjusted_sessions(engine: Engine, ticker: str) -> list[pd.Timestamp]:
    """Sessions of a ticker that have adjusted rows."""
    query = select(adjusted_bars.c.session).where(adjusted_bars.c.ticker == ticker).distinct()
    with engine.connect() as conn:
        values = conn.execute(query).scalars().all()
    return sorted(calendar.to_session_label(pd.Timestamp(v)) for v in values)


def rebuild_ticker(
    engine: Engine,
    ticker: str,
    sessions: Sequence[pd.Timestamp] | None = None,
    *,
    force: bool = False,
    now: pd.Timestamp | None = None,
) -> TickerBuild:
    """Bring one ticker's adjusted bars up to date with its raw bars and ledger.

    Full rebuild (all stored sessions, one transaction) when the plan's fingerprint differs from
    the stored state's, when never built, when ``force``, or — with ``sessions`` None — when the
    raw data changed (row count or last bar). Otherwise with ``sessions`` only those sessions are
    rewritten (one transaction); with ``sessions`` None nothing is written.
    """
    now = pd.Timestamp(now if now is not None else pd.Timestamp.now(tz="UTC"))
    span, plan = current_plan(engine, ticker)
    _log_skips(plan)
    if span is None:
        return TickerBuild(ticker, "empty", plan, reason="no raw bars stored")
    state = read_build_state(engine, ticker)
    previous = None if state is None else state.applied
    ledger_stale = state is None or state.ledger_hash != plan.fingerprint
    raw_changed = state is not None and (
        state.raw_rows != span.rows or state.raw_last_ts != span.last_ts
    )
    if force or ledger_stale or (sessions is None and raw_changed):
        reason = (
            "forced" if force and not ledger_stale
            else "first build" if state is None
            else "ledger changed" if ledger_stale
            else "raw bars changed"
        )  # fmt: skip
        bars = read_bars(engine, [ticker], span.first_ts, span.last_ts + pd.Timedelta(minutes=1))
        adjusted = adjust_bars(bars, plan.applied, now)
        days = sorted({calendar.to_session_label(d) for d in adjusted["session"].unique()})
        # Stale = stored sessions whose factors this build changed (none on a first build).
        stale = changed_sessions(days, previous, plan.applied) if previous is not None else []
        changes = ledger_changes(previous, plan.applied) if ledger_stale else []
        requested = {calendar.to_session_label(d) for d in (sessions or [])}
        stale = [d for d in stale if d not in requested]
        _write_full(engine, ticker, adjusted, _state_row(ticker, plan, span, now), plan, now)
        build = TickerBuild(ticker, "full", plan, len(adjusted), days, stale, changes, reason)
        log.info("%s", build.summary())
        return build
    if not sessions:
        return TickerBuild(ticker, "unchanged", plan, reason="adjusted bars are current")
    labels = sorted({calendar.to_session_label(d) for d in sessions})
    start, end = calendar.span_of_days(labels[0], labels[-1])
    bars = read_bars(engine, [ticker], start, end)
    bars = bars[calendar.session_labels(bars["ts"]).isin(labels).to_numpy()]
    adjusted = adjust_bars(bars, plan.applied, now)
    _write_sessions(
        engine, ticker, labels, adjusted, _state_row(ticker, plan, span, now), plan, now
    )
    return TickerBuild(ticker, "sessions", plan, len(adjusted), labels, [], [], "ledger unchanged")


def rebuild_adjusted_bars(
    engine: Engine | None = None,
    tickers: Sequence[str] | None = None,
    sessions: Mapping[str, Sequence[pd.Timestamp]] | None = None,
    *,
    force: bool = False,
    now: pd.Timestamp | None = None,
) -> list[TickerBuild]:
    """``rebuild_ticker`` for each ticker (default: every ticker with raw bars, or the keys of
    ``sessions``); each ticker is its own transaction."""
    engine = engine or get_engine()
    if tickers is None:
        tickers = sorted(sessions) if sessions is not None else _tickers_with_bars(engine)
    return [
        rebuild_ticker(
            engine, t, None if sessions is None else sessions.get(t, []), force=force, now=now
        )
        for t in tickers
    ]


def adjust_prices_for_splits(
    db_engine: Engine | None = None, tickers: Sequence[str] | None = None
) -> list[TickerBuild]:
    """The plan's function: bring in every split not yet processed.

    Rebuilds (raw × all factors, splits and dividends together) each ticker with an
    unprocessed split, so running it again changes nothing: the rebuilt table is a function of
    raw bars and ledger, and an action already applied cannot be applied twice.
    """
    return _adjust_pending(db_engine or get_engine(), SPLIT, tickers)


def adjust_prices_for_dividends(
    db_engine: Engine | None = None, tickers: Sequence[str] | None = None
) -> list[TickerBuild]:
    """The plan's function for cash dividends; see ``adjust_prices_for_splits``."""
    return _adjust_pending(db_engine or get_engine(), DIVIDEND, tickers)


def _adjust_pending(
    engine: Engine, action: str, tickers: Sequence[str] | None
) -> list[TickerBuild]:
    t = corporate_actions
    query = select(t.c.ticker).where(t.c.action == action, t.c.processed_at.is_(None)).distinct()
    with engine.connect() as conn:
        pending = set(conn.execute(query).scalars().all())
    chosen = sorted(pending if tickers is None else pending & set(tickers))
    return rebuild_adjusted_bars(engine, chosen)


def find_stale_tickers(engine: Engine, tickers: Sequence[str]) -> list[Staleness]:
    """Tickers whose stored adjusted bars were built from a different plan than the current one.

    A ticker never built, or without raw bars, is not listed (nothing stored is wrong).
    """
    out = []
    for ticker in tickers:
        state = read_build_state(engine, ticker)
        if state is None:
            continue
        span, plan = current_plan(engine, ticker)
        if span is None or plan.fingerprint == state.ledger_hash:
            continue
        stale = changed_sessions(adjusted_sessions(engine, ticker), state.applied, plan.applied)
        out.append(
            Staleness(
                ticker=ticker,
                changes=ledger_changes(state.applied, plan.applied),
                stale_sessions=len(stale),
                first_stale=stale[0] if stale else None,
                last_session=calendar.session_of(span.last_ts),
                fingerprint=plan.fingerprint,
            )
        )
    return out


def read_adjusted_bars(
    engine: Engine,
    tickers: Sequence[str] | None,
    start: pd.Timestamp,
    end: pd.Timestamp,
    kind: AdjustmentKind = "total_return",
) -> pd.DataFrame:
    """Adjusted bars with ``start <= ts < end`` in the bar layout (volume float64), sorted.

    ``total_return`` (what the models use) or ``split_only`` (close = split_close; open, high,
    low rescaled by split_factor / price_factor).
    """
    if kind not in ("total_return", "split_only"):
        raise ValueError(f"kind must be 'total_return' or 'split_only', not {kind!r}")
    t = adjusted_bars
    factors = ["split_close", "price_factor", "split_factor"] if kind == "split_only" else []
    cols = [*BAR_COLUMNS, *factors]
    frame = read_ticker_rows(engine, t, cols, tickers, start, end)
    frame["ticker"] = frame["ticker"].astype("string")
    for col in cols[2:]:
        if frame[col].dtype != np.float64:  # PostgreSQL's COPY text of an empty result
            frame[col] = frame[col].astype("float64")
    if kind == "total_return":
        return frame
    ratio = frame["split_factor"] / frame["price_factor"]
    for col in ("open", "high", "low"):
        frame[col] = frame[col] * ratio
    frame["close"] = frame["split_close"]
    return frame[list(BAR_COLUMNS)]


def history_start(engine: Engine, ticker: str, before: pd.Timestamp, bars: int) -> pd.Timestamp:
    """The start of the ``bars`` adjusted bars of ``ticker`` just before ``before`` (its first
    bar when it has fewer; ``before`` itself when none): history counted in bars, not sessions."""
    t = adjusted_bars
    earlier = t.c.ts < to_db_timestamp(before, engine)
    nth = (
        select(t.c.ts)
        .where(t.c.ticker == ticker, earlier)
        .order_by(t.c.ts.desc())
        .offset(max(bars - 1, 0))
        .limit(1)
    )
    first = select(func.min(t.c.ts)).where(t.c.ticker == ticker, earlier)
    with engine.connect() as conn:
        found = conn.execute(nth).scalar() if bars > 0 else None
        if found is None:
            found = conn.execute(first).scalar()
    return before if found is None else to_utc(pd.Series([found], dtype="object")).iloc[0]


def read_session_boundaries(engine: Engine, tickers: Sequence[str]) -> pd.DataFrame:
    """Per ticker and session, first and last adjusted close (for the jump check)."""
    t = adjusted_bars
    out = []
    for agg, name in ((func.min, "first_close"), (func.max, "last_close")):
        edge = (
            select(t.c.ticker, t.c.session, agg(t.c.ts).label("ts"))
            .where(t.c.ticker.in_(list(tickers)))
            .group_by(t.c.ticker, t.c.session)
            .subquery()
        )
        query = select(t.c.ticker, t.c.session, t.c.close).join(
            edge, (t.c.ticker == edge.c.ticker) & (t.c.ts == edge.c.ts)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        out.append(pd.DataFrame(rows, columns=["ticker", "session", name]))
    frame = out[0].merge(out[1], on=["ticker", "session"])
    frame["ticker"] = frame["ticker"].astype("string")
    frame["session"] = pd.to_datetime(frame["session"]).astype("datetime64[ns]")
    return frame.sort_values(["ticker", "session"], ignore_index=True)


# --- transactions -------------------------------------------------------------------------------
def _write_full(
    engine: Engine,
    ticker: str,
    adjusted: pd.DataFrame,
    state: dict[str, object],
    plan: AdjustmentPlan,
    now: pd.Timestamp,
) -> None:
    """Replace every adjusted row of the ticker, its state and processed marks: one transaction."""
    with engine.begin() as conn:
        _lock_ticker(conn, ticker)
        conn.execute(delete(adjusted_bars).where(adjusted_bars.c.ticker == ticker))
        _insert_adjusted(conn, adjusted)
        _put_state(conn, state)
        _mark_processed(conn, ticker, plan.applied, now, only_unmarked=False)


def _write_sessions(
    engine: Engine,
    ticker: str,
    labels: Sequence[pd.Timestamp],
    adjusted: pd.DataFrame,
    state: dict[str, object],
    plan: AdjustmentPlan,
    now: pd.Timestamp,
) -> None:
    """Replace the adjusted rows of some sessions of the ticker: one transaction."""
    days = [d.date() for d in labels]
    with engine.begin() as conn:
        _lock_ticker(conn, ticker)
        conn.execute(
            delete(adjusted_bars).where(
                adjusted_bars.c.ticker == ticker, adjusted_bars.c.session.in_(days)
            )
        )
        _insert_adjusted(conn, adjusted)
        _put_state(conn, state)
        _mark_processed(conn, ticker, plan.applied, now, only_unmarked=True)


def _lock_ticker(conn: Connection, ticker: str) -> None:
    """Serialize concurrent builds of one ticker (PostgreSQL; SQLite serializes writers).

    Held to the end of the transaction, so a second build deletes what the first committed
    instead of colliding with it on the primary key.
    """
    if conn.dialect.name == "postgresql":
        key = int(hashlib.sha256(f"adjusted_bars:{ticker}".encode()).hexdigest()[:15], 16)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _insert_adjusted(conn: Connection, adjusted: pd.DataFrame) -> None:
    frame = adjusted.loc[:, list(ADJUSTED_COLUMNS)]
    for start in range(0, len(frame), INSERT_CHUNK_ROWS):
        _insert_chunk(conn, frame.iloc[start : start + INSERT_CHUNK_ROWS])


def _insert_chunk(conn: Connection, chunk: pd.DataFrame) -> None:
    """Plain INSERT of rows known to be absent (their keys were deleted in this transaction)."""
    insert_frame(conn, adjusted_bars.name, chunk)


def _put_state(conn: Connection, state: dict[str, object]) -> None:
    t = adjusted_bars_state
    row = dict(state)
    if conn.dialect.name == "sqlite":  # naive UTC text on SQLite (see schema.py)
        for key in ("raw_last_ts", "built_at"):
            row[key] = row[key].replace(tzinfo=None)  # type: ignore[attr-defined]
    conn.execute(delete(t).where(t.c.ticker == row["ticker"]))
    conn.execute(insert(t), [row])


def _mark_processed(
    conn: Connection, ticker: str, applied: pd.DataFrame, now: pd.Timestamp, only_unmarked: bool
) -> None:
    if applied.empty:
        return
    t = corporate_actions
    stmt = update(t).where(
        t.c.ticker == ticker,
        t.c.ex_date == bindparam("d"),
        t.c.action == bindparam("a"),
    )
    if only_unmarked:
        stmt = stmt.where(t.c.processed_at.is_(None))
    stamp = now.tz_convert("UTC").to_pydatetime()
    if conn.dialect.name == "sqlite":
        stamp = stamp.replace(tzinfo=None)
    params = [
        {"d": pd.Timestamp(r.ex_date).date(), "a": str(r.action)} for r in applied.itertuples()
    ]
    conn.execute(stmt.values(processed_at=stamp), params)


def _state_row(ticker: str, plan: AdjustmentPlan, span: RawSpan, now: pd.Timestamp) -> dict:
    return {
        "ticker": ticker,
        "ledger_hash": plan.fingerprint,
        "applied": applied_to_json(plan.applied),
        "as_of": (plan.as_of or calendar.session_of(span.last_ts)).date(),
        "raw_rows": span.rows,
        "raw_last_ts": span.last_ts.tz_convert("UTC").to_pydatetime(),
        "built_at": now.tz_convert("UTC").to_pydatetime(),
    }


# --- small helpers ------------------------------------------------------------------------------
def _log_skips(plan: AdjustmentPlan) -> None:
    if plan.skipped.empty:
        return
    early = plan.skipped["reason"].str.startswith("before any data")
    for r in plan.skipped[~early].itertuples():
        log.info(
            "%s: skipped %s: %s",
            plan.ticker,
            describe_action(r.ex_date, r.action, r.value),
            r.reason,
        )
    if early.any():
        log.info(
            "%s: skipped %d action(s) dated before any stored data", plan.ticker, int(early.sum())
        )


def _tickers_with_bars(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(price_data.c.ticker).distinct()).scalars().all())
