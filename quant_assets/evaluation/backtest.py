"""Cost-aware backtest of a direction classifier's probabilities on 1-minute bars (pure core).

``run_backtest(bars, probs, sigma, spec, tickers=None, ic=True)`` -> ``BacktestResult``. The
policy, as implemented:

* **Inputs.** ``bars``: ticker, ts (UTC bar start), open, high, low, close of one or many
  tickers, rows in strictly increasing ts within each ticker (tickers may interleave); prices
  finite and > 0 (high/low are read in ``high_low`` mode only). ``probs``: ``[n, 3]`` class
  probabilities in ``labels.CLASS_ORDER``, or the score itself ``[n]``; the score is
  s = p_up − p_down. ``sigma``: ``[n]`` barrier volatility (``labels.barrier_volatility``). Both
  are taken by row position. A row whose s is NaN (no prediction; ±inf is refused), or whose σ
  is NaN, infinite or ≤ 0, never trades. A *session* is a ticker's bars with the same New York
  date (as in ``labels``).
* **Signal** at bar t, known at its close: long when s ≥ τ, short when s ≤ −τ, else none.
* **Entry** at the *open of the next bar* of the same ticker, in the same session; a signal on
  a ticker's last bar of a session never trades. One position per ticker: a signal at a bar
  whose close falls inside an open position is ignored. The exit bar's own signal may open the
  next trade (the position is flat by that bar's close).
* **Barriers** are set from the **entry price** E (not close[t]: P&L is measured from the
  fill, and a missing minute between t and the entry bar would shift the barriers away from
  it) and σ of the signal bar t. In the position's favour: take-profit at E·(1 + pt·σ) for a
  long, E·(1 − pt·σ) for a short; against it: stop at E·(1 − sl·σ) / E·(1 + sl·σ).
* **Path.** The bars from the entry bar itself through the vertical bar, in order.
  ``touch="close"``: the first bar whose close is at or beyond a barrier; exit at *that close*.
  ``touch="high_low"``: the bar's high and low are tested; exit at *the barrier price*, or at
  the bar's open when it opened beyond the barrier (a gap through a stop fills worse than the
  stop, through a take-profit better). A bar touching both exits at the stop, in either mode.
* **Vertical barrier** at V = entry time (the entry bar's start) + horizon minutes. The vertical
  bar is the last bar of the session whose close (its start + 1 minute) is at or before V; exit
  at its close. With every minute present a signal at t is held over bars t+1 … t+horizon, the
  path of the triple-barrier label at t.
* **Session close.** When the session's last bar of the ticker comes before V, exit at its
  close: never held overnight.
* **Returns.** A trade has a fixed notional: gross = side · (exit / E − 1), net = gross − 2c
  with c = cost_bps / 10 000 per side (entry and exit each pay it). A ticker's return on a
  session is the sum of its trades' returns (trades open and close in one session); 0 on a
  session without trades or without its bars. Sessions: every New York date with a bar of any
  ticker. **Portfolio**, equal weight (a sleeve of 1/N of the capital per ticker): the mean
  over the universe (``tickers``; default the tickers in ``bars``, sorted) of the tickers'
  daily returns; a flat ticker, or one with no bars, contributes 0. Returns are simple and
  additive: totals are sums, the equity curve is 1 + cumulative sum.
* **Costs** are linear in the number of trades, net_d = gross_d − 2c·n_d, so every cost of the
  grid comes from the one pass of the trade logic. Break-even cost (bps per side, total net
  P&L = 0): gross total / (2 · trades) · 10 000, with the portfolio's trades counted as
  Σ trades / N; negative when the gross total is; NaN without trades.

Metrics (``BookMetrics``, per ticker and for the portfolio; the ``CostMetrics`` at each cost):

* total gross and net return (sums of daily returns); annualized Sharpe of the daily P&L,
  mean / sd (ddof 1) · √252, **NaN when the sd is 0** or with fewer than 2 sessions; max
  drawdown of the net equity curve, max over sessions of (running peak − equity), in units of
  capital, with the start (0 P&L) counting as a peak;
* turnover: mean traded notional per session in units of capital (2 per trade: entry + exit;
  portfolio: Σ / N); trades; hit rate: share of trades with net return > 0 (NaN without
  trades); mean holding minutes, from the entry bar's start to the exit bar's end (NaN without
  trades) — the portfolio's over all its trades; exposure: share of the ticker's bars in a
  position, entry and exit bars included (portfolio: the mean over the universe; 0 for a
  ticker without bars);
* information coefficient: for each row with an s, the forward return
  close[j] / close[t] − 1 with j the last bar of t's session starting at or before ts[t] +
  horizon (rows with no later bar there have none); per (ticker, session), the Spearman
  correlation (average ranks for ties) of s with it, over at least 2 rows with neither side
  constant; a ticker's IC is the mean over its sessions, the portfolio's the mean over sessions
  of the mean over the tickers that have one that session; NaN when there is none (and when
  ``run_backtest(..., ic=False)`` skips it: it depends on the score and the horizon only, so a
  sweep over τ or the barriers can compute it once).

Outputs: ``BacktestResult.trades`` (one row per trade, ``TRADE_COLUMNS``; ticker and
exit_reason categorical), the daily P&L per ticker and of the portfolio (``ticker_daily`` /
``portfolio_daily``: gross at cost 0, net at any cost; for plots and a block bootstrap),
``cost_grid_table``, ``to_dict`` (JSON-ready) and ``write_equity_curve`` (PNG). Everything is
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from quant_assets.labels import CLASS_ORDER, DOWN, TOUCH_MODES, UP, LabelSpec, Touch
from quant_assets.market.calendar import MARKET_TZ, TRADING_DAYS_PER_YEAR

DEFAULT_COSTS_BPS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)
DEFAULT_COST_BPS = 1.0
BPS = 10_000.0  # cost_bps / BPS = cost as a fraction of notional
EXIT_REASONS: tuple[str, ...] = ("stop_loss", "take_profit", "vertical", "session_close")
TRADE_COLUMNS: tuple[str, ...] = (
    "ticker", "signal_ts", "entry_ts", "exit_ts", "session", "side", "entry_price",
    "exit_price", "exit_reason", "gross_return", "holding_minutes",
)  # fmt: skip
PORTFOLIO = "portfolio"
_STOP, _TAKE, _VERTICAL, _SESSION = 0, 1, 2, 3  # codes of EXIT_REASONS
_NS_PER_MINUTE = 60_000_000_000
_NS_PER_HOUR = 60 * _NS_PER_MINUTE
_NS_PER_DAY = 24 * _NS_PER_HOUR


@dataclass(frozen=True)
class BacktestSpec:
    """Policy parameters (see the module docstring). Invalid values raise ValueError."""

    threshold: float
    horizon_minutes: int = 30
    profit_take: float = 1.0
    stop_loss: float = 1.0
    touch: Touch = "close"
    costs_bps: tuple[float, ...] = DEFAULT_COSTS_BPS
    default_cost_bps: float = DEFAULT_COST_BPS

    def __post_init__(self) -> None:
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be finite and > 0, got {self.threshold!r}")
        horizon = self.horizon_minutes
        if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon_minutes must be an integer >= 1, got {horizon!r}")
        for name in ("profit_take", "stop_loss"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite multiplier >= 0, got {value!r}")
        if self.touch not in TOUCH_MODES:
            raise ValueError(f"touch must be one of {TOUCH_MODES}, got {self.touch!r}")
        costs = tuple(float(c) for c in self.costs_bps)
        if not costs or len(set(costs)) != len(costs):
            raise ValueError(f"costs_bps must be distinct and non-empty, got {self.costs_bps!r}")
        if not all(np.isfinite(c) and c >= 0 for c in costs):
            raise ValueError(f"costs_bps must be finite and >= 0, got {self.costs_bps!r}")
        if float(self.default_cost_bps) not in costs:
            raise ValueError(f"default_cost_bps {self.default_cost_bps!r} is not in costs_bps")
        object.__setattr__(self, "horizon_minutes", int(horizon))
        object.__setattr__(self, "costs_bps", costs)
        object.__setattr__(self, "default_cost_bps", float(self.default_cost_bps))

    @classmethod
    def from_label_spec(cls, spec: LabelSpec, threshold: float, **overrides: Any) -> BacktestSpec:
        """The labels' horizon (wall-clock minutes), barriers and touch mode."""
        base = {
            "horizon_minutes": int(spec.horizon),
            "profit_take": float(spec.profit_take),
            "stop_loss": float(spec.stop_loss),
            "touch": spec.touch,
        }
        return cls(threshold=threshold, **(base | overrides))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "threshold": float(self.threshold),
            "horizon_minutes": self.horizon_minutes,
            "profit_take": float(self.profit_take),
            "stop_loss": float(self.stop_loss),
            "touch": self.touch,
            "costs_bps": list(self.costs_bps),
            "default_cost_bps": self.default_cost_bps,
        }


