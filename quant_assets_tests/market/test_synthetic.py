"""The synthetic market: determinism, calendar, bar sanity, planted actions, signal and regime."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant_assets.market.calendar import (
    MARKET_TZ,
    exchange_calendar,
    session_minutes,
    sessions,
    trading_minutes,
)
from quant_assets.market.frames import BAR_COLUMNS, empty_bars
from quant_assets.market.sources import MarketSource, SourceRangeError
from quant_assets.market.synthetic import (
    KAPPA,
    SIGNAL_LAG,
    SIGNAL_WINDOW,
    Liquidity,
    SyntheticConfig,
    SyntheticMarket,
    synthetic_market,
)

TICKERS = ("AAPL", "MSFT", "NVDA")
CONFIG = SyntheticConfig(
    tickers=TICKERS, start="2026-11-02", end="2026-12-31", missing_rate=0.01, halts_per_year=60.0
)


def ny(day: str) -> pd.Timestamp:
    """Midnight New York of a date, tz-aware."""
    return pd.Timestamp(day).tz_localize(MARKET_TZ)


START, END = ny("2026-11-02"), ny("2027-01-01")


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(CONFIG)


def all_bars(mkt: SyntheticMarket, ticker: str) -> pd.DataFrame:
    return mkt.get_bars(ticker, START, END)


# --- determinism -------------------------------------------------------------------------------
def test_same_seed_identical_frames_different_seed_differs(market: SyntheticMarket) -> None:
    twin = SyntheticMarket(CONFIG)
    for ticker in TICKERS:
        pd.testing.assert_frame_equal(all_bars(market, ticker), all_bars(twin, ticker))
        pd.testing.assert_frame_equal(market.get_dividends(ticker), twin.get_dividends(ticker))
    other = SyntheticMarket(dataclasses.replace(CONFIG, seed=8))
    a, b = all_bars(market, "AAPL"), all_bars(other, "AAPL")
    assert not np.allclose(a["close"].iloc[:100], b["close"].iloc[:100])


def test_is_a_market_source(market: SyntheticMarket) -> None:
    assert isinstance(market, MarketSource)
    assert market.name == "synthetic"


def test_adding_a_ticker_keeps_the_others() -> None:
    small = SyntheticMarket(dataclasses.replace(CONFIG, tickers=("AAPL", "MSFT")))
    big = SyntheticMarket(CONFIG)
    for ticker in ("AAPL", "MSFT"):
        pd.testing.assert_frame_equal(all_bars(small, ticker), all_bars(big, ticker))


def test_day_slice_equals_long_range_slice(market: SyntheticMarket) -> None:
    full = all_bars(market, "MSFT")
    for day in ("2026-11-02", "2026-11-27", "2026-12-15", "2026-12-31"):
        lo, hi = ny(day), ny(day) + pd.Timedelta(days=1)
        one = market.get_bars("MSFT", lo, hi)
        cut = full[(full["ts"] >= lo) & (full["ts"] < hi)].reset_index(drop=True)
        assert len(one) > 0
        pd.testing.assert_frame_equal(one, cut)


@settings(max_examples=25, deadline=None)
@given(
    a=st.integers(min_value=0, max_value=60 * 24 * 58),
    width=st.integers(min_value=1, max_value=60 * 24 * 3),
)
def test_any_window_is_a_cut_of_the_path(a: int, width: int) -> None:
    mkt = _shared_market()
    lo = START + pd.Timedelta(minutes=a)
    hi = min(lo + pd.Timedelta(minutes=width), END)
    full = all_bars(mkt, "NVDA")
    cut = full[(full["ts"] >= lo) & (full["ts"] < hi)].reset_index(drop=True)
    pd.testing.assert_frame_equal(mkt.get_bars("NVDA", lo, hi), cut)
    minutes = trading_minutes(lo, hi)
    signal = mkt.latent_signal("NVDA", lo, hi)
    assert signal.index.equals(minutes)


_SHARED: dict[str, SyntheticMarket] = {}


def _shared_market() -> SyntheticMarket:
    if "m" not in _SHARED:
        _SHARED["m"] = SyntheticMarket(CONFIG)
    return _SHARED["m"]


# --- calendar -----------------------------------------------------------------------------------
def test_sessions_and_minute_counts_match_exchange_calendars() -> None:
    mkt = SyntheticMarket(dataclasses.replace(CONFIG, missing_rate=0.0, halts_per_year=0.0))
    for day in pd.date_range("2026-11-02", "2026-12-31", freq="D"):
        bars = mkt.get_bars("AAPL", ny(str(day.date())), ny(str(day.date())) + pd.Timedelta(days=1))
        expected = session_minutes(day)
        assert pd.DatetimeIndex(bars["ts"]).equals(pd.DatetimeIndex(expected)), day
    thanksgiving = mkt.get_bars("AAPL", ny("2026-11-26"), ny("2026-11-27"))
    assert thanksgiving.empty
    pd.testing.assert_series_equal(thanksgiving.dtypes, empty_bars().dtypes)
    assert mkt.get_bars("AAPL", ny("2026-11-28"), ny("2026-11-30")).empty  # weekend
    assert len(mkt.get_bars("AAPL", ny("2026-11-27"), ny("2026-11-28"))) == 210  # early close
    assert len(mkt.get_bars("AAPL", ny("2026-12-24"), ny("2026-12-25"))) == 210
    assert len(mkt.get_bars("AAPL", ny("2026-12-23"), ny("2026-12-24"))) == 390
    total = len(all_bars(mkt, "AAPL"))
    assert total == len(exchange_calendar().sessions_minutes("2026-11-02", "2026-12-31"))
    assert mkt.missing_minutes("AAPL", START, END).empty


# --- bar sanity ----------------------------------------------------------------------------------
def test_bars_are_canonical_and_ohlc_consistent(market: SyntheticMarket) -> None:
    for ticker in TICKERS:
        bars = all_bars(market, ticker)
        assert tuple(bars.columns) == BAR_COLUMNS
        pd.testing.assert_series_equal(bars.dtypes, empty_bars().dtypes)
        assert bars["ts"].is_monotonic_increasing and bars["ts"].is_unique
        assert (bars["ticker"] == ticker).all()
        assert (bars["low"] > 0).all()
        assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
        assert (bars["high"] > bars["low"]).all()
        assert (bars["volume"] > 0).all()
    starts = [all_bars(market, t)["open"].iloc[0] for t in TICKERS]
    assert len(set(np.round(starts, 6))) == len(TICKERS)
    assert all(20 <= p <= 500 for p in starts)


def test_intraday_shapes_and_overnight_gaps() -> None:
    mkt = SyntheticMarket(dataclasses.replace(CONFIG, corporate_actions=False))
    bars = all_bars(mkt, "NVDA")
    local = bars["ts"].dt.tz_convert(MARKET_TZ)
    minute = (local.dt.hour * 60 + local.dt.minute - 570).to_numpy()
    full_day = local.dt.date.map(lambda d: len(session_minutes(d)) == 390).to_numpy()
    ret = np.abs(np.log(bars["close"] / bars["open"])).to_numpy()
    vol = bars["volume"].to_numpy().astype(float)
    first, middle, last = minute < 15, (minute >= 180) & (minute < 210), minute >= 375
    first, middle, last = first & full_day, middle & full_day, last & full_day
    assert ret[first].mean() > 1.5 * ret[middle].mean()
    assert ret[last].mean() > 1.1 * ret[middle].mean()
    assert vol[first].mean() > 2 * vol[middle].mean()
    assert vol[last].mean() > 1.5 * vol[middle].mean()
    # overnight gaps: the first open of a session is not the previous session's last close
    day = local.dt.date
    opens = bars.groupby(day)["open"].first().to_numpy()
    closes = bars.groupby(day)["close"].last().to_numpy()
    gaps = np.log(opens[1:] / closes[:-1])
    assert np.std(gaps) > 0.002
    assert np.all(gaps != 0)


# --- missing minutes and halts -------------------------------------------------------------------
def test_missing_minutes_and_bars_partition_the_session_minutes(market: SyntheticMarket) -> None:
    minutes = trading_minutes(START, END)
    for ticker in TICKERS:
        have = pd.DatetimeIndex(all_bars(market, ticker)["ts"])
        missing = market.missing_minutes(ticker, START, END)
        assert len(missing) > 0
        assert have.intersection(missing).empty
        assert have.union(missing).equals(minutes)
        halts = market.halts(ticker, START, END)
        assert halts, "halts_per_year=60 over two months should plant some halts"
        for begin, stop in halts:
            run = pd.date_range(begin, stop, freq="min", inclusive="left")
            assert 5 <= len(run) <= 20
            assert run.isin(missing).all()
            assert run.isin(minutes).all()
            assert market.get_bars(ticker, begin, stop).empty
    # a query inside a halt still reports it
    begin, stop = market.halts("AAPL", START, END)[0]
    assert market.halts("AAPL", begin + pd.Timedelta(minutes=1), stop) == [(begin, stop)]


# --- corporate actions ---------------------------------------------------------------------------
def test_ledger_is_planted_as_documented(market: SyntheticMarket) -> None:
    days = sessions("2026-11-02", "2026-12-31")
    aapl, msft = market.get_splits("AAPL"), market.get_splits("MSFT")
    assert aapl["ratio"].tolist() == [2.0]
    assert msft["ratio"].tolist() == [3.0]
    assert aapl["ex_date"].iloc[0] == days[int(0.40 * len(days))]
    assert msft["ex_date"].iloc[0] == days[int(0.65 * len(days))]
    assert market.get_splits("NVDA").empty
    assert len(market.get_dividends("AAPL")) == 1 and len(market.get_dividends("NVDA")) == 1
    assert market.get_dividends("MSFT").empty
    for ticker in TICKERS:
        for ledger in (market.get_splits(ticker), market.get_dividends(ticker)):
            assert (ledger["ex_date"] >= days[5]).all() and (ledger["ex_date"] <= days[-1]).all()
    ex = aapl["ex_date"].iloc[0]
    assert len(market.get_splits("AAPL", ex, ex)) == 1
    assert market.get_splits("AAPL", ex + pd.Timedelta(days=1)).empty
    assert market.get_splits("AAPL", end=ex - pd.Timedelta(days=1)).empty
    off = SyntheticMarket(dataclasses.replace(CONFIG, corporate_actions=False))
    assert off.get_splits("AAPL").empty and off.get_dividends("AAPL").empty
    raw = all_bars(off, "AAPL")
    adjusted = off.true_adjusted_bars("AAPL", START, END)
    np.testing.assert_array_equal(raw["close"], adjusted["close"])


@pytest.mark.parametrize(("ticker", "ratio"), [("AAPL", 2.0), ("MSFT", 3.0)])
def test_split_drops_raw_price_but_not_the_true_adjusted_series(
    market: SyntheticMarket, ticker: str, ratio: float
) -> None:
    ex = market.get_splits(ticker)["ex_date"].iloc[0]
    raw, adjusted = all_bars(market, ticker), market.true_adjusted_bars(ticker, START, END)
    local_day = raw["ts"].dt.tz_convert(MARKET_TZ).dt.tz_localize(None).dt.normalize()
    before, on = np.flatnonzero(local_day < ex)[-1], np.flatnonzero(local_day == ex)[0]
    assert raw["close"].iloc[before] / raw["open"].iloc[on] == pytest.approx(ratio, rel=0.08)
    assert adjusted["close"].iloc[before] / adjusted["open"].iloc[on] == pytest.approx(1, abs=0.08)
    vol_ratio = raw["volume"].iloc[on : on + 60].median() / raw["volume"].iloc[:before].median()
    assert 0.5 * ratio < vol_ratio < 4 * ratio


def ledger_adjusted(
    mkt: SyntheticMarket, ticker: str, as_of: pd.Timestamp, split_only: bool = False
) -> pd.DataFrame:
    """Adjust raw bars straight from the ledger: raw x prod of later factors (Yahoo/CRSP)."""
    raw = all_bars(mkt, ticker)
    day = raw["ts"].dt.tz_convert(MARKET_TZ).dt.tz_localize(None).dt.normalize().to_numpy()
    price_factor = np.ones(len(raw))
    volume_factor = np.ones(len(raw))
    for ex, ratio in mkt.get_splits(ticker, end=as_of)[["ex_date", "ratio"]].itertuples(
        index=False
    ):
        before = day < np.datetime64(ex)
        price_factor[before] /= ratio
        volume_factor[before] *= ratio
    if not split_only:
        dividends = mkt.get_dividends(ticker, end=as_of)
        for ex, amount in dividends[["ex_date", "amount"]].itertuples(index=False):
            before = day < np.datetime64(ex)
            close = raw["close"].to_numpy()[before][-1]  # raw close of the last bar before ex
            price_factor[before] *= 1.0 - amount / close
    out = raw.copy()
    for col in ("open", "high", "low", "close"):
        out[col] = raw[col] * price_factor
    out["volume"] = raw["volume"] * volume_factor
    return out


@pytest.mark.parametrize("ticker", TICKERS)
@pytest.mark.parametrize("as_of", [None, "2026-11-20", "2026-12-01", "2026-12-16", "2026-10-01"])
@pytest.mark.parametrize("kind", ["total_return", "split_only"])
def test_true_adjusted_equals_raw_times_ledger_factors(
    market: SyntheticMarket, ticker: str, as_of: str | None, kind: str
) -> None:
    """The contract the adjustment code is tested against (1e-12 relative, volume exact)."""
    truth = market.true_adjusted_bars(ticker, START, END, as_of=as_of, kind=kind)
    cutoff = pd.Timestamp(as_of or CONFIG.end)
    mine = ledger_adjusted(market, ticker, cutoff, split_only=kind == "split_only")
    assert truth["volume"].dtype == np.float64
    pd.testing.assert_frame_equal(truth, mine, check_exact=False, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(truth["volume"], mine["volume"])
    pd.testing.assert_series_equal(truth["ts"], all_bars(market, ticker)["ts"])


def test_dividend_amount_follows_the_last_close(market: SyntheticMarket) -> None:
    for ticker in ("AAPL", "NVDA"):
        raw = all_bars(market, ticker)
        day = raw["ts"].dt.tz_convert(MARKET_TZ).dt.tz_localize(None).dt.normalize()
        for ex, amount in market.get_dividends(ticker)[["ex_date", "amount"]].itertuples(
            index=False
        ):
            close = raw["close"][day < ex].iloc[-1]
            assert 0.002 <= amount / close <= 0.008


# --- the planted signal --------------------------------------------------------------------------
def forward_returns(mkt: SyntheticMarket, ticker: str, horizon: int = 15) -> pd.DataFrame:
    """m_t and the adjusted log return from t to t + horizon minutes (same session, both bars)."""
    m = mkt.latent_signal(ticker, START, END)
    close = mkt.true_adjusted_bars(ticker, START, END).set_index("ts")["close"]
    now = close.reindex(m.index).to_numpy()
    later = close.reindex(m.index + pd.Timedelta(minutes=horizon)).to_numpy()
    out = pd.DataFrame({"m": m.to_numpy(), "fwd": np.log(later / now)}).dropna()
    out["fwd"] /= out["fwd"].std()
    return out.iloc[::horizon]  # non-overlapping


def t_stat(x: pd.Series) -> float:
    return float(x.mean() / (x.std() / np.sqrt(len(x))))


def test_no_signal_means_a_martingale() -> None:
    mkt = SyntheticMarket(dataclasses.replace(CONFIG, signal=0.0))
    frame = pd.concat([forward_returns(mkt, t) for t in TICKERS], ignore_index=True)
    assert len(frame) > 2000
    for part in (frame["m"] > 0, frame["m"] < 0, frame["m"] > 0.5, frame["m"] < -0.5):
        assert abs(t_stat(frame.loc[part, "fwd"])) < 4.0


def test_planted_signal_predicts_the_next_minutes() -> None:
    mkt = SyntheticMarket(dataclasses.replace(CONFIG, signal=0.3))
    frame = pd.concat([forward_returns(mkt, t) for t in TICKERS], ignore_index=True)
    up, down = frame.loc[frame["m"] > 0.5, "fwd"], frame.loc[frame["m"] < -0.5, "fwd"]
    assert t_stat(up) > 6 and up.mean() > 0.25
    assert t_stat(down) < -6 and down.mean() < -0.25
    strong = frame[frame["m"].abs() > 0.5]
    assert np.mean(np.sign(strong["fwd"]) == np.sign(strong["m"])) > 0.6


def test_latent_signal_is_a_function_of_the_observed_bars(market: SyntheticMarket) -> None:
    """Recompute m_t from get_bars alone (log closes carried forward inside the session)."""
    for day in ("2026-11-05", "2026-11-27", "2026-12-17"):
        lo, hi = ny(day), ny(day) + pd.Timedelta(days=1)
        for ticker in TICKERS:
            m = market.latent_signal(ticker, lo, hi)
            assert m.index.equals(session_minutes(day))
            bars = market.get_bars(ticker, lo, hi).set_index("ts")
            p = np.log(bars["close"]).reindex(m.index).ffill().to_numpy()
            expected = np.zeros(len(m))
            for i in range(SIGNAL_LAG + SIGNAL_WINDOW, len(m)):
                a, b = p[i - SIGNAL_LAG - SIGNAL_WINDOW], p[i - SIGNAL_LAG]
                q = np.sum(np.diff(p[i - SIGNAL_LAG - SIGNAL_WINDOW : i - SIGNAL_LAG + 1]) ** 2)
                if not np.isnan(a) and q > 0:
                    expected[i] = -np.tanh(KAPPA * (b - a) / np.sqrt(q))
            np.testing.assert_allclose(m.to_numpy(), expected, rtol=1e-9, atol=1e-12)
            assert (m.abs() <= 1).all() and (m.iloc[:45] == 0).all()


# --- regime shift --------------------------------------------------------------------------------
def test_regime_shift_raises_volatility_after_and_not_before() -> None:
    shift = pd.Timestamp("2026-12-01 14:30", tz="UTC")
    quiet = SyntheticMarket(dataclasses.replace(CONFIG, missing_rate=0.0, halts_per_year=0.0))
    shifted = SyntheticMarket(dataclasses.replace(quiet.config, regime_shift_at=shift))
    for ticker in TICKERS:
        before = quiet.get_bars(ticker, START, shift)
        pd.testing.assert_frame_equal(before, shifted.get_bars(ticker, START, shift))
        after = shifted.get_bars(ticker, shift, END)
        vol_before = np.log(before["close"] / before["open"]).std()
        vol_after = np.log(after["close"] / after["open"]).std()
        assert 2.0 < vol_after / vol_before < 4.5


# --- liquidity -----------------------------------------------------------------------------------
THIN = Liquidity(traded=0.25, tick_bps=20.0)


def test_default_liquidity_is_todays_market_bit_for_bit(market: SyntheticMarket) -> None:
    # figures recorded before the liquidity setting existed (the demo and the tests rely on them)
    default = SyntheticMarket(SyntheticConfig(tickers=TICKERS, start=CONFIG.start, end=CONFIG.end))
    bars = default.get_bars("MSFT", ny("2026-11-02"), ny("2026-11-04"))
    assert len(bars) == 778 and int(bars["volume"].sum()) == 376027226
    assert bars["close"].iloc[0] == 28.837208410386783
    assert bars["close"].iloc[500] == 29.113524079090823
    assert bars["high"].iloc[123] == 29.003501557930576
    assert bars["close"].sum() == 22719.85767585576
    # naming a ticker with the default Liquidity changes nothing; a thin ticker leaves the others
    named = SyntheticMarket(dataclasses.replace(CONFIG, liquidity={"AAPL": Liquidity()}))
    thin = SyntheticMarket(dataclasses.replace(CONFIG, liquidity={"NVDA": THIN}))
    for ticker in TICKERS:
        pd.testing.assert_frame_equal(all_bars(named, ticker), all_bars(market, ticker))
    for ticker in ("AAPL", "MSFT"):
        pd.testing.assert_frame_equal(all_bars(thin, ticker), all_bars(market, ticker))
        pd.testing.assert_frame_equal(thin.get_dividends(ticker), market.get_dividends(ticker))


def test_config_with_a_liquidity_mapping_stays_hashable() -> None:
    a = dataclasses.replace(CONFIG, liquidity={"NVDA": THIN, "AAPL": Liquidity(0.5)})
    b = dataclasses.replace(CONFIG, liquidity={"AAPL": Liquidity(0.5), "NVDA": THIN})
    assert a == b and hash(a) == hash(b)
    assert synthetic_market(a) is synthetic_market(b)  # the cache keys on the config
    assert a.liquidity_of("NVDA") == THIN and a.liquidity_of("MSFT") == Liquidity()
    assert dataclasses.replace(CONFIG, liquidity=THIN).liquidity_of("MSFT") == THIN


def test_thin_ticker_trades_the_configured_share_on_the_tick_grid() -> None:
    quiet = dataclasses.replace(CONFIG, missing_rate=0.0, halts_per_year=0.0)
    liquid = SyntheticMarket(quiet)
    thin = SyntheticMarket(dataclasses.replace(quiet, liquidity=THIN))
    minutes = trading_minutes(START, END)
    zeros = []
    for ticker in TICKERS:
        bars = all_bars(thin, ticker)
        assert len(bars) / len(minutes) == pytest.approx(THIN.traded, abs=0.02)
        have = pd.DatetimeIndex(bars["ts"])
        assert have.union(thin.missing_minutes(ticker, START, END)).equals(minutes)
        # prices are quotes on the grid; OHLC stays consistent
        tick = THIN.tick_bps * 1e-4 * all_bars(liquid, ticker)["open"].iloc[0]
        for col in ("open", "high", "low", "close"):
            units = bars[col].to_numpy() / tick
            np.testing.assert_allclose(units, np.rint(units), atol=1e-6)
        assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
        # the path is the liquid one underneath: a traded minute closes at the price of that time
        same = all_bars(liquid, ticker).set_index("ts").loc[have]
        assert np.abs(bars["close"].to_numpy() - same["close"].to_numpy()).max() <= tick / 2 + 1e-9
        assert (bars["volume"].to_numpy() == same["volume"].to_numpy()).all()
        # many returns between consecutive bars are exactly zero (a real thin ticker: 15-62 %)
        zeros.append(float(np.mean(np.diff(bars["close"].to_numpy()) == 0.0)))
    assert 0.3 < np.mean(zeros) < 0.7 and min(zeros) > 0.2 and max(zeros) < 0.8, zeros
    # trades follow the volume shape: the open trades more often than midday
    local = pd.DatetimeIndex(all_bars(thin, "AAPL")["ts"]).tz_convert(MARKET_TZ)
    minute = local.hour * 60 + local.minute - 570
    assert np.sum(minute < 15) / 15 > 2 * np.sum((minute >= 180) & (minute < 195)) / 15


def test_ticks_keep_the_adjustment_ground_truth() -> None:
    thin = SyntheticMarket(dataclasses.replace(CONFIG, liquidity=THIN))
    for ticker in ("AAPL", "MSFT"):  # a split each, AAPL pays dividends
        raw = all_bars(thin, ticker)
        adjusted = thin.true_adjusted_bars(ticker, START, END)
        factor = adjusted["close"] / raw["close"]
        day = raw["ts"].dt.tz_convert(MARKET_TZ).dt.date
        assert (factor.groupby(day).std().fillna(0.0) < 1e-12).all()  # one factor per session
    dividends = thin.get_dividends("AAPL")
    assert len(dividends) > 0
    for ex_date, amount in zip(dividends["ex_date"], dividends["amount"], strict=True):
        before = thin.get_bars("AAPL", START, ny(str(ex_date.date())))
        assert 0.002 <= amount / before["close"].iloc[-1] <= 0.008


# --- bad inputs ----------------------------------------------------------------------------------
def test_bad_inputs_raise_value_error(market: SyntheticMarket) -> None:
    day = ny("2026-12-01")
    with pytest.raises(ValueError, match="unknown ticker"):
        market.get_bars("ZZZZ", day, day + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="unknown ticker"):
        market.get_splits("ZZZZ")
    with pytest.raises(ValueError, match="before end"):
        market.get_bars("AAPL", day, day)
    with pytest.raises(ValueError, match="naive"):
        market.get_bars("AAPL", pd.Timestamp("2026-12-01"), day + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="naive"):
        market.latent_signal("AAPL", day, pd.Timestamp("2026-12-02"))
    with pytest.raises(SourceRangeError, match="outside the simulated range"):
        market.get_bars("AAPL", ny("2026-10-30"), day)
    with pytest.raises(ValueError, match="outside the simulated range"):
        market.missing_minutes("AAPL", day, ny("2027-01-05"))
    with pytest.raises(ValueError, match="kind"):
        market.true_adjusted_bars("AAPL", day, day + pd.Timedelta(days=1), kind="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after end"):
        market.get_dividends("AAPL", "2026-12-10", "2026-12-01")
    for bad in (
        {"tickers": ()},
        {"tickers": ("A", "A")},
        {"start": "2026-12-31", "end": "2026-11-02"},
        {"start": "2026-11-26", "end": "2026-11-26"},
        {"missing_rate": 1.0},
        {"seed": -1},
        {"regime_shift_at": pd.Timestamp("2026-12-01 14:30")},
        {"liquidity": {"ZZZZ": Liquidity()}},
    ):
        with pytest.raises(ValueError):
            SyntheticMarket(dataclasses.replace(CONFIG, **bad))
    for traded, tick in ((0.0, 0.0), (1.5, 0.0), (0.5, -1.0), (float("nan"), 0.0)):
        with pytest.raises(ValueError, match="Liquidity"):
            Liquidity(traded, tick)
