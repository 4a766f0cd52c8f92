"""Fetch whole sessions of bars from a source, validate them and store them (the batch path)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine

from quant_assets.market import calendar
from quant_assets.market.bar_validation import validate_bars
from quant_assets.market.coverage import SUMMARY_COLUMNS
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
) -> IngestResult:
    """Fetch, validate and upsert the regular-session bars of ``ticker`` on ``days``.

    One source request per run of consecutive sessions, covering their whole New York days
    (sources split it as they must); days that are not sessions (holidays) produce empty, valid
    reports. Everything the source returns is validated and accounted for: pre/post-market rows,
    rows of another ticker or of a day not asked for are quarantined with their reason, never
    stored or dropped unseen. Idempotent: re-running stores nothing new.
    """
    labels = sorted({calendar.to_session_label(d) for d in days})
    trading = [d for d in labels if calendar.is_session(d)]
    if not trading:
        return IngestResult([_report(ticker, d, pd.DataFrame(), 0) for d in labels], 0, {})
    fetched = [source.get_bars(ticker, *calendar.span_of_days(a, b)) for a, b in _runs(trading)]
    checked = validate_bars(_combined(fetched), [ticker], allow_empty=True, sessions=trading)
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


def _combined(answers: list[object]) -> object:
    """One frame of the source's answers; an answer that is not a frame is passed on as it is,
    for the validation to refuse with a clear error."""
    for answer in answers:
        if not isinstance(answer, pd.DataFrame):
            return answer
    frames = [a for a in answers if not a.empty]  # type: ignore[union-attr]
    return pd.concat(frames, ignore_index=True) if frames else answers[0]


def _runs(sessions: Sequence[pd.Timestamp]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(first, last) of each run of consecutive sessions (no session of the calendar between)."""
    every = calendar.sessions(sessions[0], sessions[-1])
    position = {day: i for i, day in enumerate(every)}
    runs: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for day in sessions:
        if runs and position[day] == position[runs[-1][1]] + 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


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


def session_summary(reports: Sequence[SessionIngest]) -> pd.DataFrame:
    """The session summary (``market.coverage``) of ingest reports; non-sessions left out."""
    rows = [(r.ticker, r.day, r.rows, r.first_ts, r.last_ts) for r in reports if r.expected_minutes]
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    frame["bars"] = frame["bars"].astype("int64")
    for col in ("first_ts", "last_ts"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