@dataclass(frozen=True)
class CostMetrics:
    """The cost-dependent metrics of one book at one cost per side."""

    cost_bps: float
    net_return: float
    sharpe: float
    max_drawdown: float
    hit_rate: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None)."""
        return _json(dict(self.__dict__))


@dataclass(frozen=True)
class BookMetrics:
    """Metrics of one ticker or of the portfolio; ``costs`` follows ``spec.costs_bps``."""

    name: str
    n_sessions: int
    n_trades: int
    gross_return: float
    gross_sharpe: float
    turnover: float
    mean_holding_minutes: float
    exposure: float
    ic: float
    ic_sessions: int
    break_even_bps: float
    costs: tuple[CostMetrics, ...]

    def at(self, cost_bps: float) -> CostMetrics:
        """The metrics at one cost of the grid."""
        for metrics in self.costs:
            if metrics.cost_bps == float(cost_bps):
                return metrics
        raise KeyError(f"cost {cost_bps!r} bps is not in the grid")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None)."""
        out = {k: v for k, v in self.__dict__.items() if k != "costs"}
        return _json(out) | {"costs": [c.to_dict() for c in self.costs]}


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Trades, daily P&L and metrics of one backtest. Arrays are ``[ticker, session]``."""

    spec: BacktestSpec
    tickers: tuple[str, ...]
    sessions: pd.DatetimeIndex  # tz-naive New York dates
    trades: pd.DataFrame  # TRADE_COLUMNS, in (universe order, time) order
    daily_gross: np.ndarray = field(repr=False)  # gross return per [ticker, session]
    trade_counts: np.ndarray = field(repr=False)  # trades per [ticker, session]
    portfolio: BookMetrics
    by_ticker: tuple[BookMetrics, ...]

    def book(self, ticker: str | None = None) -> BookMetrics:
        """The portfolio's metrics (None) or one ticker's."""
        if ticker is None:
            return self.portfolio
        if ticker not in self.tickers:
            raise KeyError(f"ticker {ticker!r} is not in the backtest")
        return self.by_ticker[self.tickers.index(ticker)]

    def ticker_daily(self, cost_bps: float | None = None) -> pd.DataFrame:
        """Daily net return per ticker (sessions × tickers); cost 0 gives gross, None the
        spec's default cost."""
        net = _net(self.daily_gross, self.trade_counts, self._cost(cost_bps))
        return pd.DataFrame(net.T, index=self.sessions, columns=list(self.tickers))

    def portfolio_daily(self, cost_bps: float | None = None) -> pd.Series:
        """Daily net return of the equal-weight portfolio; cost 0 gives gross."""
        gross, weight = _portfolio(self.daily_gross, self.trade_counts)
        net = _net(gross, weight, self._cost(cost_bps))
        return pd.Series(net, index=self.sessions, name=PORTFOLIO)

    def cost_grid_table(self, ticker: str | None = None) -> pd.DataFrame:
        """Rows = the cost grid, columns = the headline metrics of the portfolio (or a ticker)."""
        book = self.book(ticker)
        rows = [
            {
                "gross_return": book.gross_return,
                "net_return": c.net_return,
                "sharpe": c.sharpe,
                "max_drawdown": c.max_drawdown,
                "hit_rate": c.hit_rate,
                "n_trades": book.n_trades,
                "turnover": book.turnover,
                "break_even_bps": book.break_even_bps,
            }
            for c in book.costs
        ]
        index = pd.Index([c.cost_bps for c in book.costs], name="cost_bps")
        return pd.DataFrame(rows, index=index)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no trades, no daily series); NaN -> None."""
        return {
            "spec": self.spec.to_dict(),
            "tickers": list(self.tickers),
            "first_session": None if self.sessions.empty else str(self.sessions[0].date()),
            "last_session": None if self.sessions.empty else str(self.sessions[-1].date()),
            "portfolio": self.portfolio.to_dict(),
            "by_ticker": [b.to_dict() for b in self.by_ticker],
        }

    def _cost(self, cost_bps: float | None) -> float:
        cost = self.spec.default_cost_bps if cost_bps is None else float(cost_bps)
        if not np.isfinite(cost):
            raise ValueError(f"cost_bps must be finite, got {cost_bps!r}")
        return cost / BPS


def signal_score(probs: np.ndarray) -> np.ndarray:
    """s = p_up − p_down of ``[n, 3]`` probabilities in CLASS_ORDER; a ``[n]`` score as is."""
    arr = np.asarray(probs, dtype="float64")
    if arr.ndim == 1:
        return arr
    if arr.ndim != 2 or arr.shape[1] != len(CLASS_ORDER):
        raise ValueError(f"probs must be [n, {len(CLASS_ORDER)}] or a [n] score, got {arr.shape}")
    return arr[:, CLASS_ORDER.index(UP)] - arr[:, CLASS_ORDER.index(DOWN)]


def run_backtest(
    bars: pd.DataFrame,
    probs: np.ndarray,
    sigma: np.ndarray | pd.Series,
    spec: BacktestSpec,
    *,
    tickers: Sequence[str] | None = None,
    ic: bool = True,
) -> BacktestResult:
    """Backtest the policy of the module docstring over ``bars``; ``tickers`` is the universe.

    ``ic=False`` leaves the information coefficient out (NaN).
    """
    rows = _Rows.of(bars, spec.touch == "high_low", tickers)
    score = rows.take(signal_score(probs), "probs")
    if np.isinf(score).any():
        raise ValueError("the score has infinite values (NaN marks a row without prediction)")
    if isinstance(sigma, pd.Series) and not sigma.index.equals(bars.index):
        raise ValueError("sigma Series must have the same index as bars")
    vol = rows.take(np.asarray(sigma, dtype="float64"), "sigma")
    trades = _simulate_trades(rows, score, vol, spec)
    gross, count = _daily_sums(rows, trades)
    ic_values = np.full(gross.shape, np.nan)
    if ic:
        forward = _forward_return(rows, spec.horizon_minutes * _NS_PER_MINUTE)
        ic_values = _session_ic(rows, score, forward)
    portfolio, by_ticker = _books(rows, trades, gross, count, ic_values, spec)
    return BacktestResult(
        spec=spec,
        tickers=rows.universe,
        sessions=rows.sessions,
        trades=trades.frame(rows),
        daily_gross=gross,
        trade_counts=count,
        portfolio=portfolio,
        by_ticker=by_ticker,
    )


def write_equity_curve(result: BacktestResult, path: str | Path, ticker: str | None = None) -> Path:
    """PNG of the gross and net (default cost) equity curves of the portfolio (or a ticker)."""
    plt = _pyplot()
    path = Path(path)
    cost = result.spec.default_cost_bps
    if ticker is None:
        gross, net = result.portfolio_daily(0.0), result.portfolio_daily(cost)
    else:
        gross, net = result.ticker_daily(0.0)[ticker], result.ticker_daily(cost)[ticker]
    book = result.book(ticker)
    at = book.at(cost)
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    ax.plot(gross.index, 1.0 + gross.cumsum().to_numpy(), label="gross", color="tab:gray")
    ax.plot(net.index, 1.0 + net.cumsum().to_numpy(), label=f"net at {cost:g} bps/side")
    ax.axhline(1.0, color="k", linewidth=0.6)
    ax.set_ylabel("equity (1 + cumulative return)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(
        f"{book.name}: τ {result.spec.threshold:g}, {book.n_trades} trades, net "
        f"{at.net_return:+.4f}, Sharpe {at.sharpe:.2f}, break-even {book.break_even_bps:.2f} bps",
        fontsize=9,
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# --- inputs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rows:
    """Bars with each ticker's rows contiguous and in time order, and their session segments."""

    order: np.ndarray | slice  # position in bars of each row (a slice when already grouped)
    universe: tuple[str, ...]
    code: np.ndarray  # universe position of each row
    ts_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    day: np.ndarray  # index into sessions
    sessions: pd.DatetimeIndex
    bars_per_ticker: np.ndarray
    segment_end: np.ndarray  # row index of the last row of the row's (ticker, session)

    @classmethod
    def of(cls, bars: pd.DataFrame, high_low: bool, tickers: Sequence[str] | None) -> _Rows:
        required = ["ticker", "ts", "open", "close", *(["high", "low"] if high_low else [])]
        missing = [c for c in required if c not in bars.columns]
        if missing:
            raise ValueError(f"bars lack columns {missing}")
        order, universe, code, count = _group_tickers(bars["ticker"], tickers)
        ts = pd.to_datetime(bars["ts"], utc=True).astype("datetime64[ns, UTC]")
        if ts.isna().any():
            raise ValueError("bars have a missing ts")
        ts_ns = ts.array.asi8[order]
        date = _new_york_dates(ts_ns)
        segment_end, in_order = _segments(code, date, ts_ns)
        if not in_order:
            raise ValueError("bars are not in strictly increasing ts order within each ticker")
        days, day = _dense_days(date)
        prices = {c: _prices(bars, c, order) for c in ("open", "close")}
        for c in ("high", "low"):
            prices[c] = _prices(bars, c, order) if high_low else prices["close"]
        return cls(
            order=order,
            universe=universe,
            code=code,
            ts_ns=ts_ns,
            day=day,
            sessions=pd.DatetimeIndex((days * _NS_PER_DAY).view("datetime64[ns]"), name="session"),
            segment_end=segment_end,
            bars_per_ticker=count,
            **prices,
        )

    @property
    def n(self) -> int:
        return self.code.size

    def take(self, values: np.ndarray, name: str) -> np.ndarray:
        """Per-bar values (by position in bars) in this row order."""
        if values.shape != (self.n,):
            raise ValueError(f"{name} must have one value per bar ({self.n}), got {values.shape}")
        return values[self.order]


