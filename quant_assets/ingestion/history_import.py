"""What ``quant import`` needs from the core: the sessions to import, and per ticker what the
database holds of them afterwards (pure of Dagster; the import itself is a ``raw_bars`` run).

The span
    Given start and end, those; otherwise the source's own coverage when it can tell
    (``KnowsCoverage``: the file source), from the first bar of any ticker to the last. Either
    way it is cut to the sessions that may be stored (``QUANT_PARTITIONS_START`` … today), and
    what was cut is said in a note.

The report
    Per ticker over the span, read back from the database: sessions with bars, rows stored,
    quarantined rows by reason (extended-hours rows apart: real trades outside the regular
    session, not faults), the typical share of session minutes with a bar (``coverage``), first
    and last bar, holes of whole sessions and truncated sessions. Being a reading of what is
    stored, it is the same after a re-import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from quant_assets.market import calendar
from quant_assets.market.bar_validation import NOT_FAULTS
from quant_assets.market.coverage import (
    TickerCoverage,
    summarize_sessions,
    ticker_coverage,
    typical_share,
)
from quant_assets.market.file_source import Coverage
from quant_assets.market.sources import MarketSource
from quant_assets.storage.bars import quarantine_counts, read_bars


class HistoryImportError(ValueError):
    """The import cannot be planned (no span given or known, a ticker without partitions,
    nothing left to import)."""


@runtime_checkable
class KnowsCoverage(Protocol):
    """A source that can tell what history it holds per ticker (the file source)."""

    def coverage(self, ticker: str) -> Coverage:
        """First and last bar start and the row count of ``ticker``."""
        ...


@dataclass(frozen=True)
class ImportSpan:
    """Sessions ``first`` … ``last`` to import, and notes on how they were chosen."""

    first: pd.Timestamp
    last: pd.Timestamp
    notes: tuple[str, ...] = ()

    @property
    def sessions(self) -> pd.DatetimeIndex:
        """The trading sessions of the span."""
        return calendar.sessions(self.first, self.last)


def import_span(
    source: MarketSource,
    tickers: Sequence[str],
    start: date | None,
    end: date | None,
    earliest: date,
    latest: date,
) -> ImportSpan:
    """The sessions to import: ``start`` … ``end`` where given, else the source's coverage of
    ``tickers``; cut to ``earliest`` … ``latest`` (the sessions that may be stored)."""
    notes: list[str] = []
    if start is None or end is None:
        known = _coverage_span(source, tickers)
        if known is None:
            raise HistoryImportError(
                f"source {source.name!r} cannot tell what history it holds: give --start and "
                "--end (YYYY-MM-DD)"
            )
        start = start or known[0]
        end = end or known[1]
        notes.append(f"source {source.name} holds bars from {known[0]} to {known[1]}")
    if start < earliest:
        notes.append(
            f"sessions before {earliest} are left out: raw_bars partitions start there "
            "(QUANT_PARTITIONS_START)"
        )
    if end > latest:
        notes.append(f"sessions after {latest} are left out (they have not happened)")
    days = _sessions(max(start, earliest), min(end, latest))
    if len(days) == 0:
        raise HistoryImportError(
            f"no trading session to import between {max(start, earliest)} and {min(end, latest)}"
        )
    return ImportSpan(days[0], days[-1], tuple(notes))


def _coverage_span(source: MarketSource, tickers: Sequence[str]) -> tuple[date, date] | None:
    """First and last New York date with a bar of any of ``tickers`` (None: cannot tell)."""
    if not isinstance(source, KnowsCoverage):
        return None
    covered = [source.coverage(t) for t in tickers]
    firsts = [c.first for c in covered if c.first is not None]
    lasts = [c.last for c in covered if c.last is not None]
    if not firsts:
        raise HistoryImportError(f"source {source.name!r} holds no bar of {', '.join(tickers)}")
    return _ny_date(min(firsts)), _ny_date(max(lasts))


def _ny_date(ts: pd.Timestamp) -> date:
    return ts.tz_convert(calendar.MARKET_TZ).date()


def _sessions(first: date, last: date) -> pd.DatetimeIndex:
    return calendar.sessions(first, last) if first <= last else pd.DatetimeIndex([])


@dataclass(frozen=True)
class TickerImport:
    """What the database holds of one ticker over an imported span."""

    coverage: TickerCoverage
    typical_share: float  # median share of session minutes with a bar (NaN: no bar)
    quarantined: dict[str, int]  # faults by reason
    extended_hours: int  # rows outside the regular session (quarantined, not faults)
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None

    @property
    def ticker(self) -> str:
        return self.coverage.ticker

    @property
    def rows(self) -> int:
        """Bars stored."""
        return self.coverage.bars

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        share = None if np.isnan(self.typical_share) else round(float(self.typical_share), 4)
        return {
            **self.coverage.to_dict(),
            "typical_share": share,
            "quarantined": self.quarantined,
            "extended_hours": self.extended_hours,
            "first_ts": None if self.first_ts is None else self.first_ts.isoformat(),
            "last_ts": None if self.last_ts is None else self.last_ts.isoformat(),
        }


def import_report(engine: Engine, tickers: Sequence[str], span: ImportSpan) -> list[TickerImport]:
    """Per ticker (in the order given) what the database holds of the span."""
    start, end = calendar.span_of_days(span.first, span.last)
    bars = read_bars(engine, list(tickers), start, end)
    summary = summarize_sessions(bars, tickers, list(span.sessions))
    coverage = {c.ticker: c for c in ticker_coverage(summary)}
    shares = typical_share(summary)
    refused = quarantine_counts(engine, tickers, start, end)
    reports = []
    for ticker in tickers:
        own = summary[summary["ticker"] == ticker]
        reasons = refused[refused["ticker"] == ticker]
        counts = dict(zip(reasons["reason"].astype(str), reasons["rows"].astype(int), strict=True))
        reports.append(
            TickerImport(
                coverage=coverage[ticker],
                typical_share=float(shares.get(ticker, np.nan)),
                quarantined={k: v for k, v in counts.items() if k not in NOT_FAULTS},
                extended_hours=sum(v for k, v in counts.items() if k in NOT_FAULTS),
                first_ts=_edge(own["first_ts"].min()),
                last_ts=_edge(own["last_ts"].max()),
            )
        )
    return reports


def _edge(ts: pd.Timestamp) -> pd.Timestamp | None:
    return None if pd.isna(ts) else pd.Timestamp(ts)
