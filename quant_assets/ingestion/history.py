"""How far back a ticker's history must reach for its first sessions to be warm, counted in its
bars at the source (the demo's look-back before its window; it asks the source, not the
database, since it decides what to ingest).

Feature warm-up and label volatility need a number of *bars* before a row, not of sessions: a
liquid ticker has them in a few sessions, a thin one (a trade in 16 % of the minutes) needs about
six times as many. ``history_before`` asks the source for the sessions before a day, newest
first, ``CHUNK_SESSIONS`` at a time, and counts each ticker's regular-session rows until it has
enough. It stops earlier, with the reason, at a hole of more than ``MAX_GAP_SESSIONS`` sessions
without a bar (the features restart after one, so older bars would not help), where the source
serves nothing earlier (``SourceRangeError``), or at the first session that may be stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from quant_assets.market import calendar
from quant_assets.market.coverage import MAX_GAP_SESSIONS
from quant_assets.market.sources import MarketSource, SourceRangeError

log = logging.getLogger(__name__)

CHUNK_SESSIONS = 10  # sessions per request: few calls to a rate-limited vendor, small answers


@dataclass(frozen=True)
class TickerHistory:
    """What the source has of ``ticker`` before a session: ``bars`` counted back to ``start``
    (None: no bar), and why the count stopped short of what was needed (None: it did not)."""

    ticker: str
    bars: int
    start: pd.Timestamp | None
    short_because: str | None


def history_before(
    source: MarketSource,
    tickers: Sequence[str],
    first: pd.Timestamp,
    bars: int,
    earliest: pd.Timestamp,
) -> list[TickerHistory]:
    """Each ticker's history before session ``first``: back until ``bars`` regular-session bars,
    a series-breaking hole, the source's limit, or session ``earliest``."""
    first = calendar.to_session_label(first)
    days = calendar.sessions(earliest, first)
    days = days[days < first]
    histories = [_walk_back(source, ticker, first, days, bars) for ticker in tickers]
    for h in histories:
        if h.short_because is not None:
            log.info(
                "%s: %d of %d bars of history before %s: %s",
                h.ticker, h.bars, bars, first.date(), h.short_because,
            )  # fmt: skip
    return histories


def earliest_start(histories: Sequence[TickerHistory], first: pd.Timestamp) -> pd.Timestamp:
    """The first session any ticker's history needs (``first`` when none has earlier bars)."""
    starts = [h.start for h in histories if h.start is not None]
    return min([*starts, calendar.to_session_label(first)])


def _walk_back(
    source: MarketSource, ticker: str, first: pd.Timestamp, days: pd.DatetimeIndex, needed: int
) -> TickerHistory:
    found, empty, start = 0, 0, None
    end, size = len(days), CHUNK_SESSIONS
    while end > 0:
        lo = max(0, end - size)
        try:
            counts = _session_counts(source, ticker, days[lo], days[end - 1])
        except SourceRangeError:
            if size == 1:  # not even the newest session left: the source's history ends here
                return TickerHistory(ticker, found, start, "the source has nothing earlier")
            size = max(1, size // 2)
            continue
        for day in reversed(days[lo:end]):
            n = counts.get(day, 0)
            if n:
                found, empty, start = found + n, 0, day
            else:
                empty += 1
            if found >= needed:
                return TickerHistory(ticker, found, start, None)
            if empty > MAX_GAP_SESSIONS:
                return TickerHistory(ticker, found, start, _hole(start or first))
        end = lo
    earliest = days[0] if len(days) else first
    why = f"no session before {earliest:%Y-%m-%d} may be stored (QUANT_PARTITIONS_START)"
    return TickerHistory(ticker, found, start, why)


def _hole(after: pd.Timestamp) -> str:
    return f"no bar in the {MAX_GAP_SESSIONS + 1} sessions before {after:%Y-%m-%d}"


def _session_counts(
    source: MarketSource, ticker: str, first: pd.Timestamp, last: pd.Timestamp
) -> dict[pd.Timestamp, int]:
    """Regular-session rows of ``ticker`` at the source per session of ``first … last``."""
    bars = source.get_bars(ticker, *calendar.span_of_days(first, last))
    if bars.empty:
        return {}
    ts = pd.to_datetime(bars["ts"], utc=True)
    regular = ts[calendar.in_regular_session(ts)]
    counts = calendar.session_labels(regular).value_counts()
    return {pd.Timestamp(day): int(n) for day, n in counts.items()}
