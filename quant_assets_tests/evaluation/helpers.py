"""The per-bar reference backtest and bar builders for the backtest tests and benchmark.

``reference_backtest`` is the policy of ``quant_assets.evaluation.backtest`` written again as a
plain Python state machine that walks each ticker's bars one at a time (flat → signal pending →
in a position → flat) and books the cost at each fill, like a simple backtester: one run per
cost level, so it also checks that costs are linear in the trades (the package's one-pass
shortcut). It shares no code with the package. ``reference_ic`` is the information coefficient
with scipy's Spearman per (ticker, session).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from quant_assets.evaluation.backtest import (
    BacktestResult,
    BacktestSpec,
    run_backtest,
    signal_score,
)
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket

MINUTE_NS = 60_000_000_000
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class RefTrade:
    ticker: str
    signal_ts: int  # ns
    entry_ts: int
    exit_ts: int
    side: int
    entry_price: float
    exit_price: float
    exit_reason: str
    gross_return: float
    net_return: float


@dataclass(frozen=True)
class RefResult:
    trades: list[RefTrade]
    sessions: list[pd.Timestamp]
    daily: dict[str, list[float]]  # ticker -> net return per session (at the run's cost)

    def portfolio(self) -> list[float]:
        """Equal-weight mean over the tickers of the daily net returns."""
        per_ticker = list(self.daily.values())
        return [sum(day) / len(per_ticker) for day in zip(*per_ticker, strict=True)]


def reference_backtest(
    bars: pd.DataFrame,
    score: np.ndarray,
    sigma: np.ndarray,
    spec: BacktestSpec,
    cost_bps: float,
    tickers: Sequence[str] | None = None,
) -> RefResult:
    """The backtest at one cost, one bar at a time per ticker (the package's docstring)."""
    names = [str(t) for t in bars["ticker"].tolist()]
    universe = sorted(set(names)) if tickers is None else list(tickers)
    ts = pd.to_datetime(bars["ts"], utc=True)
    day_ns = calendar.session_labels(ts).to_numpy().astype("int64")
    cols = {c: bars[c].to_numpy(dtype=float).tolist() for c in ("open", "close")}
    for c in ("high", "low"):
        cols[c] = bars[c].to_numpy(dtype=float).tolist() if c in bars else cols["close"]
    data = {
        "ts": ts.astype("datetime64[ns, UTC]").array.asi8.tolist(),
        "session": (day_ns // DAY_NS).tolist(),
        "score": np.asarray(score, dtype=float).tolist(),
        "sigma": np.asarray(sigma, dtype=float).tolist(),
        **cols,
    }
    days = sorted(set(data["session"]))
    day_of = {day: k for k, day in enumerate(days)}
    rows_of: dict[str, list[int]] = {t: [] for t in universe}
    for row, name in enumerate(names):
        rows_of[name].append(row)
    trades: list[RefTrade] = []
    daily = {}
    for name in universe:
        pnl = [0.0] * len(days)
        trades += _walk_ticker(name, rows_of[name], data, spec, cost_bps / 10_000.0, pnl, day_of)
        daily[name] = pnl
    return RefResult(trades, [pd.Timestamp(day * DAY_NS) for day in days], daily)


def _walk_ticker(
    name: str,
    rows: list[int],
    d: dict[str, list],
    spec: BacktestSpec,
    cost: float,
    pnl: list[float],
    day_of: dict[int, int],
) -> list[RefTrade]:
    """The state machine over one ticker's bars in time order; books P&L into ``pnl``."""
    horizon = spec.horizon_minutes * MINUTE_NS
    high_low = spec.touch == "high_low"
    out: list[RefTrade] = []
    pending = None  # (side, sigma, signal row): enter at the next bar's open
    pos = None  # the open position
    for k, r in enumerate(rows):
        nxt = rows[k + 1] if k + 1 < len(rows) else None
        next_in_session = nxt is not None and d["session"][nxt] == d["session"][r]
        today = day_of[d["session"][r]]
        if pending is not None:  # enter at this bar's open, pay the cost
            side, vol, signal_row = pending
            pending = None
            fill = d["open"][r]
            if side > 0:
                take = fill * (1.0 + spec.profit_take * vol)
                stop = fill * (1.0 - spec.stop_loss * vol)
            else:
                take = fill * (1.0 - spec.profit_take * vol)
                stop = fill * (1.0 + spec.stop_loss * vol)
            pos = {
                "side": side,
                "fill": fill,
                "take": take,
                "stop": stop,
                "signal": signal_row,
                "entry": r,
                "deadline": d["ts"][r] + horizon,
            }
            pnl[today] -= cost
        if pos is not None:
            exit_at = _exit_now(pos, d, r, nxt, next_in_session, high_low)
            if exit_at is not None:
                price, reason = exit_at
                gross = pos["side"] * (price / pos["fill"] - 1.0)
                pnl[today] += gross
                pnl[today] -= cost
                trade = RefTrade(
                    ticker=name,
                    signal_ts=d["ts"][pos["signal"]],
                    entry_ts=d["ts"][pos["entry"]],
                    exit_ts=d["ts"][r],
                    side=pos["side"],
                    entry_price=pos["fill"],
                    exit_price=price,
                    exit_reason=reason,
                    gross_return=gross,
                    net_return=gross - 2.0 * cost,
                )
                out.append(trade)
                pos = None
        if pos is None and next_in_session:  # flat at this bar's close: its signal counts
            s, vol = d["score"][r], d["sigma"][r]
            side = 1 if s >= spec.threshold else (-1 if s <= -spec.threshold else 0)
            if side != 0 and np.isfinite(vol) and vol > 0:
                pending = (side, vol, r)
    return out


def _barrier_fill(pos: dict, d: dict[str, list], r: int, which: str) -> float:
    """The barrier price, or bar r's open when the bar opened beyond the barrier."""
    level, opened = pos[which], d["open"][r]
    long_stop_or_short_take = (pos["side"] > 0) == (which == "stop")
    if long_stop_or_short_take:
        return min(level, opened)
    return max(level, opened)


def _exit_now(
    pos: dict, d: dict[str, list], r: int, nxt: int | None, next_in_session: bool, high_low: bool
) -> tuple[float, str] | None:
    """(exit price, reason) if the position ends at bar r, else None."""
    hi = d["high"][r] if high_low else d["close"][r]
    lo = d["low"][r] if high_low else d["close"][r]
    if pos["side"] > 0:
        hit_stop, hit_take = lo <= pos["stop"], hi >= pos["take"]
    else:
        hit_stop, hit_take = hi >= pos["stop"], lo <= pos["take"]
    if hit_stop:  # stop first
        return (_barrier_fill(pos, d, r, "stop") if high_low else d["close"][r]), "stop_loss"
    if hit_take:
        return (_barrier_fill(pos, d, r, "take") if high_low else d["close"][r]), "take_profit"
    if not next_in_session:
        early = d["ts"][r] + MINUTE_NS < pos["deadline"]
        return d["close"][r], ("session_close" if early else "vertical")
    if d["ts"][nxt] + MINUTE_NS > pos["deadline"]:  # the next bar would close after V
        return d["close"][r], "vertical"
    return None


def reference_ic(
    bars: pd.DataFrame, score: np.ndarray, horizon_minutes: int, tickers: Sequence[str]
) -> tuple[dict[str, float], float]:
    """Per-ticker and portfolio IC with scipy's Spearman per (ticker, session)."""
    ts = pd.to_datetime(bars["ts"], utc=True)
    frame = pd.DataFrame(
        {
            "ticker": bars["ticker"].astype(str).to_numpy(),
            "ts": ts.astype("datetime64[ns, UTC]").array.asi8,
            "session": calendar.session_labels(ts).to_numpy(),
            "close": bars["close"].to_numpy(dtype=float),
            "score": np.asarray(score, dtype=float),
        }
    )
    per_day: dict[tuple[str, pd.Timestamp], float] = {}
    for (ticker, day), g in frame.groupby(["ticker", "session"], sort=True):
        t, close, s = g["ts"].to_numpy(), g["close"].to_numpy(), g["score"].to_numpy()
        end = np.searchsorted(t, t + horizon_minutes * MINUTE_NS, side="right") - 1
        fwd = np.where(end > np.arange(len(g)), close[end] / close - 1.0, np.nan)
        ok = ~np.isnan(fwd) & ~np.isnan(s)
        x, y = s[ok], fwd[ok]
        if ok.sum() >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
            per_day[(ticker, day)] = float(stats.spearmanr(x, y).statistic)
    by_ticker = {}
    for t in tickers:
        values = [c for (tk, _), c in per_day.items() if tk == t]
        by_ticker[t] = float(np.mean(values)) if values else float("nan")
    days = sorted({day for _, day in per_day})
    means = [np.mean([c for (_, dd), c in per_day.items() if dd == day]) for day in days]
    return by_ticker, float(np.mean(means)) if means else float("nan")


def market_bars(
    tickers: Sequence[str],
    first_session: str,
    n_sessions: int,
    seed: int = 7,
    signal: float = 0.0,
) -> tuple[pd.DataFrame, SyntheticMarket]:
    """Raw bars of ``n_sessions`` sessions of the synthetic market, ticker after ticker."""
    days = calendar.sessions(first_session, pd.Timestamp(first_session) + pd.Timedelta(days=400))
    days = days[:n_sessions]
    config = SyntheticConfig(
        seed=seed,
        tickers=tuple(tickers),
        start=str(days[0].date()),
        end=str(days[-1].date()),
        signal=signal,
        corporate_actions=False,
    )
    market = SyntheticMarket(config)
    start, end = calendar.session_bounds(days[0])[0], calendar.session_bounds(days[-1])[1]
    bars = pd.concat([market.get_bars(t, start, end) for t in tickers], ignore_index=True)
    return bars, market


def random_walk_bars(
    tickers: Sequence[str], sessions: Sequence[str], keep: float, seed: int, minutes: int = 390
) -> pd.DataFrame:
    """Seeded random-walk bars in cents (ties with barriers happen) on real session minutes,
    with missing minutes and opens that gap from the previous close."""
    rng = np.random.default_rng(seed)
    grid = pd.DatetimeIndex(
        np.concatenate([calendar.session_minutes(d)[:minutes].to_numpy() for d in sessions])
    )
    frames = []
    for ticker in tickers:
        ts = grid[rng.random(len(grid)) < keep]
        close = np.round(20.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-3, len(ts)))), 2)
        open_ = np.round(np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 5e-4, len(ts))), 2)
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
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def hand_bars(session: str, closes: Sequence[float], ticker: str = "AAA", **cols) -> pd.DataFrame:
    """Bars from a session's open, one per minute: ``closes``; open defaults to the previous
    close, high/low to max/min(open, close); ``minutes`` (positions in the session) and
    ``open`` / ``high`` / ``low`` may be given."""
    close = np.asarray(closes, dtype=float)
    minutes = np.asarray(cols.pop("minutes", np.arange(close.size)))
    open_ = np.asarray(cols.pop("open", np.r_[close[0], close[:-1]]), dtype=float)
    high = np.asarray(cols.pop("high", np.maximum(open_, close)), dtype=float)
    low = np.asarray(cols.pop("low", np.minimum(open_, close)), dtype=float)
    if cols:
        raise TypeError(f"unknown columns {sorted(cols)}")
    return pd.DataFrame(
        {
            "ticker": pd.array([ticker] * close.size, dtype="string"),
            "ts": calendar.session_minutes(session)[minutes],
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
        }
    )


