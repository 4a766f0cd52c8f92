"""gap_backfill_sensor with build_sensor_context on a test instance: queue → run requests."""

from __future__ import annotations

import json
import time

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.defs import ingestion as sensors
from quant_assets.defs.ingestion import GapCursor, evaluate_backfills, gap_backfill_sensor
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.defs.runless import report_bars
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.gaps import Gap
from quant_assets.market import calendar
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars, write_bars
from quant_assets.storage.database import get_engine
from quant_assets_tests.ingestion.helpers import DAY, execute, market_resource, ny, run_sensor

MISSED = {  # minutes the "poller" missed, per ticker (the source has bars there)
    "AAPL": (ny(DAY, "10:00"), ny(DAY, "10:07")),
    "MSFT": (ny(DAY, "13:15"), ny(DAY, "13:16")),
}


# The sensor's database calls are the queue's (tested on both backends); the run-lifecycle
# variations run on SQLite only to keep the suite quick.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def db(quant_env: Settings) -> Engine:
    return get_engine(quant_env)


@pytest.fixture
def market() -> MarketSourceResource:
    return market_resource()


def seed_session(
    db: Engine,
    market: MarketSourceResource,
    missed: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = MISSED,
) -> list[Gap]:
    """Store the session of every ticker except the missed minutes; queue those gaps plus the
    AMZN halt (no bars at the source). Return the queued gaps."""
    source = market.get_source()
    open_, close = calendar.session_bounds(DAY)
    gaps = []
    for ticker in market.tickers:
        bars = source.get_bars(ticker, open_, close)
        if ticker in missed:
            start, end = missed[ticker]
            bars = bars[(bars["ts"] < start) | (bars["ts"] >= end)]
            gaps.append(Gap(ticker, start, end))
        write_bars(bars, db)
    halt_start, halt_end = source.halts("AMZN", open_, close)[0]
    gaps.append(Gap("AMZN", halt_start, halt_end))
    assert queue.enqueue_gaps(db, gaps) == len(gaps)
    return gaps


def by_status(db: Engine) -> dict[str, list[queue.GapEntry]]:
    out: dict[str, list[queue.GapEntry]] = {}
    for entry in queue.entries(db, ("pending", "requested", "done", "unfillable")):
        out.setdefault(entry.status, []).append(entry)
    return out


def test_queue_to_run_requests_without_duplicates(db: Engine, market: MarketSourceResource) -> None:
    seed_session(db, market)
    with dg.instance_for_test() as instance:
        first = run_sensor(instance, None, market)
        keys = sorted(r.partition_key for r in first.run_requests)
        assert keys == [f"{DAY}|AAPL", f"{DAY}|MSFT"]
        assert len({r.run_key for r in first.run_requests}) == 2
        assert all(r.run_key.endswith(":a1") for r in first.run_requests)
        status = by_status(db)
        assert [e.ticker for e in status["unfillable"]] == ["AMZN"]  # the halt: no run needed
        assert sorted(e.ticker for e in status["requested"]) == ["AAPL", "MSFT"]
        # Ticks before the runs finish launch nothing again.
        second = run_sensor(instance, first.cursor, market)
        third = run_sensor(instance, second.cursor, market)
        assert not second.run_requests and not third.run_requests
        assert second.skip_reason is not None and "waiting=2" in second.skip_reason.skip_message
        for request in first.run_requests:
            assert execute(instance, request, market).success
        final = run_sensor(instance, third.cursor, market)
        assert not final.run_requests
        assert json.loads(final.cursor) == {"v": 1, "run_keys": {}, "attempts": {}}
    status = by_status(db)
    assert sorted(e.ticker for e in status["done"]) == ["AAPL", "MSFT"]
    assert "pending" not in status and "requested" not in status
    source = market.get_source()
    for ticker, (start, end) in MISSED.items():
        assert len(read_bars(db, [ticker], start, end)) == len(source.get_bars(ticker, start, end))


@SQLITE_ONLY
def test_failed_run_is_retried_under_a_new_run_key(
    db: Engine, market: MarketSourceResource
) -> None:
    seed_session(db, market, missed={"AAPL": MISSED["AAPL"]})
    broken = MarketSourceResource(tickers=market.tickers, synthetic_start="2026-06-01")
    with dg.instance_for_test() as instance:
        first = run_sensor(instance, None, market)
        (request,) = first.run_requests
        failed = dg.materialize(
            [sensors_raw_bars()],
            partition_key=request.partition_key,
            instance=instance,
            resources={"database": DatabaseResource(), "market": broken},
            tags={**request.tags, "dagster/run_key": request.run_key},
            raise_on_error=False,
        )
        assert not failed.success
        second = run_sensor(instance, first.cursor, market)
        (retry,) = second.run_requests
        assert retry.partition_key == request.partition_key
        assert retry.run_key != request.run_key and retry.run_key.endswith(":a2")
        assert execute(instance, retry, market).success
        run_sensor(instance, second.cursor, market)
    assert [e.ticker for e in by_status(db)["done"]] == ["AAPL"]


