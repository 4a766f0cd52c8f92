"""The batch look-back: history counted in bars at the source, stopped with a reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_assets.ingestion.history import earliest_start, history_before
from quant_assets.market import calendar
from quant_assets.market.coverage import MAX_GAP_SESSIONS
from quant_assets.market.file_source import FileSource
from quant_assets.market.synthetic import SyntheticConfig, synthetic_market
from quant_assets_tests.market.helpers import (
    market_bars,
    thinned,
    with_rows_at,
    without_days,
    write_bars,
)

TICKERS = ("AAPL", "MSFT")
MARKET = synthetic_market(SyntheticConfig(tickers=TICKERS, start="2026-01-02", end="2026-06-30"))
FIRST = pd.Timestamp("2026-04-01")
EARLIEST = pd.Timestamp("2026-01-02")
BARS = market_bars(MARKET, TICKERS, *calendar.span_of_days("2026-01-02", "2026-03-31"))


def files(bars: pd.DataFrame, folder: Path) -> FileSource:
    write_bars(bars, folder)
    return FileSource(folder)


def regular_bars_per_day(bars: pd.DataFrame, ticker: str) -> pd.Series:
    """Regular-session bars of ``ticker`` per session before FIRST, newest first (the truth)."""
    own = bars[(bars["ticker"] == ticker) & calendar.in_regular_session(bars["ts"])]
    counts = calendar.session_labels(own["ts"]).value_counts()
    days = calendar.sessions(EARLIEST, calendar.session_before(FIRST, 1))
    return counts.reindex(days, fill_value=0).sort_index(ascending=False)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keep=st.floats(0.12, 1.0), needed=st.integers(1, 3000), seed=st.integers(0, 99))
def test_history_reaches_back_exactly_as_far_as_the_bars_needed(
    tmp_path_factory, keep: float, needed: int, seed: int
) -> None:
    bars = thinned(BARS, "MSFT", keep, seed)
    source = files(bars, tmp_path_factory.mktemp("files"))
    histories = {h.ticker: h for h in history_before(source, TICKERS, FIRST, needed, EARLIEST)}
    for ticker in TICKERS:
        per_day = regular_bars_per_day(bars, ticker)
        total = per_day.cumsum()
        enough = total[total >= needed]
        history = histories[ticker]
        assert history.short_because is None and not enough.empty
        # the newest session from which on the ticker has the bars it needs, and no later one
        assert history.start == enough.index[0]
        assert history.bars == int(enough.iloc[0])
    assert earliest_start(list(histories.values()), FIRST) == min(
        h.start for h in histories.values()
    )


def test_a_thin_ticker_reaches_further_back_than_a_liquid_one(tmp_path: Path) -> None:
    source = files(thinned(BARS, "MSFT", 0.25), tmp_path)
    aapl, msft = history_before(source, TICKERS, FIRST, 1010, EARLIEST)
    assert len(calendar.sessions(aapl.start, FIRST)) - 1 == 3  # 390 bars a session
    assert len(calendar.sessions(msft.start, FIRST)) - 1 >= 10  # ~100 bars a session


def test_extended_hours_rows_are_not_counted(tmp_path: Path) -> None:
    day = calendar.session_before(FIRST, 1)
    early = [f"{day.date()} 0{h}:{m:02d}" for h in (4, 5, 6, 7, 8) for m in range(0, 60, 2)]
    source = files(with_rows_at(BARS, "AAPL", early), tmp_path)
    per_day = regular_bars_per_day(BARS, "AAPL")
    # One bar more than the day's regular session has: 150 pre-market rows must not do.
    [history] = history_before(source, ["AAPL"], FIRST, int(per_day.iloc[0]) + 1, EARLIEST)
    assert history.start == per_day.index[1]
    assert history.bars == int(per_day.iloc[:2].sum())


def test_a_series_breaking_hole_stops_the_count_with_the_reason(tmp_path: Path) -> None:
    before = calendar.sessions(EARLIEST, calendar.session_before(FIRST, 1))
    hole = [str(d.date()) for d in before[-12:-2]]  # ten sessions without a bar, 2 before FIRST
    source = files(without_days(BARS, "AAPL", hole), tmp_path)
    [history] = history_before(source, ["AAPL"], FIRST, 5000, EARLIEST)
    assert history.start == before[-2]
    assert history.bars == int(regular_bars_per_day(BARS, "AAPL").iloc[:2].sum())
    assert f"no bar in the {MAX_GAP_SESSIONS + 1} sessions before {before[-2].date()}" in str(
        history.short_because
    )


def test_a_ticker_without_bars_before_the_day_has_no_history(tmp_path: Path) -> None:
    source = files(BARS[BARS["ticker"] == "AAPL"], tmp_path)
    aapl, msft = history_before(source, TICKERS, FIRST, 100, EARLIEST)
    assert msft.bars == 0 and msft.start is None and "no bar in the" in str(msft.short_because)
    assert earliest_start([aapl, msft], FIRST) == aapl.start
    assert earliest_start([msft], FIRST) == FIRST


def test_where_the_source_ends_every_earlier_bar_it_has_is_counted() -> None:
    market = synthetic_market(SyntheticConfig(tickers=("AAPL",), start="2026-03-02"))
    first = pd.Timestamp("2026-03-05")
    [history] = history_before(market, ["AAPL"], first, 5000, EARLIEST)
    truth = market.get_bars("AAPL", *calendar.span_of_days("2026-03-02", "2026-03-04"))
    assert (history.start, history.bars) == (pd.Timestamp("2026-03-02"), len(truth))
    assert history.short_because == "the source has nothing earlier"


def test_the_first_storable_session_ends_the_count(tmp_path: Path) -> None:
    source = files(BARS, tmp_path)
    earliest = pd.Timestamp("2026-03-25")
    [history] = history_before(source, ["AAPL"], FIRST, 10**6, earliest)
    assert history.start == earliest
    per_day = regular_bars_per_day(BARS, "AAPL")
    assert history.bars == int(per_day[per_day.index >= earliest].sum())
    assert "QUANT_PARTITIONS_START" in str(history.short_because)
