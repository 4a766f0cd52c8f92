"""The spike check: bad prints found, real moves and thin, tie-heavy tickers left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from quant_assets.market import calendar
from quant_assets.market.spikes import MIN_SPIKE_LOG, find_price_spikes
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket

DAY = "2026-09-14"


def flat_bars(closes: list[float], ticker: str = "ETF") -> pd.DataFrame:
    ts = calendar.session_minutes(DAY)[: len(closes)].tz_convert("UTC")
    close = np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {"ticker": ticker, "ts": ts, "open": close, "high": close, "low": close, "close": close}
    )


def market_bars(share_traded: float = 1.0, seed: int = 0) -> pd.DataFrame:
    market = SyntheticMarket(SyntheticConfig(tickers=("AAPL", "XOM"), start="2026-08-03"))
    start, end = calendar.span_of_days("2026-09-01", "2026-09-30")
    bars = pd.concat([market.get_bars(t, start, end) for t in market.tickers], ignore_index=True)
    keep = np.random.default_rng(seed).random(len(bars)) < share_traded
    return bars[keep].reset_index(drop=True)


def test_the_bad_print_seen_on_real_data_is_found() -> None:
    bars = flat_bars([18.70, 18.71, 18.69, 18.70, 18.72, 18.70, 18.71, 18.70, 18.69, 18.70])
    bars.loc[5, ["open", "high", "low", "close"]] = [20.73, 20.75, 19.41, 18.71]
    spikes = find_price_spikes(bars)
    assert spikes["column"].tolist() == ["high", "low", "open"]  # the close is fine
    assert (spikes["ts"] == bars["ts"][5]).all()
    assert spikes.loc[spikes["column"] == "open", "reference"].iloc[0] == 18.70


def test_a_real_move_agrees_with_one_side() -> None:
    bars = flat_bars([50.0] * 10 + [53.0] * 10)  # a 6 % jump that holds
    assert find_price_spikes(bars).empty


def test_a_session_edge_is_not_judged() -> None:
    bars = flat_bars([25.0, 30.0, 30.0, 30.0])  # the first bar has nothing before it
    assert find_price_spikes(bars).empty and find_price_spikes(bars.iloc[:0]).empty


def test_the_synthetic_market_has_no_spikes() -> None:
    assert find_price_spikes(market_bars()).empty


@settings(max_examples=10, deadline=None)
@given(share=st.floats(0.16, 0.4), seed=st.integers(0, 1000), tick=st.sampled_from([0.01, 0.05]))
def test_thin_tie_heavy_tickers_raise_no_false_alarm(share: float, seed: int, tick: float) -> None:
    bars = market_bars(share, seed)
    for col in ("open", "high", "low", "close"):  # coarse ticks: many exact-zero returns
        bars[col] = (bars[col] / tick).round() * tick
    assert find_price_spikes(bars).empty


@settings(max_examples=25, deadline=None)
@given(row=st.integers(1, 18), size=st.floats(2 * MIN_SPIKE_LOG, 0.5), up=st.booleans())
def test_a_planted_print_is_always_found(row: int, size: float, up: bool) -> None:
    bars = flat_bars(list(30 + 0.01 * np.sin(np.arange(20))))
    bars.loc[row, "low"] = bars.loc[row, "close"] * np.exp(size if up else -size)
    spikes = find_price_spikes(bars)
    assert spikes[["column"]].values.ravel().tolist() == ["low"]
    assert spikes["ts"].iloc[0] == bars["ts"][row]