def _group_tickers(
    names: pd.Series, tickers: Sequence[str] | None
) -> tuple[np.ndarray | slice, tuple[str, ...], np.ndarray, np.ndarray]:
    """(row order that makes each ticker's rows contiguous, the universe, code per row, bars
    per ticker)."""
    names = names.astype("string")
    if names.isna().any():
        raise ValueError("bars have a missing ticker")
    # Factorize runs of equal names, not rows: bars usually come ticker after ticker.
    values = names.array
    change = np.ones(len(values), dtype=bool)
    change[1:] = (values[1:] != values[:-1]).to_numpy(dtype=bool)
    head = np.flatnonzero(change)
    run_code, uniques = pd.factorize(names.iloc[head])
    universe = tuple(sorted(uniques)) if tickers is None else tuple(tickers)
    if len(set(universe)) != len(universe):
        raise ValueError(f"tickers must be distinct, got {universe!r}")
    where = {name: k for k, name in enumerate(universe)}
    unknown = sorted(set(uniques) - set(where))
    if unknown:
        raise ValueError(f"bars have tickers outside the universe: {unknown}")
    run_code = np.array([where[u] for u in uniques], dtype=np.int64)[run_code]
    run_length = np.diff(head, append=len(names))
    code = np.repeat(run_code, run_length)
    count = np.bincount(run_code, weights=run_length, minlength=len(universe)).astype(np.int64)
    if len(head) == len(uniques):  # one run per ticker: no reordering needed
        return slice(None), universe, code, count
    order = np.argsort(code, kind="stable")  # keeps each ticker's own row order
    return order, universe, code[order], count


