"""Fault injection and ground-truth helpers shared by the ingestion and sensor tests."""

from __future__ import annotations

import logging
import random

import dagster as dg
import pandas as pd
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from quant_assets.defs.ingestion import gap_backfill_sensor, raw_bars
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.ingestion.poller_replay import SimulatedClock
from quant_assets.market import calendar
from quant_assets.market.sources import MarketSource

log = logging.getLogger(__name__)

TICKERS = ["AAPL", "MSFT", "NVDA", "AMZN"]
# 2026-03-03: AMZN has a planted 14-minute halt (17:21-17:35 UTC) and a few no-trade minutes
# are planted across the four tickers (synthetic market, seed 7).
DAY = "2026-03-03"


def market_resource() -> MarketSourceResource:
    """The synthetic market the tests replay and the backfill runs read (same config)."""
    return MarketSourceResource(tickers=TICKERS)


def ny(day: str, hhmm: str) -> pd.Timestamp:
    """A New York wall-clock time on ``day``, in UTC."""
    return pd.Timestamp(f"{day} {hhmm}").tz_localize(calendar.MARKET_TZ).tz_convert("UTC")


class FlakySource:
    """Fails a seeded share of calls: timeouts (which also cost simulated time), connection
    resets and server errors; otherwise answers from the wrapped source."""

    def __init__(
        self,
        inner: MarketSource,
        clock: SimulatedClock,
        failure_rate: float = 0.3,
        seed: int = 11,
        timeout_s: float = 10.0,
    ) -> None:
        self.inner = inner
        self.name = f"flaky {inner.name}"
        self.clock = clock
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        self.timeout_s = timeout_s
        self.calls = self.failures = self.timeouts = 0
        self.down_between: tuple[pd.Timestamp, pd.Timestamp] | None = None

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        self.calls += 1
        now = self.clock.now()
        if self.down_between and self.down_between[0] <= now < self.down_between[1]:
            self.failures += 1
            raise ConnectionError("simulated outage: connection refused")
        draw = self.rng.random()
        if draw < self.failure_rate / 3:
            self.failures += 1
            self.timeouts += 1
            self.clock.advance(self.timeout_s)
            raise TimeoutError(f"simulated read timeout after {self.timeout_s:.0f} s")
        if draw < 2 * self.failure_rate / 3:
            self.failures += 1
            raise ConnectionError("simulated connection reset by peer")
        if draw < self.failure_rate:
            self.failures += 1
            raise RuntimeError("simulated HTTP 502 Bad Gateway")
        return self.inner.get_bars(ticker, start, end)

    def get_splits(self, *args: object, **kwargs: object) -> pd.DataFrame:
        return self.inner.get_splits(*args, **kwargs)  # type: ignore[arg-type]

    def get_dividends(self, *args: object, **kwargs: object) -> pd.DataFrame:
        return self.inner.get_dividends(*args, **kwargs)  # type: ignore[arg-type]


class Outage:
    """Makes every new connection of ``engine`` fail while the clock is inside a window."""

    def __init__(self, engine: Engine, clock: SimulatedClock) -> None:
        self.windows: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        self.refused = 0
        self.clock = clock

        @event.listens_for(engine, "engine_connect")
        def refuse(_conn: object) -> None:
            now = clock.now()
            if any(a <= now < b for a, b in self.windows):
                self.refused += 1
                raise OperationalError(
                    "simulated outage", None, ConnectionRefusedError("database is down")
                )

    def add(self, start: pd.Timestamp, end: pd.Timestamp) -> None:
        self.windows.append((start, end))


def run_sensor(
    instance: dg.DagsterInstance, cursor: str | None, market: MarketSourceResource
) -> dg.SensorResult:
    """One sensor tick, as the daemon would evaluate it."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"database": DatabaseResource(), "market": market},
    )
    result = gap_backfill_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def execute(
    instance: dg.DagsterInstance, request: dg.RunRequest, market: MarketSourceResource
) -> dg.ExecuteInProcessResult:
    """Run a sensor's RunRequest in process, tagged as the daemon tags it."""
    return dg.materialize(
        [raw_bars],
        partition_key=request.partition_key,
        instance=instance,
        resources={"database": DatabaseResource(), "market": market},
        tags={**request.tags, "dagster/run_key": request.run_key},  # as the daemon does
    )


def duplicate_rows(engine: Engine) -> int:
    """Rows of price_data beyond one per (ticker, ts)."""
    with engine.connect() as conn:
        total = conn.execute(text("SELECT COUNT(*) FROM price_data")).scalar_one()
        distinct = conn.execute(
            text("SELECT COUNT(*) FROM (SELECT DISTINCT ticker, ts FROM price_data) AS d")
        ).scalar_one()
    return int(total - distinct)


def sample_figures(name: str, **figures: object) -> None:
    """Log a test's figures (shown with ``pytest -o log_cli=true``; quoted in reports)."""
    log.info(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
