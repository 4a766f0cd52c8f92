"""The live poller on a simulated clock: storing, gaps, outages, backoff, market hours, signals."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import dagster as dg
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from quant_assets.defs.runless import runless_reporter
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.gaps import Gap, ranges_of_minutes, span_per_session
from quant_assets.ingestion.poller import Backoff, BarBuffer, Poller, PollerConfig
from quant_assets.ingestion.poller_replay import AsOfSource, SimulatedClock, parse_time, replay
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticMarket
from quant_assets.storage.bars import read_bars, write_bars
from quant_assets.storage.database import DatabaseUnavailableError
from quant_assets_tests.ingestion.helpers import (
    DAY,
    TICKERS,
    FlakySource,
    Outage,
    market_resource,
    ny,
    sample_figures,
)
from quant_assets_tests.market.bad_rows import bad_rows, frame_of


@pytest.fixture
def backend() -> str:
    """The poller's storage calls are covered on PostgreSQL by the queue, sensor and
    fault-injection tests; here SQLite keeps the replays quick."""
    return "sqlite"


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return market_resource().get_source()


def config(**overrides: object) -> PollerConfig:
    return PollerConfig(tickers=tuple(TICKERS), **overrides)  # type: ignore[arg-type]


def poller_on(
    market: SyntheticMarket,
    engine: Engine,
    start: pd.Timestamp,
    flaky: bool = False,
    **overrides: object,
) -> tuple[Poller, SimulatedClock, list[float], FlakySource | None]:
    """A poller on a simulated clock whose sleeps are recorded (and when they began)."""
    clock = SimulatedClock(start)
    source = AsOfSource(market, clock.now)
    wrapped = FlakySource(source, clock, failure_rate=0.0) if flaky else None
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        began.append(clock.now())
        clock.sleep(seconds)

    began: list[pd.Timestamp] = []
    slept_at[id(slept)] = began

    poller = Poller(
        config(**overrides), wrapped or source, lambda: engine, clock=clock.now, sleep=sleep
    )
    return poller, clock, slept, wrapped


slept_at: dict[int, list[pd.Timestamp]] = {}


def planted_gaps(
    market: SyntheticMarket, ticker: str, start: pd.Timestamp, end: pd.Timestamp
) -> list[Gap]:
    return ranges_of_minutes(ticker, market.missing_minutes(ticker, start, end))


def test_replay_stores_the_source_and_queues_only_no_trade_minutes(
    engine: Engine, market: SyntheticMarket
) -> None:
    open_ = calendar.session_bounds(DAY)[0]
    until = ny(DAY, "12:45")  # first contact at 12:10 fetches the session so far
    result = replay(market, ny(DAY, "12:10"), until, lambda: engine, config())
    assert result.stats.source_errors == 0 and result.stats.db_errors == 0
    assert result.speedup > 50
    done = ny(DAY, "12:44")  # every minute before this one was complete at some poll
    expected_gaps = []
    for ticker in TICKERS:
        truth = market.get_bars(ticker, open_, done)
        pd.testing.assert_frame_equal(read_bars(engine, [ticker], open_, done), truth)
        expected_gaps += planted_gaps(market, ticker, open_, done)
    # One open entry per ticker and session, spanning its no-trade minutes (the bars between
    # them are stored).
    queued = {(e.ticker, e.start, e.end) for e in queue.entries(engine)}
    assert queued == {tuple(g) for g in span_per_session(expected_gaps)}
    halt_start, halt_end = market.halts("AMZN", open_, done)[0]
    assert halt_end - halt_start == pd.Timedelta(minutes=14)
    assert any(
        e.ticker == "AMZN" and e.start <= halt_start and halt_end <= e.end
        for e in queue.entries(engine)
    )
    # Polite: at most one request per ticker per poll, only for minutes not yet stored.
    assert result.stats.source_calls <= result.stats.rounds * len(TICKERS)
    assert result.stats.bars_received == result.stats.bars_written


def test_database_outage_is_buffered_and_written_later(
    engine: Engine, market: SyntheticMarket
) -> None:
    poller, clock, _, _ = poller_on(market, engine, ny(DAY, "09:29"))
    outage = Outage(engine, clock)
    outage.add(ny(DAY, "09:40"), ny(DAY, "10:10"))
    stats = poller.run(until=ny(DAY, "10:20"))
    assert stats.db_errors >= 3 and outage.refused == stats.db_errors
    assert stats.bars_buffered > 80 and stats.bars_dropped == 0
    open_ = calendar.session_bounds(DAY)[0]
    for ticker in TICKERS:
        truth = market.get_bars(ticker, open_, ny(DAY, "10:15"))
        pd.testing.assert_frame_equal(read_bars(engine, [ticker], open_, ny(DAY, "10:15")), truth)
    # Retries were spaced out (exponential backoff), not attempted every round.
    assert stats.db_errors < stats.rounds / 4


def test_full_buffer_drops_the_oldest_bars_and_queues_their_minutes(
    engine: Engine, market: SyntheticMarket
) -> None:
    poller, clock, _, _ = poller_on(market, engine, ny(DAY, "09:29"), buffer_max_rows=40)
    Outage(engine, clock).add(ny(DAY, "09:35"), ny(DAY, "10:00"))
    stats = poller.run(until=ny(DAY, "10:15"))
    assert stats.bars_dropped > 0 and stats.buffer_peak == 40
    open_ = calendar.session_bounds(DAY)[0]
    end = ny(DAY, "10:10")
    gaps = queue.entries(engine)
    for ticker in TICKERS:
        stored = pd.DatetimeIndex(read_bars(engine, [ticker], open_, end)["ts"])
        truth = pd.DatetimeIndex(market.get_bars(ticker, open_, end)["ts"])
        lost = truth.difference(stored)
        assert len(lost) > 0
        queued = [g for g in gaps if g.ticker == ticker]
        assert all(any(g.start <= ts < g.end for g in queued) for ts in lost), ticker


def test_source_outage_backs_off_and_older_minutes_become_a_gap(
    engine: Engine, market: SyntheticMarket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="quant_assets.ingestion.poller")
    poller, _, slept, flaky = poller_on(market, engine, ny(DAY, "09:59"), flaky=True)
    assert flaky is not None
    flaky.down_between = (ny(DAY, "10:05"), ny(DAY, "10:35"))
    stats = poller.run(until=ny(DAY, "10:50"))
    backoffs = [s for s in slept if s > 40]
    assert backoffs[:3] == [60.0, 120.0, 240.0]  # 30 s × 2^(n-1): never a tight loop
    outage_rounds = stats.source_errors / len(TICKERS)
    assert outage_rounds <= 7  # 30 minutes down cost a handful of requests per ticker
    assert len([r for r in caplog.records if "failed (" in r.getMessage()]) == stats.source_errors
    assert any("backing off" in r.getMessage() for r in caplog.records)
    # What fell out of the 5-minute lookback while the source was down is queued.
    gaps = [g for g in queue.entries(engine) if g.minutes > 5]
    assert {g.ticker for g in gaps} == set(TICKERS)
    assert all(ny(DAY, "10:04") <= g.start <= ny(DAY, "10:06") for g in gaps)


def test_restart_restores_the_cursor_and_queues_the_downtime(
    engine: Engine, market: SyntheticMarket
) -> None:
    open_ = calendar.session_bounds(DAY)[0]
    write_bars(market.get_bars("AAPL", open_, ny(DAY, "10:00")), engine)
    poller, *_ = poller_on(market, engine, ny(DAY, "10:30"))
    poller.run(until=ny(DAY, "10:40"))
    aapl = [e for e in queue.entries(engine) if e.ticker == "AAPL"]
    assert [(e.start, e.end) for e in aapl] == [(ny(DAY, "10:00"), ny(DAY, "10:25"))]
    assert read_bars(engine, ["AAPL"], ny(DAY, "10:00"), ny(DAY, "10:25")).empty
    # A ticker with nothing stored is fetched from the session's open on first contact.
    msft = read_bars(engine, ["MSFT"], open_, ny(DAY, "10:39"))
    assert len(msft) == len(market.get_bars("MSFT", open_, ny(DAY, "10:39")))


def test_a_restart_after_a_long_outage_queues_only_the_recent_sessions(
    engine: Engine, market: SyntheticMarket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="quant_assets.ingestion.poller")
    long_ago = calendar.session_before(DAY, 20)
    open_, close = calendar.session_bounds(long_ago)
    write_bars(market.get_bars("AAPL", open_, close).tail(1), engine)
    poller, *_ = poller_on(market, engine, ny(DAY, "10:30"), max_backfill_sessions=3)
    poller.run(until=ny(DAY, "10:40"))
    aapl = [e for e in queue.entries(engine) if e.ticker == "AAPL"]
    oldest = calendar.session_bounds(calendar.session_before(DAY, 3))[0]
    assert min(e.start for e in aapl) == oldest  # not the 20 sessions since the stored bar
    assert {calendar.session_of(e.start) for e in aapl} == set(
        calendar.sessions(calendar.session_before(DAY, 3), DAY)
    )
    command = (
        f"quant import --tickers AAPL --start {long_ago.date()} "
        f"--end {calendar.session_before(DAY, 4).date()}"
    )
    assert any(command in r.getMessage() for r in caplog.records)


def test_gaps_the_database_refuses_are_let_go_without_holding_back_bars(
    engine: Engine,
    market: SyntheticMarket,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A data error on queueing gaps is not an outage: no backoff, the bars keep flowing."""
    from sqlalchemy.exc import IntegrityError

    def refuse(*_args: object, **_kwargs: object) -> int:
        raise IntegrityError("INSERT INTO backfill_queue", {}, Exception("UNIQUE constraint"))

    monkeypatch.setattr("quant_assets.ingestion.poller.enqueue_gaps", refuse)
    caplog.set_level(logging.WARNING, logger="quant_assets.ingestion.poller")
    open_ = calendar.session_bounds(DAY)[0]
    write_bars(market.get_bars("AAPL", open_, ny(DAY, "10:00")), engine)  # a gap until 10:25
    poller, *_ = poller_on(market, engine, ny(DAY, "10:30"))
    stats = poller.run(until=ny(DAY, "10:40"))
    assert stats.db_errors == 0 and stats.gaps_found > 0
    assert any("could not queue" in r.getMessage() for r in caplog.records)
    stored = read_bars(engine, ["MSFT"], open_, ny(DAY, "10:39"))
    assert len(stored) == len(market.get_bars("MSFT", open_, ny(DAY, "10:39")))


