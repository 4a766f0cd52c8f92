"""read_live_bars (one statement; COPY on PostgreSQL) returns what the per-ticker reads did."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.corporate_actions.adjusted_store import history_start, read_adjusted_bars
from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS
from quant_assets.monitoring.live_read import read_live_bars
from quant_assets.storage.bars import read_bars
from quant_assets_tests.monitoring.conftest import DAYS, TICKERS


def per_ticker_read(
    engine: Engine, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp, history: int
) -> pd.DataFrame:
    """The read live scoring did before: history_start + read_adjusted_bars per ticker, then
    the session's raw bars."""
    day_start, _ = calendar.span_of_days(calendar.session_of(start), calendar.session_of(start))
    frames = [
        read_adjusted_bars(engine, [t], history_start(engine, t, day_start, history), day_start)
        for t in tickers
    ]
    frames.append(read_bars(engine, tickers, day_start, end))
    bars = pd.concat(frames, ignore_index=True)[list(BAR_COLUMNS)]
    bars["volume"] = bars["volume"].astype("float64")
    return bars.sort_values(["ticker", "ts"], ignore_index=True)


@pytest.mark.parametrize("history", [1, 50, 400, 100_000])
def test_one_statement_reads_what_the_per_ticker_reads_did(market_db: Engine, history: int) -> None:
    last = DAYS[-1]
    start = pd.Timestamp(f"{last.date()} 11:00", tz=calendar.MARKET_TZ).tz_convert("UTC")
    end = start + pd.Timedelta(minutes=60)
    tickers = [*TICKERS, "NONE"]  # a ticker without bars reads as nothing
    got = read_live_bars(market_db, tickers, start, end, history)
    pd.testing.assert_frame_equal(got, per_ticker_read(market_db, tickers, start, end, history))
    assert got["ts"].max() < end and (got.groupby("ticker")["ts"].min() < start).all()


def test_empty_and_invalid_requests(market_db: Engine) -> None:
    start = calendar.session_bounds(DAYS[-1])[0]
    assert read_live_bars(market_db, [], start, start, 10).empty
    assert list(read_live_bars(market_db, ["NONE"], start, start, 10).columns) == list(BAR_COLUMNS)
    with pytest.raises(ValueError, match="history_bars"):
        read_live_bars(market_db, TICKERS, start, start, 0)
