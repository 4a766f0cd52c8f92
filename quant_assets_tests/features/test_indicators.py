"""create_features: pandas-ta values against textbook formulas, time and lag rules, no lookahead."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_assets.features.indicators import create_features
from quant_assets.features.spec import (
    FEATURE_SPEC,
    FEATURE_TABLE_COLUMNS,
    FEATURE_WARMUP_BARS,
    FeatureSpec,
)
from quant_assets.market import calendar

# Includes a DST switch (Mar 8 -> Mar 11 2024) and an early close (Nov 29 2024, 13:00).
SESSIONS = ("2024-03-07", "2024-03-08", "2024-03-11", "2024-11-29", "2024-12-02")
MINUTES = {day: calendar.session_minutes(day) for day in SESSIONS}
# These sessions skip March to November: the tests of the indicators' arithmetic bridge that
# hole on purpose (the hole rule off); test_a_long_hole_restarts_the_series covers the rule.
BRIDGED = replace(FEATURE_SPEC, max_gap_sessions=None)
NUMERIC = [c for c in FEATURE_TABLE_COLUMNS if c not in ("ticker", "ts")]


def make_bars(
    tickers: tuple[str, ...] = ("AAA", "BBB"),
    sessions: tuple[str, ...] = SESSIONS,
    keep: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Seeded random-walk bars on real session minutes; ``keep`` = share of minutes with a bar."""
    rng = np.random.default_rng(seed)
    minutes = pd.DatetimeIndex(np.concatenate([MINUTES[d].to_numpy() for d in sessions]))
    frames = []
    for ticker in tickers:
        ts = minutes[rng.random(len(minutes)) < keep]
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-3, len(ts))))
        frames.append(
            pd.DataFrame(
                {
                    "ticker": pd.array([ticker] * len(ts), dtype="string"),
                    "ts": ts.astype("datetime64[ns, UTC]"),
                    "open": close,
                    "high": close * 1.001,
                    "low": close * 0.999,
                    "close": close,
                    "volume": rng.integers(0, 5_000, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# ---- textbook formulas, written independently of pandas-ta -------------------------------


def ema_textbook(x: np.ndarray, n: int) -> np.ndarray:
    """EMA with alpha 2/(n+1), seeded by the SMA of the first n values."""
    out = np.full(len(x), np.nan)
    alpha = 2.0 / (n + 1)
    out[n - 1] = x[:n].mean()
    for i in range(n, len(x)):
        out[i] = alpha * x[i] + (1 - alpha) * out[i - 1]
    return out


def rsi_wilder(x: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's RSI: SMA of the first n gains/losses, then (prev * (n-1) + value) / n."""
    d = np.diff(x)
    gain, loss = np.clip(d, 0, None), np.clip(-d, 0, None)
    out = np.full(len(x), np.nan)
    ag, al = gain[:n].mean(), loss[:n].mean()
    out[n] = 100 - 100 / (1 + ag / al)
    for i in range(n + 1, len(x)):
        ag = (ag * (n - 1) + gain[i - 1]) / n
        al = (al * (n - 1) + loss[i - 1]) / n
        out[i] = 100 - 100 / (1 + ag / al)
    return out


def bbands_textbook(x: np.ndarray, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, ...]:
    """Bollinger bands: SMA ± k · population sd (ddof=0) of the last n closes."""
    mid, sd = np.full(len(x), np.nan), np.full(len(x), np.nan)
    for i in range(n - 1, len(x)):
        window = x[i - n + 1 : i + 1]
        mid[i], sd[i] = window.mean(), window.std(ddof=0)
    return mid - k * sd, mid, mid + k * sd


def test_indicators_match_textbook_formulas() -> None:
    """pandas-ta (native path) against the formulas above, per ticker.

    Tolerances: EMA, MACD and BBands are the same recursions/windows, so they agree to rounding
    (rtol 1e-10) from their first value. pandas-ta's RSI seeds its Wilder average with the first
    difference instead of an SMA, a start-up difference that decays as (13/14)^k: compared
    after 400 bars (well past FEATURE_WARMUP_BARS' bound) to atol 1e-9 on the 0-100 scale.
    """
    bars = make_bars(keep=0.8, seed=1)
    feats = create_features(bars, BRIDGED)
    for ticker in ("AAA", "BBB"):
        rows = bars["ticker"] == ticker
        close = bars.loc[rows, "close"].to_numpy()
        f = feats.loc[rows]
        ema12, ema26 = ema_textbook(close, 12), ema_textbook(close, 26)
        np.testing.assert_allclose(f["ema_12"], ema12, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(f["ema_26"], ema26, rtol=1e-10, equal_nan=True)

        macd = ema12 - ema26
        signal = np.full(len(close), np.nan)
        signal[25:] = ema_textbook(macd[25:], 9)
        sl = slice(33, None)  # first bar with a signal (26 + 9 - 1 - 1)
        np.testing.assert_allclose(f["macd"].to_numpy()[sl], macd[sl], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            f["macd_signal"].to_numpy()[sl], signal[sl], rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(
            f["macd_hist"].to_numpy()[sl], (macd - signal)[sl], rtol=1e-10, atol=1e-12
        )
        assert f["macd"].iloc[:33].isna().all()

        lower, mid, upper = bbands_textbook(close)
        np.testing.assert_allclose(f["bb_lower"], lower, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(f["bb_middle"], mid, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(f["bb_upper"], upper, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(
            f["bb_percent"].to_numpy()[19:],
            ((close - lower) / (upper - lower))[19:],
            rtol=1e-9,
            atol=1e-9,
        )
        np.testing.assert_allclose(
            f["bb_bandwidth"].to_numpy()[19:], ((upper - lower) / mid)[19:], rtol=1e-9
        )
        # The sample sd (pandas-ta's own default) would be visibly wider.
        sample_sd = pd.Series(close).rolling(20).std(ddof=1).to_numpy()
        assert np.nanmax(np.abs(f["bb_upper"] - (mid + 2 * sample_sd))) > 1e-6

        rsi = rsi_wilder(close)
        np.testing.assert_allclose(f["rsi_14"].to_numpy()[400:], rsi[400:], rtol=0, atol=1e-9)

        np.testing.assert_allclose(
            f["close_ema_12_rel"], close / ema12 - 1, rtol=1e-9, atol=1e-15, equal_nan=True
        )
        np.testing.assert_allclose(
            f["macd_rel"].to_numpy()[sl], (macd / close)[sl], rtol=1e-9, atol=1e-15
        )


def test_rolling_volatility_and_volume() -> None:
    bars = make_bars(tickers=("AAA",), sessions=SESSIONS[:2], keep=0.7, seed=2)
    f = create_features(bars)
    close, vol = bars["close"].to_numpy(), bars["volume"].to_numpy(dtype=float)
    r = np.diff(np.log(close))
    i = 300
    np.testing.assert_allclose(
        f["realized_vol_30"].iloc[i], np.sqrt((r[i - 30 : i] ** 2).sum()), rtol=1e-10
    )
    np.testing.assert_allclose(
        f["volume_rel_30"].iloc[i], vol[i] / vol[i - 29 : i + 1].mean(), rtol=1e-10
    )
    assert f["realized_vol_30"].iloc[:30].isna().all()
    assert f["realized_vol_30"].iloc[30:].notna().all()


def test_lag_returns_use_wall_clock_minutes() -> None:
    """log_ret_k looks back k minutes (as-of the last bar at or before t - k), not k bars."""
    minutes = MINUTES["2024-03-08"][:12]
    keep = [0, 1, 2, 4, 7, 8, 11]  # bars at minutes 3, 5, 6, 9, 10 are missing
    close = np.array([10.0, 11, 12, 13, 14, 15, 16])
    bars = pd.DataFrame(
        {
            "ticker": "X",
            "ts": minutes[keep],
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1,
        }
    )
    f = create_features(bars)
    log_c = np.log(close)
    # Bar at minute 8 (row 5): 1 min back -> minute 7 (row 4); 5 back -> minute 3 -> as-of 2.
    assert f["log_ret_1"].iloc[5] == pytest.approx(log_c[5] - log_c[4])
    assert f["log_ret_5"].iloc[5] == pytest.approx(log_c[5] - log_c[2])
    # Bar at minute 11 (row 6): 1 min back -> minute 10 missing -> as-of minute 8 (row 5).
    assert f["log_ret_1"].iloc[6] == pytest.approx(log_c[6] - log_c[5])
    assert f["log_ret_5"].iloc[6] == pytest.approx(log_c[6] - log_c[3])  # minute 6 -> 4
    assert np.isnan(f["log_ret_1"].iloc[0])
    assert np.isnan(f["log_ret_15"]).all()  # nothing 15 minutes before any bar
    assert f["log_ret_5"].iloc[:4].isna().all() and f["log_ret_5"].iloc[4:].notna().all()


def test_lag_return_at_open_reaches_previous_session() -> None:
    bars = make_bars(tickers=("AAA",), sessions=SESSIONS[:2], seed=3)
    f = create_features(bars)
    first = np.flatnonzero(bars["ts"] == MINUTES["2024-03-08"][0])[0]
    close = bars["close"].to_numpy()
    assert f["log_ret_5"].iloc[first] == pytest.approx(np.log(close[first] / close[first - 1]))


def test_time_features_are_new_york_time() -> None:
    ts = pd.to_datetime(
        ["2024-03-08 14:30", "2024-03-08 20:59", "2024-03-11 13:30", "2024-11-29 17:59"], utc=True
    )
    bars = pd.DataFrame(
        {
            "ticker": ["A", "A", "A", "B"],
            "ts": ts,
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 1,
        }
    )
    f = create_features(bars)
    assert f["hour_of_day"].tolist() == [9, 15, 9, 12]
    assert f["minute_of_hour"].tolist() == [30, 59, 30, 59]
    assert f["day_of_week"].tolist() == [4, 4, 0, 4]  # Friday, Friday, Monday (EDT), Friday
    assert f["minute_of_session"].tolist() == [0, 389, 0, 209]
    np.testing.assert_allclose(f["minute_of_session_cos"].iloc[[0, 2]], 1.0)
    assert f["minute_of_session_cos"].iloc[1] < -0.99  # the close is far from the open
    np.testing.assert_allclose(f["minute_of_hour_sin"] ** 2 + f["minute_of_hour_cos"] ** 2, 1)
    np.testing.assert_allclose(f["day_of_week_sin"] ** 2 + f["day_of_week_cos"] ** 2, 1)


def test_per_ticker_and_input_order_invariant() -> None:
    """Tickers never mix, and shuffled input gives the same rows back in its own order."""
    bars = make_bars(keep=0.6, seed=4)
    alone = create_features(bars[bars["ticker"] == "AAA"])
    shuffled = bars.sample(frac=1.0, random_state=0)
    together = create_features(shuffled)
    assert together.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(together.loc[alone.index], alone)
    moved = bars.assign(close=np.where(bars["ticker"] == "BBB", bars["close"] * 3, bars["close"]))
    pd.testing.assert_frame_equal(create_features(moved).loc[alone.index], alone)


def test_warmup_bars_are_enough() -> None:
    """FEATURE_WARMUP_BARS of history reproduce the features of a longer history."""
    bars = make_bars(tickers=("AAA",), keep=0.9, seed=5)
    full = create_features(bars, BRIDGED)
    target = bars["ts"] >= MINUTES[SESSIONS[-1]][0]
    first = int(np.flatnonzero(target)[0])
    short_bars = bars.iloc[first - FEATURE_WARMUP_BARS :]
    short = create_features(short_bars, BRIDGED)
    assert short.loc[target[target].index, "warm"].all()
    assert not short["warm"].iloc[:FEATURE_WARMUP_BARS].any()
    a, b = full.loc[target, NUMERIC].to_numpy(float), short.loc[target, NUMERIC].to_numpy(float)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)


def test_degenerate_inputs() -> None:
    flat = make_bars(tickers=("F",), sessions=SESSIONS[:1]).assign(
        open=20.0, high=20.0, low=20.0, close=20.0, volume=0
    )
    f = create_features(flat).iloc[40:]
    assert (f["rsi_14"] == 50).all() and (f["bb_percent"] == 0.5).all()
    assert (f["bb_bandwidth"] == 0).all() and (f["volume_rel_30"] == 1).all()
    assert (f["realized_vol_30"] == 0).all()

    short = create_features(make_bars(tickers=("S",)).iloc[:10])
    assert len(short) == 10 and short["rsi_14"].isna().all() and short["ema_12"].isna().all()

    # A short ticker among long ones, rows shuffled: same as each ticker alone.
    long = make_bars(tickers=("L",), sessions=SESSIONS[:1], seed=6)
    short_bars = make_bars(tickers=("S",)).iloc[:10]
    mixed = pd.concat([long, short_bars], ignore_index=True).sample(frac=1.0, random_state=1)
    got = create_features(mixed).sort_index()
    for ticker, alone in (("L", long), ("S", short_bars)):
        pd.testing.assert_frame_equal(
            got[got["ticker"] == ticker].reset_index(drop=True), create_features(alone)
        )

    empty = create_features(make_bars().iloc[:0])
    assert list(empty.columns) == list(FEATURE_TABLE_COLUMNS) and empty.empty


def test_bad_input_raises() -> None:
    bars = make_bars(tickers=("AAA",), sessions=SESSIONS[:1])
    with pytest.raises(ValueError, match="duplicate"):
        create_features(pd.concat([bars, bars.iloc[[5]]]))
    with pytest.raises(ValueError, match="non-positive"):
        create_features(bars.assign(close=bars["close"].where(bars.index != 3, 0.0)))
    with pytest.raises(ValueError, match="lack columns"):
        create_features(bars.drop(columns="volume"))


def test_feature_spec() -> None:
    assert set(FEATURE_SPEC.columns) <= set(FEATURE_TABLE_COLUMNS)
    assert len(set(FEATURE_SPEC.columns)) == len(FEATURE_SPEC.columns)
    price_levels = {
        "ema_12",
        "ema_26",
        "bb_lower",
        "bb_middle",
        "bb_upper",
        "macd",
        "macd_signal",
        "macd_hist",
        "volume_mean_30",
        "minute_of_session",
    }
    assert not price_levels & set(FEATURE_SPEC.columns)
    assert FEATURE_SPEC.warmup_bars == FEATURE_WARMUP_BARS
    assert FeatureSpec.from_dict(FEATURE_SPEC.to_dict()) == FEATURE_SPEC
    f = create_features(make_bars(keep=0.9))
    assert f.loc[f["warm"], list(FEATURE_SPEC.columns)].notna().all().all()


# ---- no lookahead, proved --------------------------------------------------------------------

LOOKAHEAD_BARS = {
    seed: make_bars(sessions=SESSIONS[1:3], keep=0.75, seed=seed) for seed in range(4)
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 3),
    cut_frac=st.floats(0.0, 1.0),
    garbage_seed=st.integers(0, 2**32 - 1),
)
def test_no_lookahead(seed: int, cut_frac: float, garbage_seed: int) -> None:
    """Features at minutes <= t are identical whether later bars exist, are gone or garbage."""
    bars = LOOKAHEAD_BARS[seed]
    ts_sorted = np.sort(bars["ts"].unique())
    cut = ts_sorted[int(cut_frac * (len(ts_sorted) - 1))]
    past = (bars["ts"] <= cut).to_numpy()

    full = create_features(bars)
    deleted = create_features(bars[past])
    rng = np.random.default_rng(garbage_seed)
    garbage = bars.copy()
    n_future = int((~past).sum())
    for col in ("open", "high", "low", "close"):
        garbage.loc[~past, col] = 10 ** rng.uniform(-3, 6, n_future)
    garbage.loc[~past, "volume"] = rng.integers(0, 10**9, n_future)
    replaced = create_features(garbage)

    reference = full.loc[past, NUMERIC].to_numpy(float)
    for other in (deleted, replaced.loc[past]):
        assert other.index.equals(full.index[past])
        np.testing.assert_allclose(
            other[NUMERIC].to_numpy(float), reference, rtol=1e-12, atol=1e-12
        )


def test_a_long_hole_restarts_the_series() -> None:
    """Across more than max_gap_sessions sessions without a bar nothing is carried over: the
    rows after the hole equal those of a series that starts there, and warm up again."""
    bars = make_bars(tickers=("AAA",), keep=0.9, seed=3)
    after = bars["ts"] >= MINUTES["2024-11-29"][0]  # months after 2024-03-11
    with_hole = create_features(bars)
    fresh = create_features(bars[after])
    pd.testing.assert_frame_equal(with_hole[after], fresh)
    assert with_hole.loc[after, "warm"].sum() == max(0, after.sum() - FEATURE_WARMUP_BARS)
    bridged = create_features(bars, BRIDGED)
    assert bridged.loc[after, "warm"].all() and bridged.loc[after, "log_ret_30"].iloc[0] != 0
    assert np.isnan(with_hole.loc[after, "log_ret_30"].iloc[0])  # no return across the hole
    one_week = replace(FEATURE_SPEC, max_gap_sessions=200)  # the hole is ~180 sessions
    pd.testing.assert_frame_equal(create_features(bars, one_week), bridged)
