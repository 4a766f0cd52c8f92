"""YFinanceSource on frames shaped like real yfinance output (this machine cannot reach Yahoo)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from yfinance.exceptions import YFRateLimitError

from quant_assets.market.sources import MarketSource, SourceRangeError
from quant_assets.market.vendor import MinIntervalLimiter
from quant_assets.market.yfinance_source import YFinanceSource, normalize_yfinance_bars

NOW = pd.Timestamp("2026-11-20 21:00", tz="UTC")  # a Friday after the close


def yf_download_frame(
    ticker: str, start: pd.Timestamp, end: pd.Timestamp, multi: bool = True
) -> pd.DataFrame:
    """What ``yf.download(t, interval='1m', auto_adjust=False, prepost=True)`` returns."""
    idx = pd.date_range(start, end, freq="min", inclusive="left", tz="UTC")
    idx = idx.tz_convert("America/New_York").rename("Datetime")
    rng = np.random.default_rng(0)
    close = 100 + rng.normal(0, 0.05, len(idx)).cumsum()
    data = {
        "Adj Close": close,
        "Close": close,
        "High": close + 0.02,
        "Low": close - 0.02,
        "Open": close - 0.01,
        "Volume": rng.integers(100, 1000, len(idx)).astype("int64"),
    }
    frame = pd.DataFrame(data, index=idx)
    if multi:
        columns = [frame.columns, [ticker]]
        frame.columns = pd.MultiIndex.from_product(columns, names=["Price", "Ticker"])
    return frame


class FakeDownloader:
    def __init__(self, fail_first: int = 0, multi: bool = True) -> None:
        self.calls: list[tuple[pd.Timestamp, pd.Timestamp]] = []
        self.fail_first = fail_first
        self.multi = multi

    def __call__(self, ticker: str, **kw: object) -> pd.DataFrame:
        self.calls.append((kw["start"], kw["end"]))  # type: ignore[arg-type]
        assert kw["interval"] == "1m" and kw["auto_adjust"] is False
        if len(self.calls) <= self.fail_first:
            raise YFRateLimitError()
        return yf_download_frame(ticker, kw["start"], kw["end"], self.multi)  # type: ignore[arg-type]


def test_normalizes_multiindex_and_flat_frames_to_regular_session_bars() -> None:
    start = pd.Timestamp("2026-11-19 12:00", tz="UTC")  # 07:00 New York: pre-market included
    end = pd.Timestamp("2026-11-19 23:00", tz="UTC")
    for multi in (True, False):
        bars = normalize_yfinance_bars(yf_download_frame("AAPL", start, end, multi), "AAPL")
        assert list(bars.columns) == ["ticker", "ts", "open", "high", "low", "close", "volume"]
        assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"
        assert len(bars) == 390  # pre/post-market rows dropped
        assert bars["ts"].iloc[0] == pd.Timestamp("2026-11-19 14:30", tz="UTC")
        assert bars["volume"].dtype == "int64"


def test_nan_rows_are_dropped_and_missing_columns_refused() -> None:
    start = pd.Timestamp("2026-11-19 14:30", tz="UTC")
    frame = yf_download_frame("AAPL", start, start + pd.Timedelta(minutes=10))
    frame.iloc[3] = np.nan
    assert len(normalize_yfinance_bars(frame, "AAPL")) == 9
    with pytest.raises(ValueError, match="lacks columns"):
        normalize_yfinance_bars(frame.drop(columns="Volume", level=0), "AAPL")
    assert normalize_yfinance_bars(None, "AAPL").empty


def test_long_ranges_are_split_into_seven_day_requests() -> None:
    fake = FakeDownloader()
    source = YFinanceSource(min_interval_s=0, downloader=fake, now=lambda: NOW)
    start = pd.Timestamp("2026-11-02 14:30", tz="UTC")
    bars = source.get_bars("MSFT", start, NOW)
    assert len(fake.calls) == 3
    assert all(e - s <= pd.Timedelta(days=7) for s, e in fake.calls)
    assert bars["ts"].is_monotonic_increasing and not bars["ts"].duplicated().any()
    assert len(bars) == 15 * 390  # 15 sessions, 3 to 20 November 2026
    assert isinstance(source, MarketSource)


def test_history_older_than_thirty_days_is_a_clear_error() -> None:
    source = YFinanceSource(min_interval_s=0, downloader=FakeDownloader(), now=lambda: NOW)
    with pytest.raises(SourceRangeError, match="last 30 days"):
        source.get_bars("AAPL", NOW - pd.Timedelta(days=40), NOW)
    with pytest.raises(ValueError, match="tz-aware"):
        source.get_bars("AAPL", pd.Timestamp("2026-11-19"), pd.Timestamp("2026-11-20"))


def test_rate_limit_errors_are_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("time.sleep", sleeps.append)
    fake = FakeDownloader(fail_first=2)
    source = YFinanceSource(min_interval_s=0, downloader=fake, now=lambda: NOW)
    start = pd.Timestamp("2026-11-19 14:30", tz="UTC")
    bars = source.get_bars("AAPL", start, start + pd.Timedelta(hours=1))
    assert len(bars) == 60 and len(fake.calls) == 3
    assert len(sleeps) >= 2 and all(s >= 5 for s in sleeps[:2])  # backoff, no tight loop


def test_limiter_spaces_calls() -> None:
    clock = [0.0]
    waited: list[float] = []
    limiter = MinIntervalLimiter(2.0, clock=lambda: clock[0])
    import time as _time

    original = _time.sleep
    _time.sleep = waited.append  # type: ignore[assignment]
    try:
        limiter.wait()
        limiter.wait()
        clock[0] = 10.0
        limiter.wait()
    finally:
        _time.sleep = original
    assert waited == [2.0]


class FakeTicker:
    splits = pd.Series(
        [2.0, 0.0],
        index=pd.DatetimeIndex(["2026-06-10", "2026-08-01"]).tz_localize("America/New_York"),
    )
    dividends = pd.Series(
        [0.24, 0.25],
        index=pd.DatetimeIndex(["2026-05-12", "2026-08-11"]).tz_localize("America/New_York"),
    )


def test_corporate_action_ledgers() -> None:
    source = YFinanceSource(
        min_interval_s=0, ticker_factory=lambda _t: FakeTicker(), now=lambda: NOW
    )
    splits = source.get_splits("AAPL")
    assert splits["ex_date"].tolist() == [pd.Timestamp("2026-06-10")]
    assert splits["ratio"].tolist() == [2.0]
    divs = source.get_dividends("AAPL", start=pd.Timestamp("2026-06-01"))
    assert divs["amount"].tolist() == [0.25]
    assert str(divs["ex_date"].dtype) == "datetime64[ns]"
