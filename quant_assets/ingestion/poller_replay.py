"""Replay: the live poller's loop against the synthetic market on a simulated clock.

``quant ingest --replay START END`` and the tests run the very same ``Poller`` with
``SimulatedClock.now`` as its clock and ``SimulatedClock.sleep`` as its sleep: sleeping only
moves the clock, so a whole session replays as fast as the machine allows. ``AsOfSource`` shows
the poller what a live feed would show at the simulated time: only bars whose minute is over.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from quant_assets.ingestion.poller import (
    BarsReporter,
    Clock,
    EngineFactory,
    Poller,
    PollerConfig,
    PollerStats,
)
from quant_assets.market import calendar
from quant_assets.market.frames import empty_bars
from quant_assets.market.sources import MarketSource

log = logging.getLogger(__name__)


class SimulatedClock:
    """A clock that moves only when something sleeps on it (or ``advance`` is called)."""

    def __init__(self, start: pd.Timestamp) -> None:
        self._now = _utc(start)

    def now(self) -> pd.Timestamp:
        """The simulated time (UTC)."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass, at once."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (a slow call, a timeout)."""
        if seconds < 0:
            raise ValueError(f"time does not run backwards ({seconds} s)")
        self._now += pd.Timedelta(seconds=seconds)


class AsOfSource:
    """A source seen at the clock's time: only bars whose minute has ended exist yet.

    Wraps a historical source (the synthetic market) so that it behaves like a live feed, for a
    simulated clock (replay) or the real one (``quant ingest`` on the synthetic market).
    """

    def __init__(self, inner: MarketSource, clock: Clock) -> None:
        self.inner = inner
        self._clock = clock
        self.name = f"{inner.name} (as of the clock)"

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The inner source's bars in ``[start, min(end, now floored to the minute))``."""
        end = min(pd.Timestamp(end), self._clock().floor("min"))
        if pd.Timestamp(start) >= end:
            return empty_bars()
        return self.inner.get_bars(ticker, start, end)

    def get_splits(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """The inner source's split ledger."""
        return self.inner.get_splits(ticker, start, end)

    def get_dividends(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """The inner source's dividend ledger."""
        return self.inner.get_dividends(ticker, start, end)


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: the poller's counters, the simulated span and the wall time."""

    stats: PollerStats
    start: pd.Timestamp
    end: pd.Timestamp
    wall_s: float

    @property
    def speedup(self) -> float:
        """Simulated seconds per wall-clock second."""
        return (self.end - self.start).total_seconds() / max(self.wall_s, 1e-9)


SourceWrapper = Callable[[MarketSource, SimulatedClock], MarketSource]


def replay(
    market: MarketSource,
    start: pd.Timestamp,
    end: pd.Timestamp,
    engine_factory: EngineFactory,
    config: PollerConfig,
    *,
    reporter: BarsReporter | None = None,
    wrap_source: SourceWrapper | None = None,
    seed: int = 0,
    poller_hook: Callable[[Poller], None] | None = None,
) -> ReplayResult:
    """Run the poller from ``start`` to ``end`` of simulated time against ``market``.

    ``wrap_source`` may wrap the clocked source (fault injection); ``poller_hook`` sees the
    poller before it runs (e.g. to keep a handle for stopping it).
    """
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError(f"replay end {end} is not after its start {start}")
    clock = SimulatedClock(start)
    source: MarketSource = AsOfSource(market, clock.now)
    if wrap_source is not None:
        source = wrap_source(source, clock)
    poller = Poller(
        config,
        source,
        engine_factory,
        clock=clock.now,
        sleep=clock.sleep,
        reporter=reporter,
        rng=random.Random(seed),
    )
    if poller_hook is not None:
        poller_hook(poller)
    sessions = [d for d in calendar.sessions(start, end) if calendar.session_bounds(d)[0] < end]
    log.info("replaying %s .. %s (%d session(s)) on a simulated clock", start, end, len(sessions))
    began = time.monotonic()
    stats = poller.run(until=end)
    return ReplayResult(stats=stats, start=start, end=end, wall_s=time.monotonic() - began)


def parse_time(text: str) -> pd.Timestamp:
    """A replay bound: ISO date or date-time; without a zone it is New York market time."""
    ts = pd.Timestamp(text)
    if ts.tzinfo is None:
        ts = ts.tz_localize(calendar.MARKET_TZ)
    return ts.tz_convert("UTC")


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts} has no time zone")
    return ts.tz_convert("UTC")
