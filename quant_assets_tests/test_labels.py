"""Triple-barrier labels: brute-force agreement, session bounds, no lookahead, stop first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_assets.labels import (
    LABEL_COLUMNS,
    LabelSpec,
    barrier_volatility,
    triple_barrier_labels,
)
from quant_assets.market import calendar

SESSIONS = ("2024-03-08", "2024-03-11", "2024-11-29")  # DST switch; an early close
MINUTES = {day: calendar.session_minutes(day) for day in SESSIONS}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_bars(
    tickers: tuple[str, ...] = ("AAA", "BBB"),
    sessions: tuple[str, ...] = SESSIONS,
    keep: float = 1.0,
    seed: int = 0,
    minutes_per_session: int | None = None,
) -> pd.DataFrame:
    """Seeded random-walk bars in cents on real session minutes (ties with barriers happen)."""
    rng = np.random.default_rng(seed)
    minutes = pd.DatetimeIndex(
        np.concatenate([MINUTES[d][:minutes_per_session].to_numpy() for d in sessions])
    )
    frames = []
    for ticker in tickers:
        ts = minutes[rng.random(len(minutes)) < keep]
        close = np.round(20.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-3, len(ts)))), 2)
        open_ = np.r_[close[0], close[:-1]]
        spread = np.round(np.abs(rng.normal(0.0, 0.03, (2, len(ts)))), 2)
        frames.append(
            pd.DataFrame(
                {
                    "ticker": pd.array([ticker] * len(ts), dtype="string"),
                    "ts": ts.astype("datetime64[ns, UTC]"),
                    "open": open_,
                    "high": np.maximum(open_, close) + spread[0],
                    "low": np.minimum(open_, close) - spread[1],
                    "close": close,
                    "volume": rng.integers(1, 1000, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def brute_force(bars: pd.DataFrame, sigma: np.ndarray, spec: LabelSpec) -> pd.DataFrame:
    """Per-event reference written from the docstring, one plain Python loop per event."""
    out = pd.DataFrame(
        {
            "label": pd.array([pd.NA] * len(bars), dtype="Int8"),
            "t1": pd.Series(pd.NaT, index=bars.index, dtype="datetime64[ns, UTC]"),
            "ret": np.nan,
        },
        index=bars.index,
    )
    session = bars["ts"].map(lambda t: t.tz_convert("America/New_York").date())
    for _, rows in bars.groupby("ticker", sort=False):
        idx = list(rows.index)
        for k, i in enumerate(idx):
            s = sigma[bars.index.get_loc(i)]
            if not (np.isfinite(s) and s > 0):
                continue
            horizon_end = bars.at[i, "ts"] + pd.Timedelta(minutes=spec.horizon)
            path = [
                j
                for j in idx[k + 1 :]
                if session[j] == session[i] and bars.at[j, "ts"] <= horizon_end
            ]
            if not path:
                continue
            p0 = bars.at[i, "close"]
            upper, lower = p0 * (1 + spec.profit_take * s), p0 * (1 - spec.stop_loss * s)
            label, end = 0, path[-1]
            for j in path:
                hi = bars.at[j, "high" if spec.touch == "high_low" else "close"]
                lo = bars.at[j, "low" if spec.touch == "high_low" else "close"]
                if lo <= lower:
                    label, end = -1, j
                    break
                if hi >= upper:
                    label, end = 1, j
                    break
            out.at[i, "label"] = label
            out.at[i, "t1"] = bars.at[end, "ts"]
            out.at[i, "ret"] = bars.at[end, "close"] / p0 - 1
    return out


specs = st.builds(
    LabelSpec,
    horizon=st.integers(1, 40),
    profit_take=st.sampled_from([0.0, 0.5, 1.0, 2.5]) | st.floats(0.0, 4.0),
    stop_loss=st.sampled_from([0.0, 0.5, 1.0, 2.5]) | st.floats(0.0, 4.0),
    vol_span=st.integers(2, 60),
    touch=st.sampled_from(["close", "high_low"]),
)
frames = st.builds(
    make_bars,
    tickers=st.sampled_from([("AAA",), ("AAA", "BBB")]),
    sessions=st.sampled_from([SESSIONS[:1], SESSIONS[:2], SESSIONS[1:]]),
    keep=st.floats(0.2, 1.0),
    seed=st.integers(0, 10_000),
    minutes_per_session=st.sampled_from([30, 80]),
)


def random_sigma(n: int, seed: int) -> np.ndarray:
    """σ around the walk's 30-bar scale, with NaN, zero, negative and inf sprinkled in."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.normal(np.log(0.005), 0.7, n))
    special = rng.random(n)
    sigma[special < 0.05] = np.nan
    sigma[(special >= 0.05) & (special < 0.08)] = 0.0
    sigma[(special >= 0.08) & (special < 0.10)] = -0.01
    sigma[(special >= 0.10) & (special < 0.11)] = np.inf
    return sigma


