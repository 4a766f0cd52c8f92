"""The backfill queue table and the source-vs-database check that settles its entries."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.gaps import Gap
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticMarket
from quant_assets.storage.bars import write_bars
from quant_assets_tests.ingestion.helpers import DAY, market_resource, ny


@pytest.fixture(scope="module")
def source() -> SyntheticMarket:
    return market_resource().get_source()


def test_enqueue_is_idempotent_and_round_trips(engine: Engine) -> None:
    gaps = [
        Gap("MSFT", ny(DAY, "10:00"), ny(DAY, "10:03")),
        Gap("AAPL", ny(DAY, "10:00"), ny(DAY, "10:01")),
        Gap("AAPL", ny(DAY, "09:31"), ny(DAY, "09:35")),
    ]
    assert queue.enqueue_gaps(engine, gaps) == 3
    assert queue.enqueue_gaps(engine, gaps[:2]) == 0
    entries = queue.entries(engine)
    assert [(e.ticker, e.start, e.end) for e in entries] == [
        ("AAPL", gaps[2].start, gaps[2].end),
        ("AAPL", gaps[1].start, gaps[1].end),
        ("MSFT", gaps[0].start, gaps[0].end),
    ]
    assert all(e.status == "pending" and e.start.tzinfo is not None for e in entries)
    assert entries[0].minutes == 4 and str(entries[0].day.date()) == DAY
    assert queue.set_status(engine, [entries[0].id], "unfillable", "halt") == 1
    assert queue.status_counts(engine) == {"pending": 2, "unfillable": 1}
    assert [e.detail for e in queue.entries(engine, ["unfillable"])] == ["halt"]
    assert len(queue.entries(engine, limit=1, tickers=["MSFT"])) == 1


def test_assess_tells_missed_from_no_trade_minutes(engine: Engine, source: SyntheticMarket) -> None:
    open_, close = calendar.session_bounds(DAY)
    halt_start, halt_end = source.halts("AMZN", open_, close)[0]
    amzn = source.get_bars("AMZN", open_, close)
    lost = (amzn["ts"] >= ny(DAY, "10:00")) & (amzn["ts"] < ny(DAY, "10:05"))
    write_bars(amzn[~lost], engine)
    queue.enqueue_gaps(
        engine,
        [
            Gap("AMZN", halt_start, halt_end),  # halted: nothing at the source
            Gap("AMZN", ny(DAY, "10:00"), ny(DAY, "10:05")),  # missed: the source has them
            Gap("AMZN", halt_start - pd.Timedelta(minutes=2), halt_start + pd.Timedelta(minutes=1)),
        ],
    )
    results = {
        a.entry.start: a for a in queue.assess(engine, source, queue.entries(engine), ["AMZN"])
    }
    halt = results[halt_start]
    assert (halt.outcome, halt.source_bars) == ("unfillable", 0)
    missed = results[ny(DAY, "10:00")]
    assert (missed.outcome, missed.source_bars, missed.stored_bars) == ("missing", 5, 0)
    partial = results[halt_start - pd.Timedelta(minutes=2)]
    assert (partial.outcome, partial.source_bars) == ("filled", 2)
    assert "1 minute(s) without a trade" in partial.detail
    counts = queue.settle(engine, results.values())
    assert counts == {"done": 1, "unfillable": 1}
    assert [e.start for e in queue.entries(engine)] == [ny(DAY, "10:00")]


class BadBarSource:
    """Serves one bar that bar validation refuses (high below low)."""

    name = "bad"

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "ticker": pd.array([ticker], dtype="string"),
                "ts": pd.DatetimeIndex([start]),
                "open": [10.0], "high": [9.0], "low": [11.0], "close": [10.0], "volume": [5],
            }
        )  # fmt: skip


def test_refused_source_bars_count_as_absent(engine: Engine) -> None:
    queue.enqueue_gaps(engine, [Gap("AAPL", ny(DAY, "10:00"), ny(DAY, "10:01"))])
    (result,) = queue.assess(engine, BadBarSource(), queue.entries(engine), ["AAPL"])
    assert result.outcome == "unfillable"


def test_backfill_runs_only_partitions_that_lack_bars(
    engine: Engine, source: SyntheticMarket
) -> None:
    open_, close = calendar.session_bounds(DAY)
    queue.enqueue_gaps(
        engine,
        [
            Gap("AAPL", ny(DAY, "10:00"), ny(DAY, "10:03")),
            Gap("AAPL", ny(DAY, "11:00"), ny(DAY, "11:02")),
            Gap("AMZN", *source.halts("AMZN", open_, close)[0]),
            Gap("MSFT", ny(DAY, "10:00"), ny(DAY, "10:03")),
        ],
    )
    ran: list[tuple[str, str, int]] = []

    def run_partition(ticker: str, day: pd.Timestamp, missing: list[queue.GapEntry]) -> bool:
        ran.append((ticker, str(day.date()), len(missing)))
        if ticker == "MSFT":
            return False  # a failed run
        write_bars(source.get_bars(ticker, open_, close), engine)
        return True

    report = queue.backfill(
        engine, source, ["AAPL", "AMZN", "MSFT"], queue.entries(engine), run_partition
    )
    assert sorted(ran) == [("AAPL", DAY, 2), ("MSFT", DAY, 1)]  # no run for the halt
    assert (report.partitions, report.runs, report.failed_runs) == (3, 2, 1)
    assert (report.done, report.unfillable, report.still_missing) == (2, 1, 1)
    (left,) = queue.entries(engine)
    assert (
        left.ticker == "MSFT" and left.status == "pending" and left.detail == "backfill run failed"
    )


def test_the_poller_keeps_one_open_entry_per_ticker_and_session(engine: Engine) -> None:
    pauses = [Gap("AAPL", ny(DAY, f"10:{m:02d}"), ny(DAY, f"10:{m + 1:02d}")) for m in (1, 4, 9)]
    assert queue.enqueue_gaps(engine, pauses[:2], merge=True) == 1
    assert queue.enqueue_gaps(engine, pauses[2:], merge=True) == 0  # extends the open entry
    (entry,) = queue.entries(engine)
    assert (entry.start, entry.end) == (ny(DAY, "10:01"), ny(DAY, "10:10"))
    queue.set_status(engine, [entry.id], "requested")
    later = Gap("AAPL", ny(DAY, "11:00"), ny(DAY, "11:01"))
    assert queue.enqueue_gaps(engine, [later], merge=True) == 1  # a requested entry is not grown
    assert len(queue.entries(engine)) == 2


def test_a_replayed_session_whose_gap_is_settled_queues_without_a_duplicate_key(
    engine: Engine,
) -> None:
    """Stretching the open entry over a new gap would give it the span of an entry settled
    before (a session polled again): that entry covers the gap, and nothing is refused."""
    first, second = (
        Gap("AAPL", ny(DAY, f"10:{m:02d}"), ny(DAY, f"10:{m + 1:02d}")) for m in (1, 5)
    )
    assert queue.enqueue_gaps(engine, [first], merge=True) == 1
    assert queue.enqueue_gaps(engine, [second], merge=True) == 0  # stretched to 10:01-10:06
    (settled,) = queue.entries(engine)
    queue.set_status(engine, [settled.id], "done")
    assert queue.enqueue_gaps(engine, [first], merge=True) == 1  # the replay: open again
    assert queue.enqueue_gaps(engine, [second], merge=True) == 0  # covered by the done entry
    spans = sorted(
        (e.start, e.end, e.status)
        for e in queue.entries(engine, ("pending", "requested", "done", "unfillable"))
    )
    assert spans == [
        (ny(DAY, "10:01"), ny(DAY, "10:02"), "pending"),
        (ny(DAY, "10:01"), ny(DAY, "10:06"), "done"),
    ]


def test_settling_many_entries_is_one_transaction(engine: Engine, monkeypatch) -> None:
    gaps = [
        Gap("AAPL", ny(DAY, f"10:{m:02d}"), ny(DAY, f"10:{m + 1:02d}")) for m in range(0, 40, 2)
    ]
    queue.enqueue_gaps(engine, gaps)
    items = [queue.Assessment(e, "unfillable", 0, 0, "no trade") for e in queue.entries(engine)]
    began = []
    real_begin = engine.begin

    def counting_begin():
        began.append(1)
        return real_begin()

    monkeypatch.setattr(engine, "begin", counting_begin)
    assert queue.settle(engine, items) == {"done": 0, "unfillable": 20}
    assert len(began) == 1
    monkeypatch.undo()
    assert queue.status_counts(engine) == {"unfillable": 20}
