"""The issue's fault-injection scenario, end to end.

A whole session of four tickers is replayed with the source failing 30 % of its calls
(timeouts, connection resets, server errors — seeded) and the database refusing connections for
45 minutes; the buffer is kept small enough to overflow during the outage. The poller must
never crash; after the gap_backfill_sensor has run (and its runs executed), price_data must hold
exactly what the source has — the synthetic market's ground truth, planted no-trade minutes and
the halt absent — with no duplicates, and the gaps of only no-trade minutes end ``unfillable``.
"""

from __future__ import annotations

import logging

import dagster as dg
import pandas as pd
import pytest

from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.poller import PollerConfig
from quant_assets.ingestion.poller_replay import SimulatedClock, replay
from quant_assets.market import calendar
from quant_assets.market.sources import MarketSource
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import create_db_engine, get_engine
from quant_assets_tests.ingestion.helpers import (
    DAY,
    TICKERS,
    FlakySource,
    Outage,
    duplicate_rows,
    execute,
    market_resource,
    ny,
    run_sensor,
    sample_figures,
)

pytestmark = pytest.mark.slow

# The whole session on SQLite; on PostgreSQL (same code path but COPY) the morning, which still
# holds the database outage and the AMZN halt, to keep the suite quick.
REPLAY_END = {"sqlite": "16:30", "postgresql": "12:45"}


def test_session_with_faults_ends_equal_to_the_source(
    quant_env: Settings, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quant_assets")
    market = market_resource()
    source = market.get_source()
    engine = create_db_engine(quant_env)  # the poller's own engine, with the outage on it
    flaky: dict[str, FlakySource] = {}
    outage: dict[str, Outage] = {}

    def wrap(inner: MarketSource, clock: SimulatedClock) -> MarketSource:
        flaky["source"] = FlakySource(inner, clock, failure_rate=0.3, seed=11)
        outage["db"] = Outage(engine, clock)
        outage["db"].add(ny(DAY, "11:00"), ny(DAY, "11:45"))
        return flaky["source"]

    config = PollerConfig(tickers=tuple(TICKERS), lookback_minutes=2, buffer_max_rows=120)
    replay_end = ny(DAY, REPLAY_END[backend])
    result = replay(source, ny(DAY, "09:00"), replay_end, lambda: engine, config, wrap_source=wrap)
    stats = result.stats
    open_, close = calendar.session_bounds(DAY)
    close = min(close, replay_end - pd.Timedelta(minutes=5))  # what the replay had time to see

    # The poller survived everything and accounted for every session minute: each is stored
    # or inside a queued gap; nothing it stored differs from the source.
    assert flaky["source"].failures > 0.25 * flaky["source"].calls
    assert stats.source_errors == flaky["source"].failures
    assert stats.db_errors >= 1 and outage["db"].refused >= 1
    assert stats.bars_buffered > 0 and stats.bars_dropped > 0 and stats.bars_lost_at_exit == 0
    assert stats.gaps_queued > 0
    errors_logged = [r for r in caplog.records if "failed (" in r.getMessage()]
    assert len(errors_logged) == stats.source_errors  # a log line for every source error
    stored = {t: read_bars(engine, [t], open_, close) for t in TICKERS}
    gaps = queue.entries(engine, queue.OPEN_STATUSES)
    for ticker in TICKERS:
        truth = source.get_bars(ticker, open_, close)
        have = pd.DatetimeIndex(stored[ticker]["ts"])
        assert have.isin(pd.DatetimeIndex(truth["ts"])).all()
        covered = have.union(
            pd.DatetimeIndex(
                [
                    m
                    for g in gaps
                    if g.ticker == ticker
                    for m in pd.date_range(g.start, g.end, freq="min", inclusive="left")
                ]
            )
        )
        minutes = calendar.session_minutes(DAY)
        assert minutes[minutes < close].isin(covered).all(), ticker

    # Backfill: sensor tick → runs → sensor tick settles every entry.
    with dg.instance_for_test() as instance:
        first = run_sensor(instance, None, market)
        assert first.run_requests, "gaps with bars at the source must launch runs"
        keys = [r.partition_key for r in first.run_requests]
        assert len(keys) == len(set(keys)) and set(keys) <= {f"{DAY}|{t}" for t in TICKERS}
        again = run_sensor(instance, first.cursor, market)
        assert not again.run_requests  # in flight: no duplicate launch
        for request in first.run_requests:
            assert execute(instance, request, market).success
        final = run_sensor(instance, again.cursor, market)
        assert not final.run_requests

    db = get_engine(quant_env)
    assert queue.entries(db, queue.OPEN_STATUSES) == []
    settled = queue.entries(db, ("done", "unfillable"))
    assert len(settled) == stats.gaps_queued
    assert all(e.end <= close for e in settled)
    for ticker in TICKERS:
        truth = source.get_bars(ticker, open_, close)
        pd.testing.assert_frame_equal(
            read_bars(db, [ticker], open_, close), truth, check_exact=True
        )
        planted = source.missing_minutes(ticker, open_, close)
        for entry in (e for e in settled if e.ticker == ticker):
            inside = pd.date_range(entry.start, entry.end, freq="min", inclusive="left")
            if entry.status == "unfillable":
                assert inside.isin(planted).all(), entry
            else:
                assert not inside.isin(planted).all(), entry
    assert duplicate_rows(db) == 0
    # The halt lies in one of AMZN's settled entries (the poller keeps one open entry per
    # ticker and session), which says how many of its minutes had no trade at the source.
    halt = source.halts("AMZN", open_, close)
    holding = [e for e in settled if e.ticker == "AMZN" and e.start <= halt[0][0] < e.end]
    assert len(holding) == 1 and holding[0].end >= halt[0][1]
    assert holding[0].status == "unfillable" or "without a trade" in (holding[0].detail or "")
    sample_figures(
        "fault_injection",
        **stats.as_dict(),
        source_failures=flaky["source"].failures,
        db_refusals=outage["db"].refused,
        backfill_runs=len(first.run_requests),
        entries_done=sum(e.status == "done" for e in settled),
        entries_unfillable=sum(e.status == "unfillable" for e in settled),
        replay_wall_s=round(result.wall_s, 1),
    )
    engine.dispose()