@SQLITE_ONLY
def test_a_backfill_from_the_ui_settles_entries_without_the_run_key(
    db: Engine, market: MarketSourceResource
) -> None:
    seed_session(db, market)
    with dg.instance_for_test() as instance:
        first = run_sensor(instance, None, market)
        # The poller's runless reports are not runs: they do not settle a request.
        report_bars(instance, market.get_source().get_bars("AAPL", *MISSED["AAPL"]), "test")
        waiting = run_sensor(instance, first.cursor, market)
        assert not waiting.run_requests and len(by_status(db)["requested"]) == 2
        for request in first.run_requests:  # as the UI's partition backfill would: no run key
            result = dg.materialize(
                [sensors_raw_bars()],
                partition_key=request.partition_key,
                instance=instance,
                resources={"database": DatabaseResource(), "market": market},
            )
            assert result.success
        final = run_sensor(instance, waiting.cursor, market)
        assert not final.run_requests
    assert sorted(e.ticker for e in by_status(db)["done"]) == ["AAPL", "MSFT"]


@SQLITE_ONLY
def test_pending_entries_already_filled_need_no_run(
    db: Engine, market: MarketSourceResource
) -> None:
    seed_session(db, market)
    source = market.get_source()
    for ticker, (start, end) in MISSED.items():  # e.g. `quant demo` re-ingested the day
        write_bars(source.get_bars(ticker, start, end), db)
    with dg.instance_for_test() as instance:
        result = run_sensor(instance, None, market)
    assert not result.run_requests
    status = by_status(db)
    assert len(status["done"]) == 2 and len(status["unfillable"]) == 1


def test_lost_requests_retry_and_exhausted_entries_wait_for_the_cli(
    db: Engine, market: MarketSourceResource
) -> None:
    seed_session(db, market, missed={"AAPL": MISSED["AAPL"]})
    source = market.get_source()
    with dg.instance_for_test() as instance:
        cursor = GapCursor()
        requests, _ = evaluate_backfills(instance, db, source, market.tickers, cursor)
        assert len(requests) == 1
        soon, summary = evaluate_backfills(instance, db, source, market.tickers, cursor)
        assert not soon and summary.waiting == 1
        later = time.time() + sensors.LOST_AFTER_S + 5  # the launch never happened
        retried, summary = evaluate_backfills(instance, db, source, market.tickers, cursor, later)
        assert summary.retried == 1 and retried[0].run_key.endswith(":a2")
        (entry,) = by_status(db)["requested"]
        cursor.attempts[entry.id] = sensors.MAX_ATTEMPTS  # ... and the last attempt is lost too
        gave_up, summary = evaluate_backfills(instance, db, source, market.tickers, cursor, later)
        assert not gave_up and summary.retried == 1 and summary.gave_up == 1
        (entry,) = by_status(db)["pending"]
        assert "quant backfill" in (entry.detail or "")
        # Exhausted entries cost nothing on later ticks.
        _, summary = evaluate_backfills(instance, db, source, market.tickers, cursor)
        assert summary.partitions_examined == 0


def test_cursor_round_trip_and_garbage() -> None:
    cursor = GapCursor(run_keys={3: "k"}, attempts={3: 2})
    assert GapCursor.load(cursor.dump()) == cursor
    assert GapCursor.load("not json") == GapCursor()
    assert GapCursor.load(None) == GapCursor()
    key = sensors.run_key_for("2026-03-03|AAPL", list(range(20)), 1)
    assert len(key) < 80 and key.startswith("gap-backfill:2026-03-03|AAPL:")


def test_database_down_skips_the_tick(
    monkeypatch: pytest.MonkeyPatch, market: MarketSourceResource
) -> None:
    monkeypatch.setenv("QUANT_DATABASE_URL", "postgresql+psycopg2://u:secret@127.0.0.1:1/x")
    monkeypatch.setenv("QUANT_DB_CONNECT_ATTEMPTS", "1")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=None,
            resources={"database": DatabaseResource(), "market": market},
        )
        result = gap_backfill_sensor(context)
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    assert result.skip_reason is not None
    message = result.skip_reason.skip_message
    assert "unavailable" in message and "secret" not in message


def test_definitions_load_with_the_sensor() -> None:
    from quant_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    sensor = defs.get_sensor_def("gap_backfill_sensor")
    assert sensor.job_name == "ingest_raw_bars"
    assert sensor.minimum_interval_seconds == sensors.SENSOR_INTERVAL_S


def sensors_raw_bars() -> dg.AssetsDefinition:
    from quant_assets.defs.ingestion import raw_bars

    return raw_bars