def random_probs(n: int, seed: int) -> np.ndarray:
    """Dirichlet(1, 1, 1) class probabilities [n, 3]."""
    return np.random.default_rng(seed).dirichlet([1.0, 1.0, 1.0], n)


def assert_matches_reference(
    bars: pd.DataFrame,
    probs: np.ndarray,
    sigma: np.ndarray,
    spec: BacktestSpec,
    tickers: Sequence[str] | None = None,
) -> BacktestResult:
    """run_backtest equals the reference at every cost of the grid (``assert_same``)."""
    result = run_backtest(bars, probs, sigma, spec, tickers=tickers)
    score = signal_score(probs)
    for cost in spec.costs_bps:
        assert_same(result, reference_backtest(bars, score, sigma, spec, cost, tickers), cost)
    return result


def assert_same(result: BacktestResult, ref: RefResult, cost_bps: float) -> None:
    """The same trades (prices and gross returns bit for bit), daily net P&L per ticker and
    portfolio to 1e-12 and the same hit rate, at one cost."""
    fast = result.trades
    assert list(result.sessions) == ref.sessions
    assert len(fast) == len(ref.trades)
    expected = pd.DataFrame([t.__dict__ for t in ref.trades], columns=_TRADE_FIELDS)
    for col in ("signal_ts", "entry_ts", "exit_ts"):
        assert (fast[col].array.asi8 == expected[col].to_numpy(dtype="int64")).all(), col
    for col in ("ticker", "side", "entry_price", "exit_price", "exit_reason", "gross_return"):
        assert fast[col].astype(object).tolist() == expected[col].tolist(), col
    daily = result.ticker_daily(cost_bps)
    for ticker, values in ref.daily.items():
        np.testing.assert_allclose(daily[ticker].to_numpy(), values, rtol=0, atol=1e-12)
    if ref.daily:
        np.testing.assert_allclose(
            result.portfolio_daily(cost_bps).to_numpy(), ref.portfolio(), rtol=0, atol=1e-12
        )
    net = expected["net_return"].to_numpy(dtype=float)
    hit = float(np.mean(net > 0)) if net.size else float("nan")
    np.testing.assert_equal(result.portfolio.at(cost_bps).hit_rate, hit)


_TRADE_FIELDS = [
    "ticker", "signal_ts", "entry_ts", "exit_ts", "side", "entry_price", "exit_price",
    "exit_reason", "gross_return", "net_return",
]  # fmt: skip