def test_database_down_at_start_does_not_stop_polling(
    engine: Engine, market: SyntheticMarket
) -> None:
    attempts = {"n": 0}

    def factory() -> Engine:
        attempts["n"] += 1
        if attempts["n"] <= 3:
            raise DatabaseUnavailableError("database postgresql://u:***@db/q did not answer")
        return engine

    clock = SimulatedClock(ny(DAY, "09:40"))
    poller = Poller(
        config(), AsOfSource(market, clock.now), factory, clock=clock.now, sleep=clock.sleep
    )
    stats = poller.run(until=ny(DAY, "10:10"))
    assert attempts["n"] == 4 and stats.db_errors == 3 and stats.bars_buffered > 0
    open_ = calendar.session_bounds(DAY)[0]
    for ticker in TICKERS:
        truth = market.get_bars(ticker, open_, ny(DAY, "10:05"))
        pd.testing.assert_frame_equal(read_bars(engine, [ticker], open_, ny(DAY, "10:05")), truth)


def test_closed_market_sleeps_until_the_next_open_and_sweeps_the_close(
    engine: Engine, market: SyntheticMarket
) -> None:
    poller, _, slept, flaky = poller_on(market, engine, ny(DAY, "15:40"), flaky=True)
    assert flaky is not None
    flaky.down_between = (ny(DAY, "15:50"), ny(DAY, "16:30"))
    poller.run(until=ny("2026-03-04", "09:31"))
    next_open = ny("2026-03-04", "09:30")
    night = [(at, s) for at, s in zip(slept_at[id(slept)], slept, strict=True) if s > 3600]
    assert len(night) == 1  # one long sleep overnight, no polling while closed
    at, seconds = night[0]
    assert ny(DAY, "16:02") <= at <= ny(DAY, "16:10")
    assert at + pd.Timedelta(seconds=seconds) == next_open
    tail = [e for e in queue.entries(engine) if e.end == calendar.session_bounds(DAY)[1]]
    assert {e.ticker for e in tail} == set(TICKERS)  # the last minutes, never fetched


