"""Bar validation: bad frames refused, bad rows quarantined with a reason, never stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.market.bar_validation import BarValidationError, validate_bars

OPEN = pd.Timestamp("2026-09-01 13:30", tz="UTC")
TICKERS = ("AAPL", "MSFT")


def good(n: int = 10, ticker: str = "AAPL") -> pd.DataFrame:
    close = 100 + np.arange(n) * 0.1
    return pd.DataFrame(
        {
            "ticker": ticker,
            "ts": pd.date_range(OPEN, periods=n, freq="min"),
            "open": close,
            "high": close + 0.2,
            "low": close - 0.2,
            "close": close + 0.1,
            "volume": np.full(n, 500, dtype="int64"),
        }
    )


def test_clean_frame_passes_untouched() -> None:
    result = validate_bars(good(), TICKERS)
    assert len(result.clean) == 10 and result.quarantined.empty


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f.assign(ticker="ZZZZ"), "unknown_ticker"),
        (lambda f: f.assign(close=np.nan), "non_finite_price"),
        (lambda f: f.assign(high=np.inf), "non_finite_price"),
        (lambda f: f.assign(low=-1.0, open=0.0, close=0.0), "non_positive_price"),
        (lambda f: f.assign(high=f["low"] - 1), "high_below_low"),
        (lambda f: f.assign(open=f["high"] + 1), "open_outside_range"),
        (lambda f: f.assign(close=f["low"] - 0.5), "close_outside_range"),
        (lambda f: f.assign(volume=-5), "bad_volume"),
        (lambda f: f.assign(ts=f["ts"] + pd.Timedelta(seconds=30)), "not_minute_aligned"),
        (lambda f: f.assign(ts=f["ts"] - pd.Timedelta(hours=2)), "outside_session"),
        (lambda f: f.assign(ts=f["ts"] + pd.Timedelta(days=5)), "outside_session"),  # Sunday
    ],
)
def test_bad_rows_are_quarantined_with_reason(mutate, reason: str) -> None:
    frame = good()
    bad = mutate(frame.iloc[[3]].copy())
    result = validate_bars(pd.concat([frame.drop(index=3), bad]), TICKERS)
    assert len(result.clean) == 9
    assert result.quarantined["reason"].tolist() == [reason]
    assert result.reason_counts == {reason: 1}


def test_conflicting_duplicates_are_quarantined_identical_ones_kept_once() -> None:
    frame = good(5)
    same = validate_bars(pd.concat([frame, frame.iloc[[2]]]), TICKERS)
    assert len(same.clean) == 5 and same.quarantined.empty
    conflicting = frame.iloc[[2]].assign(close=frame["close"].iloc[2] + 0.05)
    result = validate_bars(pd.concat([frame, conflicting]), TICKERS)
    assert len(result.clean) == 4
    assert result.reason_counts == {"duplicate": 2}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (good().drop(columns="volume"), "lacks columns"),
        (good().iloc[0:0], "empty"),
        (good().assign(ts=good()["ts"].dt.tz_localize(None)), "tz-aware"),
        (good().assign(close=good()["close"].astype(str)), "must be numeric"),
    ],
)
def test_bad_frames_are_refused_whole(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(BarValidationError, match=message):
        validate_bars(frame, TICKERS)


def test_empty_frame_allowed_for_a_holiday() -> None:
    result = validate_bars(good().iloc[0:0], TICKERS, allow_empty=True)
    assert result.clean.empty and result.quarantined.empty


def test_early_close_minutes_after_1pm_are_outside_session() -> None:
    frame = good(2).assign(ts=pd.to_datetime(["2026-11-27 17:59", "2026-11-27 18:00"], utc=True))
    result = validate_bars(frame, TICKERS)
    assert len(result.clean) == 1 and result.reason_counts == {"outside_session": 1}
