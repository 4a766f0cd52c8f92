"""The numba indicator pass (live path) equals the pandas-ta path (training): bit for bit but
for the Bollinger columns, which agree within pandas' own rounding noise (``features.kernels``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FEATURE_SPEC, FeatureSpec
from quant_assets_tests.features.test_indicators import BRIDGED, SESSIONS, make_bars

BOLLINGER = ["bb_lower", "bb_upper", "bb_bandwidth", "bb_percent"]


def assert_same_features(bars: pd.DataFrame, spec: FeatureSpec = BRIDGED) -> None:
    """Both engines give the same frame: same columns, index and NaNs; the same float bits
    but for the Bollinger columns (two-pass SD vs pandas' online update, whose residue after a
    flat stretch is up to ~3e-7 in price units)."""
    fast = create_features(bars, spec, indicators="numba")
    reference = create_features(bars, spec)
    pd.testing.assert_frame_equal(
        fast.drop(columns=BOLLINGER), reference.drop(columns=BOLLINGER), check_exact=True
    )
    pd.testing.assert_frame_equal(
        fast[BOLLINGER], reference[BOLLINGER], check_exact=False, rtol=1e-8, atol=1e-5
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_tickers=st.integers(1, 4),
    n_sessions=st.integers(1, len(SESSIONS)),
    keep=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
    tick=st.sampled_from([0.0, 0.01, 0.5]),
    head=st.integers(0, 60),
    shuffle=st.booleans(),
)
def test_numba_indicators_equal_pandas_ta(
    n_tickers: int, n_sessions: int, keep: float, seed: int, tick: float, head: int, shuffle: bool
) -> None:
    """Random walks, thin or full, rounded to ticks (repeated prices, flat windows), one short
    ticker of ``head`` bars among them, rows in any order."""
    tickers = tuple(f"T{k}" for k in range(n_tickers))
    bars = make_bars(tickers, SESSIONS[:n_sessions], keep=keep, seed=seed)
    if tick:
        bars["close"] = np.maximum(tick, (bars["close"] / tick).round() * tick)
    short = make_bars(("SHORT",), SESSIONS[:1], seed=seed).iloc[:head]
    bars = pd.concat([bars, short], ignore_index=True)
    if shuffle:
        bars = bars.sample(frac=1.0, random_state=seed)
    assert_same_features(bars)


def test_flat_hole_and_empty_inputs() -> None:
    flat = make_bars(("F",), SESSIONS[:1]).assign(close=20.0, volume=0)
    assert_same_features(flat)
    assert_same_features(make_bars(("AAA",), keep=0.9, seed=3), FEATURE_SPEC)  # hole rule on
    assert_same_features(make_bars().iloc[:0])


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="indicators must be one of"):
        create_features(make_bars().iloc[:5], indicators="talib")