def test_weekend_start_sleeps_until_monday(engine: Engine, market: SyntheticMarket) -> None:
    poller, _, slept, _ = poller_on(market, engine, ny("2026-03-07", "12:00"))
    poller.run(until=ny("2026-03-09", "09:30"))
    assert slept[0] == (ny("2026-03-09", "09:30") - ny("2026-03-07", "12:00")).total_seconds()
    assert poller.stats.source_calls == 0


def test_sigterm_stops_the_loop_cleanly(engine: Engine, market: SyntheticMarket) -> None:
    clock = SimulatedClock(ny(DAY, "10:00"))
    rounds = {"n": 0}

    def sleep(seconds: float) -> None:
        rounds["n"] += 1
        if rounds["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        clock.sleep(seconds)

    before = signal.getsignal(signal.SIGTERM)
    poller = Poller(
        config(), AsOfSource(market, clock.now), lambda: engine, clock=clock.now, sleep=sleep
    )
    with poller.handle_signals():
        stats = poller.run()
    assert poller.stopping and stats.rounds == 3
    assert signal.getsignal(signal.SIGTERM) == before
    assert not read_bars(engine, TICKERS, ny(DAY, "09:30"), ny(DAY, "10:01")).empty


def test_real_sleep_wakes_up_on_stop(engine: Engine, market: SyntheticMarket) -> None:
    saturday = ny("2026-03-07", "12:00")
    poller = Poller(config(), market, lambda: engine, clock=lambda: saturday)
    thread = threading.Thread(target=poller.run)
    began = time.monotonic()
    thread.start()
    time.sleep(0.2)
    poller.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - began < 5


def test_runless_events_show_bars_arriving(engine: Engine, market: SyntheticMarket) -> None:
    with dg.instance_for_test() as instance:
        clock = SimulatedClock(ny(DAY, "09:29"))
        poller = Poller(
            config(), AsOfSource(market, clock.now), lambda: engine,
            clock=clock.now, sleep=clock.sleep, reporter=runless_reporter(instance),
        )  # fmt: skip
        stats = poller.run(until=ny(DAY, "09:36"))
        assert stats.events_reported > 0 and stats.event_errors == 0
        records = instance.fetch_materializations(dg.AssetKey("raw_bars"), limit=1000).records
        assert len(records) == stats.events_reported
        assert {r.partition_key for r in records} == {f"{DAY}|{t}" for t in TICKERS}
        assert all(r.run_id == "" for r in records)  # runless
        written = sum(r.asset_materialization.metadata["rows_written"].value for r in records)
        assert written == stats.bars_written


def test_backoff_and_buffer_units() -> None:
    backoff = Backoff(30, 300)
    assert [backoff.delay(n) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]
    buffer = BarBuffer(max_rows=3)
    bars = pd.DataFrame(
        {
            "ticker": ["A"] * 2,
            "ts": pd.date_range("2026-03-03 15:00", periods=2, freq="min", tz="UTC"),
        }
    )
    assert buffer.add(bars) is None
    dropped = buffer.add(bars.assign(ts=bars["ts"] + pd.Timedelta(minutes=2)))
    assert len(dropped) == 1 and dropped["ts"].iloc[0] == bars["ts"].iloc[0]
    assert buffer.rows == 3 and len(buffer.snapshot()) == 3
    with pytest.raises(ValueError, match="poll_jitter_s"):
        PollerConfig(tickers=("A",), poll_interval_s=10, poll_jitter_s=10)
    assert parse_time("2026-03-03 09:30") == pd.Timestamp("2026-03-03 14:30", tz="UTC")
    sample_figures("backoff", delays=[backoff.delay(n) for n in range(1, 7)])


class GarbageOnce:
    """Answers MSFT once with a frame that is not a bar frame, then once with None."""

    def __init__(self, inner: AsOfSource) -> None:
        self.inner = inner
        self.name = "garbage once"
        self.served: list[str] = []

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        if ticker == "MSFT" and "frame" not in self.served:
            self.served.append("frame")
            return pd.DataFrame({"price": [1.0]})
        if ticker == "MSFT" and "none" not in self.served:
            self.served.append("none")
            return None  # type: ignore[return-value]
        return self.inner.get_bars(ticker, start, end)


def test_malformed_answers_are_skipped_and_logged(
    engine: Engine, market: SyntheticMarket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="quant_assets.ingestion.poller")
    clock = SimulatedClock(ny(DAY, "09:40"))
    source = GarbageOnce(AsOfSource(market, clock.now))
    poller = Poller(config(), source, lambda: engine, clock=clock.now, sleep=clock.sleep)
    stats = poller.run(until=ny(DAY, "10:00"))
    assert source.served == ["frame", "none"]
    assert stats.source_errors == 2  # both logged, MSFT skipped twice, the others stored
    assert len([r for r in caplog.records if "failed (BarValidationError" in r.getMessage()]) == 2
    open_ = calendar.session_bounds(DAY)[0]
    for ticker in TICKERS:
        truth = market.get_bars(ticker, open_, ny(DAY, "09:55"))
        pd.testing.assert_frame_equal(read_bars(engine, [ticker], open_, ny(DAY, "09:55")), truth)


def test_an_unexpected_error_in_a_round_is_logged_and_survived(
    engine: Engine, market: SyntheticMarket, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SimulatedClock(ny(DAY, "09:40"))
    poller = Poller(config(), AsOfSource(market, clock.now), lambda: engine, clock=clock.now)
    calls = {"n": 0}
    real_step = poller._step

    def flaky_step(now: pd.Timestamp) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyError("a bug")
        return real_step(now)

    poller._step = flaky_step  # type: ignore[method-assign]
    poller._sleep = clock.sleep
    stats = poller.run(until=ny(DAY, "09:50"))
    assert stats.rounds > 10
    assert any("unexpected error in a poll round" in r.getMessage() for r in caplog.records)


class PoisonedRows:
    """Adds one persistent bad row (NaT, a date beyond the calendar, a huge volume) to MSFT's
    every answer: a bad row must never stop the other tickers, nor MSFT's good bars."""

    def __init__(self, inner: AsOfSource) -> None:
        self.inner = inner
        self.name = "poisoned"

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        bars = self.inner.get_bars(ticker, start, end)
        if ticker != "MSFT" or bars.empty:
            return bars
        poison = bars.iloc[[0, 0, 0]].copy().astype({"volume": "float64"})
        poison["ts"] = pd.array(
            [pd.NaT, pd.Timestamp("2099-01-05 15:00", tz="UTC"), bars["ts"].iloc[-1]],
            dtype="datetime64[ns, UTC]",
        )
        poison["volume"] = [1.0, 1.0, 1e19]
        return pd.concat([bars.astype({"volume": "float64"}), poison], ignore_index=True)


def test_a_persistent_bad_row_is_quarantined_and_stops_nothing(
    engine: Engine, market: SyntheticMarket
) -> None:
    clock = SimulatedClock(ny(DAY, "09:40"))
    source = PoisonedRows(AsOfSource(market, clock.now))
    poller = Poller(config(), source, lambda: engine, clock=clock.now, sleep=clock.sleep)
    stats = poller.run(until=ny(DAY, "10:00"))
    assert stats.source_errors == 0 and stats.bars_quarantined > 0
    open_ = calendar.session_bounds(DAY)[0]
    for ticker in TICKERS:  # MSFT included: a bad copy of a bar does not cost the good one
        truth = market.get_bars(ticker, open_, ny(DAY, "09:55"))
        pd.testing.assert_frame_equal(read_bars(engine, [ticker], open_, ny(DAY, "09:55")), truth)
    with engine.connect() as conn:
        reasons = {r[0] for r in conn.exec_driver_sql("SELECT reason FROM bar_quarantine")}
    assert reasons == {"missing_ts", "outside_calendar", "bad_volume"}


def test_a_quarantine_the_database_refuses_holds_back_neither_bars_nor_gaps(
    engine: Engine, market: SyntheticMarket, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import quant_assets.ingestion.poller as poller_module

    def refuse(rows: pd.DataFrame, engine: Engine) -> int:
        raise ValueError("value too long for type character varying(32)")

    monkeypatch.setattr(poller_module, "write_quarantine", refuse)
    clock = SimulatedClock(ny(DAY, "09:40"))
    source = PoisonedRows(AsOfSource(market, clock.now))
    poller = Poller(config(), source, lambda: engine, clock=clock.now, sleep=clock.sleep)
    stats = poller.run(until=ny(DAY, "10:30"))
    assert stats.db_errors == 0  # a data error is not an outage
    assert stats.bars_written > 0 and stats.bars_lost_at_exit == 0
    assert "could not keep" in caplog.text
    assert read_bars(engine, ["AAPL"], ny(DAY, "10:00"), ny(DAY, "10:25")).shape[0] > 20


class ArbitraryRows:
    """Appends the same arbitrary rows to MSFT's every answer (as received, any dtype)."""

    def __init__(self, inner: AsOfSource, extra: pd.DataFrame) -> None:
        self.inner, self.extra, self.name = inner, extra, "arbitrary"

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        bars = self.inner.get_bars(ticker, start, end)
        if ticker != "MSFT":
            return bars
        return pd.concat([bars.astype({"volume": "float64"}), self.extra], ignore_index=True)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(bad_rows, min_size=1, max_size=8))
def test_one_poller_round_stores_other_tickers_whatever_a_ticker_sends(
    engine: Engine, market: SyntheticMarket, rows: list[dict]
) -> None:
    open_, cut = calendar.session_bounds(DAY)[0], ny(DAY, "09:39")
    clock = SimulatedClock(ny(DAY, "09:40"))
    source = ArbitraryRows(AsOfSource(market, clock.now), frame_of(rows, open_))
    poller = Poller(config(), source, lambda: engine, clock=clock.now, sleep=clock.sleep)
    poller.run(until=ny(DAY, "09:41"))
    for ticker in ("AAPL", "NVDA", "AMZN"):
        stored = read_bars(engine, [ticker], open_, cut)
        pd.testing.assert_frame_equal(stored, market.get_bars(ticker, open_, cut))
    # MSFT: whatever was stored is a row it sent, value for value
    sent = pd.concat([market.get_bars("MSFT", open_, cut), frame_of(rows, open_)])
    assert _rows_of(read_bars(engine, ["MSFT"], open_, cut)) <= _rows_of(sent)


def _rows_of(frame: pd.DataFrame) -> set[tuple[str, ...]]:
    values = frame.astype({"volume": "float64"}).itertuples(index=False)
    return {tuple(map(str, row)) for row in values}