@SETTINGS
@given(bars=frames, spec=specs, sigma_seed=st.integers(0, 10_000), own_sigma=st.booleans())
def test_labels_match_brute_force(
    bars: pd.DataFrame, spec: LabelSpec, sigma_seed: int, own_sigma: bool
) -> None:
    sigma = (
        barrier_volatility(bars, spec.vol_span, spec.horizon).to_numpy()
        if own_sigma
        else random_sigma(len(bars), sigma_seed)
    )
    got = triple_barrier_labels(bars, spec, sigma=None if own_sigma else sigma)
    want = brute_force(bars, sigma, spec)
    pd.testing.assert_series_equal(got["label"], want["label"])
    pd.testing.assert_series_equal(got["t1"], want["t1"])
    np.testing.assert_allclose(got["ret"], want["ret"], rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(got["sigma"], sigma)


@SETTINGS
@given(bars=frames, spec=specs, sigma_seed=st.integers(0, 10_000))
def test_t1_within_horizon_and_session(
    bars: pd.DataFrame, spec: LabelSpec, sigma_seed: int
) -> None:
    sigma = random_sigma(len(bars), sigma_seed)
    got = triple_barrier_labels(bars, spec, sigma=sigma)
    session = bars["ts"].map(calendar.session_of)
    horizon = pd.Timedelta(minutes=spec.horizon)
    for _, rows in bars.groupby("ticker", sort=False):
        following = rows["ts"].shift(-1)
        same_session = session[rows.index] == session[rows.index].shift(-1)
        nothing_ahead = ~same_session | (following - rows["ts"] > horizon)
        for i in rows.index:
            row = got.loc[i]
            usable = np.isfinite(sigma[i]) and sigma[i] > 0
            if pd.isna(row["label"]):
                assert not usable or nothing_ahead[i]
                continue
            assert usable and not nothing_ahead[i]
            assert row["t1"] > row["ts"]
            assert calendar.session_of(row["t1"]) == session[i]
            assert row["t1"] - row["ts"] <= horizon  # wall-clock minutes, not bars
            t1_close = rows.loc[rows["ts"] == row["t1"], "close"].iloc[0]
            assert row["ret"] == pytest.approx(t1_close / bars.at[i, "close"] - 1, rel=1e-12)


@SETTINGS
@given(bars=frames, spec=specs, cut_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_bars_after_t1_never_change_the_label(
    bars: pd.DataFrame, spec: LabelSpec, cut_frac: float, seed: int
) -> None:
    """σ from the bars themselves (no bar after t); garbage after a cut keeps every t1 <= cut."""
    before = triple_barrier_labels(bars, spec)
    ts_sorted = np.sort(bars["ts"].unique())
    cut = ts_sorted[int(cut_frac * (len(ts_sorted) - 1))]
    future = (bars["ts"] > cut).to_numpy()
    rng = np.random.default_rng(seed)
    garbage = bars.copy()
    for col in ("open", "high", "low", "close"):
        garbage.loc[future, col] = 10 ** rng.uniform(-2, 4, int(future.sum()))
    after = triple_barrier_labels(garbage, spec)
    settled = (before["t1"] <= cut).to_numpy()
    pd.testing.assert_frame_equal(after[settled], before[settled])


def bars_from_path(
    close: list[float], high: list[float] | None = None, low: list[float] | None = None
) -> pd.DataFrame:
    ts = MINUTES["2024-03-08"][: len(close)]
    return pd.DataFrame(
        {
            "ticker": "X",
            "ts": ts,
            "open": close,
            "high": high or close,
            "low": low or close,
            "close": close,
            "volume": 1,
        }
    )


def test_stop_first_on_a_bar_touching_both() -> None:
    bars = bars_from_path(
        [100.0, 100.0, 100.0], high=[100.0, 100.0, 120.0], low=[100.0, 100.0, 80.0]
    )
    got = triple_barrier_labels(bars, LabelSpec(horizon=5, touch="high_low"), sigma=[0.1] * 3)
    assert got["label"].tolist() == [-1, -1, pd.NA]
    assert got["t1"].iloc[0] == bars["ts"].iloc[2]
    assert got["ret"].iloc[0] == 0.0  # the return is taken at the close of t1
    # Close mode: a close on both barriers (both multipliers 0) is also a stop.
    tie = triple_barrier_labels(
        bars, LabelSpec(horizon=5, profit_take=0, stop_loss=0), sigma=[0.1] * 3
    )
    assert tie["label"].iloc[0] == -1 and tie["t1"].iloc[0] == bars["ts"].iloc[1]


def test_upper_lower_and_vertical_barriers() -> None:
    bars = bars_from_path([100.0, 101.0, 112.0, 100.0, 89.0, 95.0, 95.0, 95.0, 95.0])
    got = triple_barrier_labels(bars, LabelSpec(horizon=2), sigma=[0.1] * 9)
    assert got["label"].tolist()[:3] == [1, 1, -1]
    assert got["t1"].iloc[0] == bars["ts"].iloc[2]
    assert got["ret"].iloc[0] == pytest.approx(0.12)
    assert got["label"].iloc[5] == 0 and got["t1"].iloc[5] == bars["ts"].iloc[7]
    assert got["label"].iloc[7] == 0 and got["t1"].iloc[7] == bars["ts"].iloc[8]
    assert pd.isna(got["label"].iloc[8]) and pd.isna(got["t1"].iloc[8])


def test_sessions_are_never_crossed() -> None:
    bars = make_bars(tickers=("AAA",), sessions=SESSIONS[:2], minutes_per_session=5)
    bars["close"] = 20.0  # no touch: every label ends at its vertical barrier
    got = triple_barrier_labels(bars, LabelSpec(horizon=30), sigma=np.full(10, 1e-9))
    assert got["label"].isna().tolist() == [False] * 4 + [True] + [False] * 4 + [True]
    assert got["t1"].iloc[0] == bars["ts"].iloc[4]


def test_output_shape_and_interleaved_tickers() -> None:
    bars = make_bars(keep=0.7, seed=3)
    spec = LabelSpec(horizon=10, vol_span=20, touch="high_low")
    got = triple_barrier_labels(bars, spec)
    assert tuple(got.columns) == LABEL_COLUMNS and got.index.equals(bars.index)
    assert str(got["label"].dtype) == "Int8" and str(got["t1"].dtype) == "datetime64[ns, UTC]"
    assert set(got["label"].dropna().unique()) <= {-1, 0, 1}
    interleaved = bars.sort_values("ts", kind="stable")
    pd.testing.assert_frame_equal(triple_barrier_labels(interleaved, spec).loc[bars.index], got)
    alone = bars[bars["ticker"] == "AAA"]
    pd.testing.assert_frame_equal(triple_barrier_labels(alone, spec), got.loc[alone.index])
    empty = triple_barrier_labels(bars.iloc[:0], spec)
    assert empty.empty and tuple(empty.columns) == LABEL_COLUMNS


def test_barrier_volatility() -> None:
    bars = make_bars(tickers=("AAA", "BBB"), sessions=SESSIONS[:2], keep=0.8, seed=4)
    sigma = barrier_volatility(bars, span=30, horizon=16)
    a = bars["ticker"] == "AAA"
    first_day = a & (bars["ts"] < MINUTES[SESSIONS[1]][0])
    minutes = bars.loc[first_day, "ts"].diff() / pd.Timedelta(minutes=1)
    ret = np.log(bars.loc[first_day, "close"]).diff() / np.sqrt(minutes)  # per minute of time
    want = ret.ewm(span=30, min_periods=30).std() * 4.0
    np.testing.assert_allclose(sigma[first_day], want, rtol=1e-12, equal_nan=True)
    assert sigma[first_day].iloc[:30].isna().all() and sigma[first_day].iloc[30:].notna().all()
    # The overnight return is not used: a gap at the open leaves σ unchanged.
    gapped = bars.assign(
        close=np.where(bars["ts"] >= MINUTES[SESSIONS[1]][0], bars["close"] * 1.5, bars["close"])
    )
    np.testing.assert_allclose(barrier_volatility(gapped, 30, 16), sigma, rtol=1e-12)
    # No lookahead: σ of the first session without the second.
    cut = barrier_volatility(bars[bars["ts"] < MINUTES[SESSIONS[1]][0]], 30, 16)
    np.testing.assert_array_equal(cut, sigma[cut.index])
    assert sigma.index.equals(bars.index) and sigma.name == "sigma"


def test_invalid_inputs_raise() -> None:
    bars = make_bars(tickers=("AAA",), sessions=SESSIONS[:1], minutes_per_session=40)
    with pytest.raises(ValueError, match="not sorted"):
        triple_barrier_labels(bars.iloc[::-1])
    with pytest.raises(ValueError, match="duplicate"):
        triple_barrier_labels(pd.concat([bars, bars.iloc[[3]]]).sort_values("ts"))
    with pytest.raises(ValueError, match="horizon"):
        LabelSpec(horizon=0)
    with pytest.raises(ValueError, match="horizon"):
        LabelSpec(horizon=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="profit_take"):
        LabelSpec(profit_take=-1.0)
    with pytest.raises(ValueError, match="stop_loss"):
        LabelSpec(stop_loss=float("nan"))
    with pytest.raises(ValueError, match="touch"):
        LabelSpec(touch="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vol_span"):
        barrier_volatility(bars, span=0, horizon=5)
    with pytest.raises(ValueError, match="one value per bar"):
        triple_barrier_labels(bars, sigma=np.ones(3))
    with pytest.raises(ValueError, match="same index"):
        triple_barrier_labels(bars, sigma=pd.Series(1.0, index=bars.index + 1))
    with pytest.raises(ValueError, match="lack columns"):
        triple_barrier_labels(bars.drop(columns="high"), LabelSpec(touch="high_low"))
    assert LabelSpec.from_dict(LabelSpec(touch="high_low").to_dict()) == LabelSpec(touch="high_low")
