"""Session coverage: holes, truncated sessions, zero-bar tickers, thin tickers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant_assets.market import calendar
from quant_assets.market.coverage import (
    MAX_GAP_SESSIONS,
    incomplete_sessions,
    summarize_sessions,
    ticker_coverage,
    typical_share,
)

DAYS = list(calendar.sessions("2026-09-01", "2026-09-30"))


def bars_on(ticker: str, days: list[pd.Timestamp], minutes: slice = slice(None)) -> pd.DataFrame:
    ts = pd.DatetimeIndex(np.concatenate([calendar.session_minutes(d)[minutes] for d in days]))
    return pd.DataFrame({"ticker": ticker, "ts": ts.tz_convert("UTC")})


def coverage_of(bars: pd.DataFrame, tickers: list[str], days=DAYS):
    return {c.ticker: c for c in ticker_coverage(summarize_sessions(bars, tickers, days))}


def test_complete_sessions_have_no_holes_and_no_truncation() -> None:
    cov = coverage_of(bars_on("AAA", DAYS), ["AAA"])["AAA"]
    assert (cov.sessions, cov.sessions_with_bars, cov.bars) == (len(DAYS), len(DAYS), 390 * 21)
    assert cov.minute_share == 1.0 and cov.holes == () and cov.truncated == ()


def test_a_ticker_without_bars_is_one_hole() -> None:
    cov = coverage_of(bars_on("AAA", DAYS), ["AAA", "ZZZ"])["ZZZ"]
    assert cov.bars == 0 and np.isnan(cov.minute_share)
    assert [(h.first, h.last, h.sessions) for h in cov.holes] == [(DAYS[0], DAYS[-1], len(DAYS))]
    assert cov.series_breaks == cov.holes
    assert "ZZZ: 0/21 sessions, no bars" in cov.describe()
    assert coverage_of(bars_on("AAA", DAYS).iloc[:0], ["ZZZ"])["ZZZ"].bars == 0


def test_holes_are_runs_of_sessions_without_bars() -> None:
    short, long = DAYS[3:5], DAYS[8 : 8 + MAX_GAP_SESSIONS + 1]
    kept = [d for d in DAYS if d not in short and d not in long]
    cov = coverage_of(bars_on("AAA", kept), ["AAA"])["AAA"]
    assert [(h.first, h.sessions) for h in cov.holes] == [(short[0], 2), (long[0], len(long))]
    assert [h.first for h in cov.series_breaks] == [long[0]]
    assert cov.to_dict()["series_breaks"] == 1
    assert "2026-09-04…2026-09-08 (2 sessions)" in cov.describe()


def test_a_session_that_stops_early_is_truncated() -> None:
    stops_1029 = bars_on("AAA", DAYS[5:6], slice(0, 60))  # 09:30 … 10:29
    starts_late = bars_on("AAA", DAYS[6:7], slice(120, None))  # from 11:30
    bars = pd.concat([bars_on("AAA", DAYS[:5]), stops_1029, starts_late])
    cov = coverage_of(bars, ["AAA"], DAYS[:7])["AAA"]
    assert cov.truncated == (DAYS[5], DAYS[6])
    assert "truncated 2026-09-09, 2026-09-10" in cov.describe()


def test_an_early_close_is_not_truncation() -> None:
    early = pd.Timestamp("2026-11-27")  # the day after Thanksgiving closes at 13:00
    cov = coverage_of(bars_on("AAA", [early]), ["AAA"], [early, pd.Timestamp("2026-11-26")])
    assert cov["AAA"].sessions == 1 and cov["AAA"].truncated == ()


@settings(max_examples=30, deadline=None)
@given(share=st.floats(0.16, 1.0), seed=st.integers(0, 2**16))
def test_thin_tickers_are_neither_holey_nor_truncated(share: float, seed: int) -> None:
    """A ticker trading at random in ≥ 16 % of the minutes (the thinnest real one) with a bar
    in the first and last hour of each session is complete, at its own share of minutes."""
    rng = np.random.default_rng(seed)
    full = bars_on("THIN", DAYS)
    minute = calendar.session_minute(full["ts"])
    keep = (rng.random(len(full)) < share) | np.isin(minute, [0, 389])
    cov = coverage_of(full[keep], ["THIN"])["THIN"]
    assert cov.holes == () and cov.truncated == ()
    assert cov.minute_share == keep.sum() / len(full)


@settings(max_examples=30, deadline=None)
@given(
    shares=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=8),
    empty=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_the_typical_share_is_the_median_over_the_sessions_with_bars(
    shares: list[float], empty: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    traded = DAYS[: len(shares)]
    frames = [bars_on("AAA", [d]) for d in traded]
    kept = [f[rng.random(len(f)) < s] for f, s in zip(frames, shares, strict=True)]
    bars = pd.concat([k for k in kept if len(k)] or [frames[0].iloc[:0]])
    days = DAYS[: len(shares) + empty]  # sessions without a bar do not pull the median down
    typical = typical_share(summarize_sessions(bars, ["AAA", "ZZZ"], days))
    with_bars = [len(k) / 390 for k in kept if len(k)]
    assert list(typical.index) == (["AAA"] if with_bars else [])
    if with_bars:
        assert typical["AAA"] == pytest.approx(float(np.median(with_bars)))


def test_completeness_is_judged_against_the_tickers_own_coverage() -> None:
    rng = np.random.default_rng(3)
    full = bars_on("THIN", DAYS[:10])
    thin = full[rng.random(len(full)) < 0.3]
    day = calendar.session_labels(thin["ts"])
    half_day = thin[(day != DAYS[9]) | (calendar.session_minute(thin["ts"]) < 100)]
    summary = summarize_sessions(half_day, ["THIN"], DAYS[:10])
    flagged = incomplete_sessions(summary)
    assert flagged["session"].tolist() == [DAYS[9]]  # a quarter of its usual bars
    assert flagged["expected"].iloc[0] == pytest.approx(0.15, abs=0.02)
    fixed = incomplete_sessions(summary, floor=0.98)
    assert len(fixed) == 10  # the fixed floor calls every thin session incomplete


def test_completeness_uses_earlier_sessions_as_reference() -> None:
    earlier = summarize_sessions(bars_on("AAA", DAYS[:10]), ["AAA", "ZZZ"], DAYS[:10])
    today = summarize_sessions(
        bars_on("AAA", DAYS[10:11], slice(0, 150)), ["AAA", "ZZZ"], DAYS[10:11]
    )
    flagged = incomplete_sessions(today, reference=earlier)
    assert flagged["ticker"].tolist() == ["AAA", "ZZZ"]  # 38 % of a full day; no bars at all
    assert flagged["expected"].iloc[0] == 0.5 and np.isnan(flagged["expected"].iloc[1])
