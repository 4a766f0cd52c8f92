"""The cost-aware backtest: the per-bar reference, hand-built trades, properties, edge cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_assets.evaluation import BacktestSpec, run_backtest, signal_score, write_equity_curve
from quant_assets.evaluation.backtest import _new_york_dates
from quant_assets.labels import LabelSpec, barrier_volatility
from quant_assets.market import calendar
from quant_assets.market.frames import empty_bars
from quant_assets_tests.evaluation.helpers import (
    assert_matches_reference,
    hand_bars,
    market_bars,
    random_probs,
    random_walk_bars,
    reference_ic,
)

DAY, NEXT_DAY = "2024-03-08", "2024-03-11"  # a DST switch between them
SESSIONS = (DAY, NEXT_DAY, "2024-11-29")  # ... and an early close
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIGMA = 0.0625  # exact in binary: entry 64 -> barriers 68 and 60 exactly
LONG, SHORT = np.array([0.05, 0.05, 0.9]), np.array([0.9, 0.05, 0.05])
FLAT = np.array([0.2, 0.6, 0.2])


def probs_at(n: int, signals: dict[int, np.ndarray]) -> np.ndarray:
    """Flat probabilities except the given rows."""
    out = np.tile(FLAT, (n, 1))
    for row, p in signals.items():
        out[row] = p
    return out


def one_trade(bars: pd.DataFrame, signals: dict[int, np.ndarray], **spec) -> pd.Series:
    result = run_backtest(
        bars, probs_at(len(bars), signals), np.full(len(bars), SIGMA), _spec(spec)
    )
    assert len(result.trades) == 1, result.trades
    return result.trades.iloc[0]


def _spec(overrides: dict) -> BacktestSpec:
    return BacktestSpec(**({"threshold": 0.5} | overrides))


# --- the reference loop -------------------------------------------------------------------------
@pytest.mark.parametrize("touch", ["close", "high_low"])
@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.7])
def test_matches_reference_on_synthetic_market(touch: str, threshold: float) -> None:
    bars, _ = market_bars(("AAA", "BBB", "CCC"), "2026-03-05", 4)  # a DST switch inside
    sigma = barrier_volatility(bars, span=20, horizon=15).to_numpy()
    spec = BacktestSpec(threshold=threshold, horizon_minutes=15, touch=touch)
    result = assert_matches_reference(bars, random_probs(len(bars), seed=1), sigma, spec)
    assert result.portfolio.n_trades > 20
    assert set(result.trades["exit_reason"]) >= {"take_profit", "stop_loss", "vertical"}


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    keep=st.sampled_from([1.0, 0.7, 0.3]),
    threshold=st.sampled_from([0.05, 0.2, 0.5, 0.9]),
    horizon=st.sampled_from([1, 2, 7, 30, 400]),
    barriers=st.sampled_from([(1.0, 1.0), (0.0, 2.0), (2.0, 0.5), (0.3, 0.3)]),
    touch=st.sampled_from(["close", "high_low"]),
    nan_share=st.sampled_from([0.0, 0.3]),
)
def test_matches_reference_on_random_bars(
    seed: int,
    keep: float,
    threshold: float,
    horizon: int,
    barriers: tuple[float, float],
    touch: str,
    nan_share: float,
) -> None:
    bars = random_walk_bars(("AAA", "BBB"), SESSIONS, keep=keep, seed=seed, minutes=120)
    bars = bars.sample(frac=1.0, random_state=seed).sort_values("ts", kind="stable")  # interleave
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.0005, 0.01, len(bars))
    sigma[rng.random(len(bars)) < nan_share] = np.nan
    spec = BacktestSpec(
        threshold=threshold,
        horizon_minutes=horizon,
        profit_take=barriers[0],
        stop_loss=barriers[1],
        touch=touch,
    )
    assert_matches_reference(
        bars, random_probs(len(bars), seed), sigma, spec, ("AAA", "BBB", "ZZZ")
    )


def test_information_coefficient_matches_scipy() -> None:
    bars = random_walk_bars(("AAA", "BBB"), SESSIONS, keep=0.6, seed=3, minutes=200)
    score = np.round(signal_score(random_probs(len(bars), 3)), 1)  # ties in the score
    score[::7] = np.nan
    spec = BacktestSpec(threshold=0.5, horizon_minutes=10)
    result = run_backtest(bars, score, np.full(len(bars), 0.01), spec)
    by_ticker, portfolio = reference_ic(bars, score, 10, result.tickers)
    for ticker, ic in by_ticker.items():
        assert result.book(ticker).ic == pytest.approx(ic, abs=1e-12)
    assert result.portfolio.ic == pytest.approx(portfolio, abs=1e-12)
    assert result.portfolio.ic_sessions == len(SESSIONS)


def test_planted_signal_earns_and_martingale_does_not() -> None:
    """The synthetic market's latent m_t (known at t) as the score: a clear IC and P&L after
    costs when a signal is planted; on the martingale an IC within noise (≈ 0.05 sd over 20
    ticker-sessions) and a break-even below 1 bps."""
    books = {}
    for signal in (0.0, 0.3):
        bars, market = market_bars(("AAA", "BBB", "CCC", "DDD"), "2026-05-04", 5, signal=signal)
        score = np.concatenate(
            [
                market.latent_signal(t, g["ts"].iloc[0], g["ts"].iloc[-1] + pd.Timedelta("1min"))
                .reindex(pd.DatetimeIndex(g["ts"]))
                .to_numpy()
                for t, g in bars.groupby("ticker", sort=False)
            ]
        )
        sigma = barrier_volatility(bars, span=30, horizon=15).to_numpy()
        spec = BacktestSpec(threshold=0.5, horizon_minutes=15)
        books[signal] = run_backtest(bars, score, sigma, spec).portfolio
    planted, null = books[0.3], books[0.0]
    assert planted.ic > 0.3 and planted.at(0.0).hit_rate > 0.65
    assert planted.at(1.0).net_return > 0 and planted.break_even_bps > 3
    assert abs(null.ic) < 0.15 and null.break_even_bps < 1 and null.at(1.0).net_return < 0


# --- hand-built trades --------------------------------------------------------------------------
def test_long_hits_the_upper_barrier_at_a_close() -> None:
    bars = hand_bars(DAY, [64, 64, 65, 68, 66, 66])  # 68 = 64 (1 + 0.0625): a touch
    trade = one_trade(bars, {0: LONG})
    assert (trade["side"], trade["entry_price"], trade["exit_price"]) == (1, 64.0, 68.0)
    assert trade["exit_reason"] == "take_profit"
    assert trade["entry_ts"] == bars["ts"][1] and trade["exit_ts"] == bars["ts"][3]
    assert trade["gross_return"] == 68 / 64 - 1
    assert trade["holding_minutes"] == 3.0


def test_short_hits_the_stop_at_the_barrier_price() -> None:
    bars = hand_bars(DAY, [64, 64, 65, 64, 64], high=[64, 64, 66, 68.5, 64])
    trade = one_trade(bars, {0: SHORT}, touch="high_low")
    assert trade["side"] == -1 and trade["exit_reason"] == "stop_loss"
    assert trade["exit_price"] == 68.0  # the barrier, not the bar's close
    assert trade["gross_return"] == -(68 / 64 - 1)
    assert trade["exit_ts"] == bars["ts"][3]


def test_a_gap_through_a_barrier_fills_at_the_open() -> None:
    """A bar opening beyond a barrier fills at its open: worse than a stop, better than a take."""
    bars = hand_bars(DAY, [64, 64, 65, 70, 70], open=[64, 64, 64, 69.5, 70])
    short = one_trade(bars, {0: SHORT}, touch="high_low")
    assert (short["exit_reason"], short["exit_price"]) == ("stop_loss", 69.5)
    long = one_trade(bars, {0: LONG}, touch="high_low")
    assert (long["exit_reason"], long["exit_price"]) == ("take_profit", 69.5)


def test_a_bar_touching_both_barriers_stops() -> None:
    bars = hand_bars(DAY, [64, 64, 64, 64], high=[64, 64, 69, 64], low=[64, 64, 59, 64])
    for signal in (LONG, SHORT):
        trade = one_trade(bars, {0: signal}, touch="high_low")
        assert trade["exit_reason"] == "stop_loss" and trade["gross_return"] == -SIGMA


def test_the_entry_bar_itself_can_touch() -> None:
    bars = hand_bars(DAY, [64, 70, 64, 64], open=[64, 64, 70, 64])
    trade = one_trade(bars, {0: LONG})
    assert trade["exit_ts"] == trade["entry_ts"] and trade["holding_minutes"] == 1.0


def test_vertical_exit_after_horizon_minutes() -> None:
    bars = hand_bars(DAY, np.full(12, 64.0) + np.arange(12) * 0.01)
    trade = one_trade(bars, {0: LONG}, horizon_minutes=5)
    # entry at minute 1's open; V = minute 6: the last bar closing by then is minute 5
    assert trade["exit_reason"] == "vertical" and trade["exit_ts"] == bars["ts"][5]
    assert trade["exit_price"] == bars["close"][5] and trade["holding_minutes"] == 5.0


def test_vertical_exit_with_a_missing_minute() -> None:
    bars = hand_bars(DAY, np.full(7, 64.0), minutes=[0, 1, 2, 3, 4, 6, 7])
    trade = one_trade(bars, {0: LONG}, horizon_minutes=5)
    assert trade["exit_ts"] == bars["ts"][4] and trade["exit_reason"] == "vertical"


def test_session_close_flattens() -> None:
    minutes = [385, 386, 387, 388, 389]
    first = hand_bars(DAY, [64, 64, 65, 63, 64.5], minutes=minutes)
    bars = pd.concat([first, hand_bars(NEXT_DAY, [64] * 5)], ignore_index=True)
    trade = one_trade(bars, {0: LONG}, horizon_minutes=30)
    assert trade["exit_reason"] == "session_close" and trade["exit_ts"] == first["ts"].iloc[-1]
    assert trade["exit_price"] == 64.5 and trade["holding_minutes"] == 4.0
    assert trade["session"] == pd.Timestamp(DAY)


def test_signal_on_the_last_bar_of_a_session_never_trades() -> None:
    bars = pd.concat(
        [hand_bars(DAY, [64, 64], minutes=[388, 389]), hand_bars(NEXT_DAY, [64, 65, 66])],
        ignore_index=True,
    )
    result = run_backtest(bars, probs_at(5, {1: LONG}), np.full(5, SIGMA), _spec({}))
    assert result.trades.empty and result.portfolio.n_trades == 0


def test_signals_inside_a_position_are_ignored() -> None:
    bars = hand_bars(DAY, np.full(20, 64.0))
    result = run_backtest(bars, probs_at(20, dict.fromkeys(range(20), LONG)), np.full(20, SIGMA),
                          _spec({"horizon_minutes": 5}))  # fmt: skip
    ts = bars["ts"]
    # each exit bar's own signal opens the next trade
    assert list(result.trades["signal_ts"]) == [ts[0], ts[5], ts[10], ts[15]]
    assert list(result.trades["exit_ts"]) == [ts[5], ts[10], ts[15], ts[19]]
    assert list(result.trades["exit_reason"]) == ["vertical"] * 3 + ["session_close"]


def test_costs_take_two_sides_per_trade() -> None:
    bars = hand_bars(DAY, [64, 64, 64.0096, 64, 64, 64, 64.3, 64.3, 64.3])
    sigma = np.full(9, 1.0)  # barriers out of reach: vertical exits
    probs = probs_at(9, {0: LONG, 4: SHORT})
    result = run_backtest(bars, probs, sigma, _spec({"horizon_minutes": 2}))
    gross = result.trades["gross_return"].to_numpy()
    np.testing.assert_allclose(gross, [64.0096 / 64 - 1, -(64.3 / 64 - 1)], rtol=1e-15)
    book = result.portfolio
    for c in result.spec.costs_bps:
        assert book.at(c).net_return == pytest.approx(gross.sum() - 2 * 2 * c / 1e4, abs=1e-16)
        assert result.ticker_daily(c)["AAA"].sum() == pytest.approx(book.at(c).net_return)
    # the long earned 1.5 bps: a hit net of 0.5 bps per side, a miss net of 1 bps
    assert [book.at(c).hit_rate for c in (0.0, 0.5, 1.0)] == [0.5, 0.5, 0.0]
    assert book.break_even_bps == pytest.approx(gross.sum() / 4 * 1e4)
    assert book.turnover == 4.0  # two trades, each in and out, in one session


# --- properties -----------------------------------------------------------------------------
@st.composite
def cases(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, BacktestSpec]:
    seed = draw(st.integers(0, 10_000))
    bars = random_walk_bars(("AAA", "BBB"), SESSIONS[:2], keep=draw(st.sampled_from([1, 0.5])),
                            seed=seed, minutes=90)  # fmt: skip
    sigma = np.random.default_rng(seed).uniform(0.001, 0.01, len(bars))
    spec = BacktestSpec(
        threshold=draw(st.sampled_from([0.1, 0.4])),
        horizon_minutes=draw(st.sampled_from([3, 20])),
        touch=draw(st.sampled_from(["close", "high_low"])),
    )
    return bars, random_probs(len(bars), seed), sigma, spec


@SETTINGS
@given(case=cases())
def test_net_never_exceeds_gross(case) -> None:
    result = run_backtest(*case)
    gross = result.ticker_daily(0.0).to_numpy()
    hit_rates = [result.portfolio.at(c).hit_rate for c in result.spec.costs_bps]
    for c in result.spec.costs_bps:
        assert (result.ticker_daily(c).to_numpy() <= gross).all()
        assert result.portfolio.at(c).net_return <= result.portfolio.gross_return
    assert hit_rates == sorted(hit_rates, reverse=True)


@SETTINGS
@given(case=cases())
def test_net_is_zero_at_the_break_even_cost(case) -> None:
    result = run_backtest(*case)
    be = result.portfolio.break_even_bps
    assert result.portfolio_daily(be).sum() == pytest.approx(0.0, abs=1e-12)


@SETTINGS
@given(case=cases())
def test_zero_signal_gives_zero_pnl(case) -> None:
    bars, _, sigma, spec = case
    result = run_backtest(bars, np.zeros(len(bars)), sigma, spec)
    assert result.trades.empty
    assert (result.ticker_daily(5.0).to_numpy() == 0).all()
    assert result.portfolio.gross_return == 0 and np.isnan(result.portfolio.gross_sharpe)
    assert result.portfolio.exposure == 0 and np.isnan(result.portfolio.at(1.0).hit_rate)


@SETTINGS
@given(case=cases())
def test_flipping_the_signal_mirrors_vertical_trades(case) -> None:
    """With barriers out of reach every exit is at the vertical or the session's close, so
    the negated score takes the same trades on the other side: gross returns negate exactly."""
    bars, probs, sigma, spec = case
    score = signal_score(probs)
    far = BacktestSpec(threshold=spec.threshold, horizon_minutes=spec.horizon_minutes,
                       profit_take=1e6, stop_loss=1e6, touch=spec.touch)  # fmt: skip
    a, b = run_backtest(bars, score, sigma, far), run_backtest(bars, -score, sigma, far)
    assert (a.trades["side"] == -b.trades["side"]).all()
    assert (a.trades["exit_ts"] == b.trades["exit_ts"]).all()
    assert (a.trades["gross_return"] == -b.trades["gross_return"]).all()


@SETTINGS
@given(case=cases(), shuffle=st.integers(0, 1000), power=st.integers(-3, 3))
def test_row_order_and_price_scale_do_not_matter(case, shuffle: int, power: int) -> None:
    """Tickers interleaved differently, and prices times a power of two (exact in binary):
    the same trades and returns, bit for bit."""
    bars, probs, sigma, spec = case
    base = run_backtest(bars, probs, sigma, spec)
    moved = bars.sample(frac=1.0, random_state=shuffle).sort_values("ts", kind="stable")
    scaled = moved.assign(**{c: moved[c] * 2.0**power for c in ("open", "high", "low", "close")})
    pos = moved.index.to_numpy()
    other = run_backtest(scaled.reset_index(drop=True), probs[pos], sigma[pos], spec)
    for col in ("signal_ts", "exit_ts", "side", "exit_reason", "gross_return"):
        assert base.trades[col].tolist() == other.trades[col].tolist(), col
    assert base.to_dict() == other.to_dict()


@SETTINGS
@given(case=cases())
def test_trades_stay_inside_the_policy(case) -> None:
    bars, probs, sigma, spec = case
    result = run_backtest(bars, probs, sigma, spec)
    trades = result.trades
    assert (trades["entry_ts"] > trades["signal_ts"]).all()
    assert (trades["exit_ts"] >= trades["entry_ts"]).all()
    assert (trades["holding_minutes"] <= spec.horizon_minutes).all()
    assert (calendar.session_labels(trades["exit_ts"]) == trades["session"]).all()
    for _, own in trades.groupby("ticker"):
        assert (own["signal_ts"].to_numpy()[1:] >= own["exit_ts"].to_numpy()[:-1]).all()
    for book in (result.portfolio, *result.by_ticker):
        assert 0.0 <= book.exposure <= 1.0


# --- edge cases ---------------------------------------------------------------------------------
def test_empty_input_gives_zero_trades() -> None:
    result = run_backtest(empty_bars(), np.zeros((0, 3)), np.zeros(0), _spec({}))
    assert result.trades.empty and result.tickers == () and result.sessions.empty
    assert result.portfolio.n_trades == 0 and result.portfolio.gross_return == 0.0
    assert result.portfolio_daily().empty
    json.dumps(result.to_dict(), allow_nan=False)
    assert list(result.cost_grid_table().index) == list(result.spec.costs_bps)


def test_a_ticker_without_bars_is_flat_and_dilutes() -> None:
    bars = hand_bars(DAY, [64, 64, 65, 68, 66, 66])
    probs, sigma = probs_at(6, {0: LONG}), np.full(6, SIGMA)
    result = run_backtest(bars, probs, sigma, _spec({}), tickers=("AAA", "ZZZ"))
    empty = result.book("ZZZ")
    assert (empty.n_trades, empty.gross_return, empty.exposure) == (0, 0.0, 0.0)
    assert np.isnan(empty.ic) and np.isnan(empty.break_even_bps)
    daily = result.ticker_daily(1.0)
    assert (daily["ZZZ"] == 0).all()
    pd.testing.assert_series_equal(
        result.portfolio_daily(1.0), daily["AAA"].rename("portfolio") / 2
    )
    assert result.portfolio.exposure == result.book("AAA").exposure / 2


def test_nan_sigma_rows_never_trade() -> None:
    bars = hand_bars(DAY, np.full(40, 64.0))
    sigma = np.full(40, np.nan)
    sigma[[10, 30]] = SIGMA
    sigma[20] = 0.0
    result = run_backtest(bars, probs_at(40, dict.fromkeys(range(40), LONG)), sigma,
                          _spec({"horizon_minutes": 3}))  # fmt: skip
    assert list(result.trades["signal_ts"]) == [bars["ts"][10], bars["ts"][30]]


def test_nan_score_rows_never_trade() -> None:
    bars = hand_bars(DAY, np.full(10, 64.0))
    score = np.full(10, np.nan)
    score[4] = -0.8
    result = run_backtest(bars, score, np.full(10, SIGMA), _spec({"horizon_minutes": 2}))
    assert list(result.trades["signal_ts"]) == [bars["ts"][4]]
    assert list(result.trades["side"]) == [-1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b, p, s: (b.iloc[::-1], p, s), "increasing ts"),
        (lambda b, p, s: (b.drop(columns="open"), p, s), "lack columns"),
        (lambda b, p, s: (b.assign(close=-b["close"]), p, s), "close prices"),
        (lambda b, p, s: (b, p[:, :2], s), r"\[n, 3\]"),
        (lambda b, p, s: (b, p[1:], s), "one value per bar"),
        (lambda b, p, s: (b, np.full(len(b), np.inf), s), "infinite"),
        (lambda b, p, s: (b, p, s[1:]), "one value per bar"),
        (lambda b, p, s: (b, p, pd.Series(s, index=b.index + 1)), "same index"),
    ],
)
def test_bad_inputs_are_refused(change, message: str) -> None:
    bars = hand_bars(DAY, np.full(5, 64.0))
    args = change(bars, probs_at(5, {}), np.full(5, SIGMA))
    with pytest.raises(ValueError, match=message):
        run_backtest(*args, _spec({}))


def test_tickers_outside_the_universe_are_refused() -> None:
    bars = hand_bars(DAY, np.full(5, 64.0))
    with pytest.raises(ValueError, match="outside the universe"):
        run_backtest(bars, probs_at(5, {}), np.full(5, SIGMA), _spec({}), tickers=("BBB",))


@pytest.mark.parametrize(
    "bad",
    [
        {"threshold": 0.0},
        {"horizon_minutes": 0},
        {"horizon_minutes": 2.5},
        {"profit_take": -1.0},
        {"touch": "open"},
        {"costs_bps": ()},
        {"costs_bps": (1.0, -1.0)},
        {"default_cost_bps": 3.0},
    ],
)
def test_spec_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        _spec(bad)


def test_spec_from_labels_and_to_dict() -> None:
    spec = BacktestSpec.from_label_spec(LabelSpec(horizon=20, stop_loss=2.0), threshold=0.3)
    assert (spec.horizon_minutes, spec.stop_loss, spec.touch) == (20, 2.0, "close")
    assert spec.to_dict()["costs_bps"] == [0.0, 0.5, 1.0, 2.0, 5.0]
    assert spec.default_cost_bps == 1.0


def test_new_york_dates_match_the_calendar() -> None:
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    ts = np.sort(rng.integers(start, start + 400 * 86_400 * 10**9, 20_000))
    hours = np.arange(start, start + 400 * 86_400 * 10**9, 3_600 * 10**9)  # every hour boundary
    ts = np.sort(np.r_[ts, hours, hours - 1])
    expected = calendar.session_labels(pd.Series(pd.DatetimeIndex(ts, tz="UTC")))
    got = _new_york_dates(ts)
    assert (got == expected.to_numpy().astype("int64") // (86_400 * 10**9)).all()


# --- outputs ------------------------------------------------------------------------------------
def test_outputs_are_json_ready_and_plottable(tmp_path) -> None:
    bars, _ = market_bars(("AAA", "BBB"), "2026-04-06", 3)
    sigma = barrier_volatility(bars, span=20, horizon=30).to_numpy()
    result = run_backtest(bars, random_probs(len(bars), 5), sigma, BacktestSpec(threshold=0.4))
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert summary["portfolio"]["n_trades"] == len(result.trades)
    assert [c["cost_bps"] for c in summary["portfolio"]["costs"]] == [0.0, 0.5, 1.0, 2.0, 5.0]
    table = result.cost_grid_table()
    assert list(table.index) == [0.0, 0.5, 1.0, 2.0, 5.0]
    assert table["net_return"].is_monotonic_decreasing
    assert table.loc[1.0, "sharpe"] == result.portfolio.at(1.0).sharpe
    assert result.cost_grid_table("BBB").loc[0.0, "n_trades"] == result.book("BBB").n_trades
    daily = result.portfolio_daily(0.0)
    assert list(daily.index) == [
        pd.Timestamp(d) for d in ("2026-04-06", "2026-04-07", "2026-04-08")
    ]
    for path in (write_equity_curve(result, tmp_path / "eq.png"),
                 write_equity_curve(result, tmp_path / "a" / "aaa.png", ticker="AAA")):  # fmt: skip
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
