"""Bar validation: bad frames refused, bad rows quarantined with a reason, never stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant_assets.market.bar_validation import ROW_REASONS, BarValidationError, validate_bars
from quant_assets.market.frames import as_bar_dtypes
from quant_assets_tests.market.bad_rows import bad_rows, frame_of

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
        (lambda f: f.assign(ts=f["ts"] - pd.Timedelta(hours=2)), "extended_hours"),  # 07:3x
        (lambda f: f.assign(ts=f["ts"] - pd.Timedelta(hours=8)), "outside_session"),  # night
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


def test_early_close_minutes_after_1pm_are_post_market() -> None:
    frame = good(2).assign(ts=pd.to_datetime(["2026-11-27 17:59", "2026-11-27 18:00"], utc=True))
    result = validate_bars(frame, TICKERS)
    assert len(result.clean) == 1 and result.reason_counts == {"extended_hours": 1}
    assert result.fault_counts == {}  # extended hours are real trades, not faults


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f.assign(ticker=pd.NA), "missing_ticker"),
        (lambda f: f.assign(ticker="X" * 40), "bad_ticker"),
        (lambda f: f.assign(ticker="A|B"), "bad_ticker"),
        (lambda f: f.assign(ts=pd.Series(pd.NaT, f.index, "datetime64[ns, UTC]")), "missing_ts"),
        (lambda f: f.assign(volume=np.nan), "bad_volume"),
        (lambda f: f.assign(volume=2.5), "bad_volume"),
        (lambda f: f.assign(volume=1e19), "bad_volume"),  # would wrap to a negative int64
        (lambda f: f.assign(ts=pd.Timestamp("1990-01-02 15:00", tz="UTC")), "outside_calendar"),
        (lambda f: f.assign(ts=pd.Timestamp("2099-01-02 15:00", tz="UTC")), "outside_calendar"),
    ],
)
def test_rows_that_used_to_crash_are_quarantined(mutate, reason: str) -> None:
    frame = good().astype({"volume": "float64"})
    bad = mutate(frame.iloc[[3]].copy())
    result = validate_bars(pd.concat([frame.drop(index=3), bad]), TICKERS)
    assert len(result.clean) == 9 and result.reason_counts == {reason: 1}
    assert result.clean["volume"].dtype == "int64"


def test_conflicting_duplicates_are_all_quarantined_and_exact_repeats_kept_once() -> None:
    frame = good(3)
    twin = frame.iloc[[1]].assign(close=frame["close"].iloc[1] + 0.05)
    result = validate_bars(pd.concat([frame, twin, frame.iloc[[2]]]), TICKERS)
    assert len(result.clean) == 2  # rows 0 and 2 (2 sent twice, identical)
    assert result.reason_counts == {"duplicate": 2}


def test_rows_of_sessions_not_asked_for_are_counted() -> None:
    frame = pd.concat([good(2), good(2).assign(ts=lambda f: f["ts"] + pd.Timedelta(days=1))])
    result = validate_bars(frame, TICKERS, sessions=[pd.Timestamp("2026-09-01")])
    assert len(result.clean) == 2 and result.reason_counts == {"outside_request": 2}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (None, "expected a DataFrame"),
        (good().drop(columns="volume"), "lacks columns"),
        (pd.concat([good(), good()[["close"]]], axis=1), "duplicated columns"),
        (good().assign(ts=lambda f: f["ts"].dt.tz_localize(None)), "tz-aware"),
        (good().assign(close="x"), "must be numeric"),
    ],
)
def test_frames_that_are_not_bar_frames_are_refused_with_the_reason(frame, message) -> None:
    with pytest.raises(BarValidationError, match=message):
        validate_bars(frame, TICKERS)


def test_as_bar_dtypes_refuses_naive_times_and_volumes_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="naive"):
        as_bar_dtypes(good().assign(ts=lambda f: f["ts"].dt.tz_localize(None)))
    with pytest.raises(ValueError, match="2\\^53"):
        as_bar_dtypes(good().assign(volume=1e19))


# --- property: every row received is stored or quarantined, unchanged ------------------------
@settings(max_examples=150, deadline=None)
@given(rows=st.lists(bad_rows, max_size=25))
def test_every_row_is_stored_or_quarantined_with_its_values(rows: list[dict]) -> None:
    frame = frame_of(rows, OPEN)
    result = validate_bars(frame, TICKERS, allow_empty=True)
    distinct = frame.drop_duplicates()
    assert len(result.clean) + len(result.quarantined) == len(distinct)
    assert set(result.quarantined["reason"]) <= set(ROW_REASONS)
    received = {_key(r) for r in distinct.itertuples(index=False)}
    kept = {_key(r) for r in result.clean.itertuples(index=False)}
    assert kept <= received  # every stored value equals its input
    assert result.clean["ts"].is_monotonic_increasing or result.clean["ticker"].nunique() > 1


def _key(row: tuple) -> tuple:
    return tuple("nan" if isinstance(v, float) and np.isnan(v) else str(v) for v in row)