def _new_york_dates(ts_ns: np.ndarray) -> np.ndarray:
    """New York date (days since 1970-01-01) of UTC nanoseconds: the session of a bar."""
    date, odd = _dates_at_utc_minus_5(ts_ns)
    if odd.size:  # the time zone database decides (a whole-array tz_convert costs 7x more)
        utc = pd.DatetimeIndex(ts_ns[odd].view("datetime64[ns]"), tz="UTC")
        date[odd] = utc.tz_convert(MARKET_TZ).tz_localize(None).asi8 // _NS_PER_DAY
    return date


@njit(cache=True)
def _dates_at_utc_minus_5(ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dates at UTC−5, and the rows where UTC−4 gives another: 04:00–05:00 UTC, around midnight
    in New York (no trading); everywhere else both offsets, hence New York, agree."""
    date = np.empty(ts_ns.size, dtype=np.int64)
    odd = np.empty(ts_ns.size, dtype=np.int64)
    k = 0
    for i in range(ts_ns.size):
        shifted = ts_ns[i] - 5 * _NS_PER_HOUR
        date[i] = shifted // _NS_PER_DAY
        if shifted - date[i] * _NS_PER_DAY >= 23 * _NS_PER_HOUR:
            odd[k] = i
            k += 1
    return date, odd[:k]


@njit(cache=True)
def _segments(code: np.ndarray, date: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, bool]:
    """(last row of each row's (ticker, session) segment, whether ts increases strictly within
    each ticker)."""
    n = code.size
    end = np.empty(n, dtype=np.int64)
    in_order = True
    last = n - 1
    for i in range(n - 1, -1, -1):
        if i < n - 1 and code[i + 1] == code[i]:
            in_order &= ts_ns[i + 1] > ts_ns[i]
            if date[i + 1] != date[i]:
                last = i
        else:
            last = i
        end[i] = last
    return end, in_order


@njit(cache=True)
def _dense_days(date: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct dates, index of each row's date among them); a few dates, many rows."""
    if date.size == 0:
        return date.copy(), date.copy()
    low = date.min()
    rank = np.zeros(date.max() - low + 1, dtype=np.int64)  # 1 where a date occurs
    for d in date:
        rank[d - low] = 1
    days = np.flatnonzero(rank) + low
    rank = np.cumsum(rank) - 1
    index = np.empty(date.size, dtype=np.int64)
    for i in range(date.size):
        index[i] = rank[date[i] - low]
    return days, index


def _prices(bars: pd.DataFrame, column: str, order: np.ndarray | slice) -> np.ndarray:
    values = bars[column].to_numpy(dtype="float64")[order]
    if values.size and not (values.min() > 0 and values.max() < np.inf):  # NaN fails both
        raise ValueError(f"bars have {column} prices that are not finite and > 0")
    return values


# --- the trade logic ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Trades:
    """Trades as row indices (signal, entry, exit bars), in (universe order, time) order."""

    signal: np.ndarray
    entry: np.ndarray
    exit: np.ndarray
    side: np.ndarray
    exit_price: np.ndarray
    reason: np.ndarray
    gross: np.ndarray
    holding: np.ndarray  # minutes from the entry bar's start to the exit bar's end

    def frame(self, rows: _Rows) -> pd.DataFrame:
        """TRADE_COLUMNS, one row per trade."""

        def ts(index: np.ndarray) -> pd.DatetimeIndex:
            return pd.DatetimeIndex(rows.ts_ns[index].view("datetime64[ns]"), tz="UTC")

        return pd.DataFrame(
            {
                "ticker": pd.Categorical.from_codes(
                    rows.code[self.signal], categories=list(rows.universe)
                ),
                "signal_ts": ts(self.signal),
                "entry_ts": ts(self.entry),
                "exit_ts": ts(self.exit),
                "session": rows.sessions[rows.day[self.signal]],
                "side": self.side,
                "entry_price": rows.open[self.entry],
                "exit_price": self.exit_price,
                "exit_reason": pd.Categorical.from_codes(self.reason, categories=EXIT_REASONS),
                "gross_return": self.gross,
                "holding_minutes": self.holding,
            },
            columns=list(TRADE_COLUMNS),
        )


def _simulate_trades(
    rows: _Rows, score: np.ndarray, sigma: np.ndarray, spec: BacktestSpec
) -> _Trades:
    trades = _Trades(
        *_simulate(
            rows.open,
            rows.high,
            rows.low,
            rows.close,
            rows.ts_ns,
            score,
            sigma,
            rows.segment_end,
            spec.horizon_minutes * _NS_PER_MINUTE,
            float(spec.threshold),
            float(spec.profit_take),
            float(spec.stop_loss),
            spec.touch == "high_low",
        )
    )
    code = rows.code[trades.signal]
    if (np.diff(code) >= 0).all():
        return trades
    # Rows are grouped by ticker in the order of the input, not of the universe.
    by_ticker = np.argsort(code, kind="stable")
    return _Trades(*(getattr(trades, f)[by_ticker] for f in _Trades.__dataclass_fields__))


@njit(cache=True)
def _simulate(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    ts_ns: np.ndarray,
    score: np.ndarray,
    sigma: np.ndarray,
    segment_end: np.ndarray,
    horizon_ns: int,
    threshold: float,
    profit_take: float,
    stop_loss: float,
    high_low: bool,
) -> tuple[np.ndarray, ...]:
    """One sequential pass over the rows: (signal, entry, exit rows, side, exit price, exit
    reason, gross return, holding minutes) of every trade."""
    n = close.size
    cap = max(n - 1, 0)  # each trade moves on by a row at least (exit on the entry bar)
    signal = np.empty(cap, dtype=np.int64)
    entry = np.empty(cap, dtype=np.int64)
    exit_ = np.empty(cap, dtype=np.int64)
    side = np.empty(cap, dtype=np.int8)
    price = np.empty(cap)
    reason = np.empty(cap, dtype=np.int8)
    gross = np.empty(cap)
    holding = np.empty(cap)
    k = 0
    i = 0
    while i < n:
        s, vol = score[i], sigma[i]
        d = 1 if s >= threshold else (-1 if s <= -threshold else 0)
        if d == 0 or not (vol > 0.0 and vol < np.inf) or i == segment_end[i]:
            i += 1
            continue
        e = i + 1
        fill = open_[e]
        take = fill * (1.0 + d * profit_take * vol)
        stop = fill * (1.0 - d * stop_loss * vol)
        x, px, why = _exit(
            open_, high, low, close, ts_ns, segment_end[e], e, d, take, stop, horizon_ns, high_low
        )
        signal[k], entry[k], exit_[k], side[k], price[k], reason[k] = i, e, x, d, px, why
        gross[k] = d * (px / fill - 1.0)
        holding[k] = (ts_ns[x] + _NS_PER_MINUTE - ts_ns[e]) / _NS_PER_MINUTE
        k += 1
        i = x  # signals inside the position are ignored; the exit bar's own may trade
    return signal[:k], entry[:k], exit_[:k], side[:k], price[:k], reason[:k], gross[:k], holding[:k]


@njit(cache=True)
def _exit(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    ts_ns: np.ndarray,
    last: int,
    e: int,
    d: int,
    take: float,
    stop: float,
    horizon_ns: int,
    high_low: bool,
) -> tuple[int, float, int]:
    """(exit row, exit price, reason) of a position entered at the open of row e (side d);
    ``last`` is the last row of its session."""
    closes_by = ts_ns[e] + horizon_ns  # V: the vertical barrier
    j = e
    while True:
        hi, lo = (high[j], low[j]) if high_low else (close[j], close[j])
        hit_stop = lo <= stop if d > 0 else hi >= stop
        hit_take = hi >= take if d > 0 else lo <= take
        if hit_stop or hit_take:  # the stop first when a bar touches both
            why = _STOP if hit_stop else _TAKE
            if not high_low:
                return j, close[j], why
            level = stop if hit_stop else take
            below = (d > 0) == hit_stop  # the barrier is below the entry price
            gapped = open_[j] < level if below else open_[j] > level
            return j, (open_[j] if gapped else level), why
        if j == last:
            early = ts_ns[j] + _NS_PER_MINUTE < closes_by
            return j, close[j], (_SESSION if early else _VERTICAL)
        if ts_ns[j + 1] + _NS_PER_MINUTE > closes_by:  # the next bar would close after V
            return j, close[j], _VERTICAL
        j += 1


def _daily_sums(rows: _Rows, trades: _Trades) -> tuple[np.ndarray, np.ndarray]:
    """Gross return and number of trades per [ticker, session] (trades in time order, so each
    sum adds them up in that order)."""
    n_tickers, n_days = len(rows.universe), rows.sessions.size
    key = rows.code[trades.signal] * n_days + rows.day[trades.signal]
    size = n_tickers * n_days
    gross = np.bincount(key, weights=trades.gross, minlength=size).reshape(n_tickers, n_days)
    count = np.bincount(key, minlength=size).reshape(n_tickers, n_days).astype("float64")
    return gross, count


# --- information coefficient --------------------------------------------------------------------
@njit(cache=True)
def _last_within(ts_ns: np.ndarray, segment_end: np.ndarray, offset_ns: int) -> np.ndarray:
    """Per row i: the last row j of i's segment with ts[j] <= ts[i] + offset (so j >= i)."""
    n = ts_ns.size
    out = np.empty(n, dtype=np.int64)
    j = 0
    for i in range(n):
        j = max(j, i)  # a new segment starts after the previous answer
        while j < segment_end[i] and ts_ns[j + 1] <= ts_ns[i] + offset_ns:
            j += 1
        out[i] = j
    return out


def _forward_return(rows: _Rows, horizon_ns: int) -> np.ndarray:
    """close[j] / close[t] − 1, j the last bar of t's session starting at or before ts[t] +
    horizon; NaN when that is t itself."""
    j = _last_within(rows.ts_ns, rows.segment_end, horizon_ns)
    out = rows.close[j] / rows.close - 1.0
    out[j == np.arange(rows.n)] = np.nan
    return out


def _session_ic(rows: _Rows, score: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Spearman correlation of score and forward return per [ticker, session] (NaN: none)."""
    out = np.full((len(rows.universe), rows.sessions.size), np.nan)
    starts = np.flatnonzero(np.diff(rows.segment_end, prepend=-1) != 0)
    if starts.size == 0:
        return out
    valid = ~np.isnan(score) & ~np.isnan(forward)
    x, y, count = _pack_segments(score, forward, valid, starts, rows.segment_end[starts] + 1)
    # numpy's vectorized sort on the padded [segment, row] blocks: far faster than numba's
    order_x, order_y = np.argsort(x, axis=1), np.argsort(y, axis=1)
    out[rows.code[starts], rows.day[starts]] = _rank_correlation(x, y, order_x, order_y, count)
    return out


@njit(cache=True)
def _pack_segments(
    x: np.ndarray, y: np.ndarray, valid: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The valid rows of each segment, left-aligned in [segment, width] blocks (+inf padding
    sorts last), and their count per segment."""
    count = np.zeros(starts.size, dtype=np.int64)
    for k in range(starts.size):
        count[k] = np.sum(valid[starts[k] : ends[k]])
    width = max(1, count.max())
    px = np.full((starts.size, width), np.inf)
    py = np.full((starts.size, width), np.inf)
    for k in range(starts.size):
        m = 0
        for i in range(starts[k], ends[k]):
            if valid[i]:
                px[k, m], py[k, m] = x[i], y[i]
                m += 1
    return px, py, count


@njit(cache=True)
def _rank_correlation(
    x: np.ndarray, y: np.ndarray, order_x: np.ndarray, order_y: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Spearman (Pearson of average ranks) of each block's first ``count`` values; NaN below 2
    values or when either side is constant."""
    out = np.full(count.size, np.nan)
    rx, ry = np.empty(x.shape[1]), np.empty(x.shape[1])
    for k in range(count.size):
        m = count[k]
        if m < 2:
            continue
        _average_ranks(x[k], order_x[k], m, rx)
        _average_ranks(y[k], order_y[k], m, ry)
        mid = 0.5 * (m + 1)  # the mean of average ranks, ties or not
        sxy = sxx = syy = 0.0
        for i in range(m):
            dx, dy = rx[i] - mid, ry[i] - mid
            sxy += dx * dy
            sxx += dx * dx
            syy += dy * dy
        if sxx > 0.0 and syy > 0.0:
            out[k] = sxy / np.sqrt(sxx * syy)
    return out


@njit(cache=True)
def _average_ranks(values: np.ndarray, order: np.ndarray, m: int, ranks: np.ndarray) -> None:
    """Ranks 1..m of values[:m] (``order`` sorts them) into ranks[:m]; ties share their
    average rank."""
    a = 0
    while a < m:
        b = a
        while b + 1 < m and values[order[b + 1]] == values[order[a]]:
            b += 1
        for k in range(a, b + 1):
            ranks[order[k]] = 0.5 * (a + b) + 1.0
        a = b + 1


# --- metrics ------------------------------------------------------------------------------------
def _net(gross: np.ndarray, weight: np.ndarray, cost: float) -> np.ndarray:
    """Net daily returns: each trade pays the cost at entry and at exit."""
    return gross - 2.0 * cost * weight


def _portfolio(gross: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal weight: the mean over the universe of daily gross returns and trade counts."""
    n_tickers = max(gross.shape[0], 1)  # no ticker: the sums are empty anyway
    return gross.sum(axis=0) / n_tickers, count.sum(axis=0) / n_tickers


def _sharpe(daily: np.ndarray) -> np.ndarray:
    """Annualized Sharpe along the last axis; NaN with fewer than 2 sessions or a zero sd."""
    out = np.full(daily.shape[:-1], np.nan)
    if daily.shape[-1] < 2:
        return out
    annual_mean = daily.mean(axis=-1) * np.sqrt(TRADING_DAYS_PER_YEAR)
    sd = daily.std(axis=-1, ddof=1)
    np.divide(annual_mean, sd, out=out, where=sd > 0)
    return out


def _max_drawdown(daily: np.ndarray) -> np.ndarray:
    """Largest fall of the additive equity curve from its running peak (the start is a peak),
    along the last axis."""
    equity = np.cumsum(daily, axis=-1)
    peak = np.maximum.accumulate(np.maximum(equity, 0.0), axis=-1)
    return np.max(peak - equity, axis=-1, initial=0.0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _books(
    rows: _Rows,
    trades: _Trades,
    gross: np.ndarray,
    count: np.ndarray,
    ic_values: np.ndarray,
    spec: BacktestSpec,
) -> tuple[BookMetrics, tuple[BookMetrics, ...]]:
    """(the portfolio's metrics, each ticker's), all costs at once: books are the tickers and
    then the portfolio."""
    p_gross, p_weight = _portfolio(gross, count)
    daily = np.vstack([gross, p_gross])  # [book, session]
    weight = np.vstack([count, p_weight])  # trades per session (portfolio: mean over tickers)
    costs = np.asarray(spec.costs_bps) / BPS
    net = daily[None] - 2.0 * costs[:, None, None] * weight[None]  # [cost, book, session]
    n_trades, hits, holding = _trade_sums(rows, trades, costs)
    total_weight = weight.sum(axis=-1)
    ic, ic_sessions = _ic_per_book(ic_values)
    metrics = {
        "n_sessions": np.full(daily.shape[0], rows.sessions.size),
        "n_trades": n_trades,
        "gross_return": daily.sum(axis=-1),
        "gross_sharpe": _sharpe(daily),
        "turnover": 2.0 * total_weight / max(rows.sessions.size, 1),
        "mean_holding_minutes": _ratio(holding, n_trades),
        "exposure": _exposure(rows, trades),
        "ic": ic,
        "ic_sessions": ic_sessions,
        "break_even_bps": _ratio(daily.sum(axis=-1), 2.0 * total_weight) * BPS,
    }
    per_cost = {
        "net_return": net.sum(axis=-1),
        "sharpe": _sharpe(net),
        "max_drawdown": _max_drawdown(net),
        "hit_rate": _ratio(hits, n_trades),
    }
    books = tuple(
        _book_metrics(name, b, metrics, per_cost, spec.costs_bps)
        for b, name in enumerate((*rows.universe, PORTFOLIO))
    )
    return books[-1], books[:-1]


def _trade_sums(
    rows: _Rows, trades: _Trades, costs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per book (the tickers, then all trades): trades, hits at each cost [cost, book] (net
    return > 0) and total holding minutes."""
    book = rows.code[trades.signal]

    def per_book(values: np.ndarray) -> np.ndarray:
        return np.r_[np.bincount(book, weights=values, minlength=len(rows.universe)), values.sum()]

    hits = [per_book((trades.gross - 2.0 * c > 0.0).astype("float64")) for c in costs]
    return per_book(np.ones(book.size)), np.array(hits), per_book(trades.holding)


def _exposure(rows: _Rows, trades: _Trades) -> np.ndarray:
    """Share of each ticker's bars in a position (0 without bars), then their mean."""
    held = trades.exit - trades.entry + 1
    in_position = np.bincount(rows.code[trades.entry], weights=held, minlength=len(rows.universe))
    share = np.nan_to_num(_ratio(in_position, rows.bars_per_ticker))  # no bars: never held
    return np.r_[share, share.mean() if share.size else 0.0]


def _ic_per_book(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IC, sessions counted) per book: a ticker's mean over its sessions; the portfolio's,
    the mean over sessions of the mean over the tickers that have one."""
    defined = ~np.isnan(values)
    zeroed = np.where(defined, values, 0.0)
    per_ticker = _ratio(zeroed.sum(axis=1), defined.sum(axis=1))
    per_session = _ratio(zeroed.sum(axis=0), defined.sum(axis=0))
    sessions = per_session[~np.isnan(per_session)]
    portfolio = sessions.mean() if sessions.size else np.nan
    return np.r_[per_ticker, portfolio], np.r_[defined.sum(axis=1), sessions.size]


def _book_metrics(
    name: str,
    b: int,
    metrics: dict[str, np.ndarray],
    per_cost: dict[str, np.ndarray],
    costs_bps: tuple[float, ...],
) -> BookMetrics:
    costs = tuple(
        CostMetrics(cost_bps=c, **{k: float(v[i, b]) for k, v in per_cost.items()})
        for i, c in enumerate(costs_bps)
    )
    counts = {"n_sessions", "n_trades", "ic_sessions"}
    values = {k: (int(v[b]) if k in counts else float(v[b])) for k, v in metrics.items()}
    return BookMetrics(name=name, costs=costs, **values)


# --- output helpers -----------------------------------------------------------------------------
def _json(obj: Any) -> Any:
    """Plain Python values; NaN and infinities -> None."""
    if isinstance(obj, dict):
        return {k: _json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
