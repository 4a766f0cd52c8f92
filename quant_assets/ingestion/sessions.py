"""Fetch whole sessions of bars from a source, validate them and store them (the batch path)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine

from quant_assets.market import calendar
from quant_assets.market.bar_validation import validate_bars
from quant_assets.market.sources import MarketSource
from quant_assets.storage.bars import write_bars, write_quarantine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionIngest:
    """What one ticker's session delivered: rows stored, expected minutes, gaps, quarantine."""

    ticker: str
    day: pd.Timestamp
    rows: int
    expected_minutes: int
    quarantined: int
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None

    @property
    def missing_minutes(self) -> int:
        """Session minutes with no stored bar (no trade, or not delivered)."""
        return self.expected_minutes - self.rows


@dataclass(frozen=True)
class IngestResult:
    """Per-session reports plus the number of rows the upsert inserted or changed."""

    sessions: list[SessionIngest]
    rows_changed: int
    quarantine_reasons: dict[str, int]


def ingest_sessions(
    source: MarketSource,
    engine: Engine,
    ticker: str,
    days: Sequence[pd.Timestamp],
    universe: Collection[str],
) -> IngestResult:
    """Fetch, validate and upsert the regular-session bars of ``ticker`` on ``days``.

    One source request covers the span of the days (sources split it as they must); days that
    are not sessions (holidays) produce empty, valid reports. Idempotent: re-running stores
    nothing new.
    """
    labels = sorted({calendar.to_session_label(d) for d in days})
    trading = [d for d in labels if calendar.is_session(d)]
    if not trading:
        return IngestResult([_report(ticker, d, pd.DataFrame(), 0) for d in labels], 0, {})
    start, _ = calendar.session_bounds(trading[0])
    _, end = calendar.session_bounds(trading[-1])
    fetched = source.get_bars(ticker, start, end)
    fetched = fetched[_on_days(fetched["ts"], trading)]
    checked = validate_bars(fetched, universe, allow_empty=True)
    changed = write_bars(checked.clean, engine)
    write_quarantine(checked.quarantined, engine)
    if not checked.quarantined.empty:
        log.warning(
            "%s: quarantined %d bad rows %s",
            ticker,
            len(checked.quarantined),
            checked.reason_counts,
        )
    session_of = calendar.session_labels(checked.clean["ts"])
    quarantined_on = calendar.session_labels(checked.quarantined["ts"])
    reports = [
        _report(ticker, d, checked.clean[session_of == d], int((quarantined_on == d).sum()))
        for d in labels
    ]
    return IngestResult(reports, changed, checked.reason_counts)


def _on_days(ts: pd.Series, days: Sequence[pd.Timestamp]) -> pd.Series:
    return calendar.session_labels(ts).isin(list(days))


def _report(ticker: str, day: pd.Timestamp, bars: pd.DataFrame, quarantined: int) -> SessionIngest:
    empty = bars.empty
    return SessionIngest(
        ticker=ticker,
        day=day,
        rows=len(bars),
        expected_minutes=len(calendar.session_minutes(day)),
        quarantined=quarantined,
        first_ts=None if empty else bars["ts"].iloc[0],
        last_ts=None if empty else bars["ts"].iloc[-1],
    )
