"""The one interface every market data source serves (``MarketSource``) and its errors.

Every source returns the normalized frames of ``market/frames.py``: raw (as traded) 1-minute
bars with ``ts`` the UTC start of the bar, and split / dividend ledgers keyed by ex-date. The
sources: ``synthetic.SyntheticMarket`` (the embedded default), ``yfinance_source.YFinanceSource``,
and the keyed vendor APIs ``alpaca_source.AlpacaSource`` and ``massive_source.MassiveSource``
(their SDKs are optional extras); ``factory.source_from_settings`` picks the configured one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd


@runtime_checkable
class MarketSource(Protocol):
    """What the rest of the system needs from a source of 1-minute bars and corporate actions."""

    name: str

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Raw regular-session bars of one ticker with ``start <= ts < end`` (UTC)."""
        ...

    def get_splits(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Splits (ticker, ex_date, ratio) with ex_date in [start, end] when given."""
        ...

    def get_dividends(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Cash dividends (ticker, ex_date, amount) with ex_date in [start, end] when given."""
        ...


class SourceRangeError(ValueError):
    """The requested range is outside what the source can serve."""


class SourceRequestError(RuntimeError):
    """A vendor request failed (at once, or after its retries); the message carries no secret."""


def require_utc_range(start: pd.Timestamp, end: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Validate a [start, end) request: both tz-aware, start before end; return them in UTC."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(f"timestamps must be tz-aware (got {start!r}, {end!r})")
    if start >= end:
        raise ValueError(f"empty range: start {start} is not before end {end}")
    return start.tz_convert("UTC"), end.tz_convert("UTC")
