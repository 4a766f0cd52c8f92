"""A deterministic simulated NYSE exchange: the embedded data source and the ground truth for tests.

``SyntheticMarket`` serves the same interface as the yfinance source (``get_bars``,
``get_splits``, ``get_dividends``) and, in addition, the *true* answers other components are
tested against (``true_adjusted_bars``, ``missing_minutes``, ``halts``, ``latent_signal``).

Time grid
    Every regular-session minute of the NYSE calendar (exchange-calendars, holidays and early
    closes included) between ``config.start`` and ``config.end``. Minute ``t`` is the UTC start of
    its bar; ``i`` is its position in the session (0 = the open) and ``n`` the session's length
    (390, or 210 on an early close). Each ticker's whole path is simulated once from the first
    session, cached per instance, and sliced, so any query is a cut of the same path.

Randomness
    Each ticker has its own streams: ``SeedSequence(seed, spawn_key=ticker bytes)`` spawns one
    child per quantity (parameters, returns, highs, lows, gaps, volume, missing minutes, halts,
    trades). Adding a ticker does not change the others; the same config gives identical frames;
    changing ``signal``, the regime, ``missing_rate`` or ``liquidity`` does not change the noise
    draws (common random numbers).

Per-ticker parameters (drawn from the ticker's parameter stream)
    start price p0 ~ log-uniform[20, 500]; annual volatility a ~ U[0.18, 0.45];
    dollar volume per midday minute ~ log-uniform[2e6, 3e7] (shares = dollars / p0);
    dividend yield per quarterly payment q ~ U[0.002, 0.008] (payers only).

Economic (total-return) log price x = log X, with no corporate actions in it
    daily sd     d = a / sqrt(252); 80 % of the daily variance is intraday, 20 % overnight.
    vol shape    u(i, n) = 1 + 1.5 exp(-i / 15) + 0.5 exp(-(n - 1 - i) / 20)      (U-shaped)
    sigma_t      = sigma_0 u(i, n) R_t, with sigma_0 chosen so that sum_{i<390} sigma^2 = 0.8 d^2,
                   R_t = regime_vol_multiplier from ``regime_shift_at`` on, else 1.
    open         O_t = C_{t-1} inside a session; at a session's open O_t = C_prev + s_gap g,
                   g ~ N(0, 1), s_gap = sqrt(0.2) d R_t (the overnight gap; none on the first day).
    close        C_t = O_t + mu_t + sigma_t e_t, e_t ~ N(0, 1),
                   mu_t = signal sigma_t m_{t-1} + regime_drift sigma_t [t >= regime_shift_at]
                   (m_{t-1} taken as 0 at a session's open).
    high / low   the exact maximum / minimum of a Brownian bridge from O_t to C_t with variance
                   sigma_t^2 over the minute: H_t = O_t + (r + sqrt(r^2 - 2 sigma^2 log U)) / 2,
                   L_t = O_t + (r - sqrt(r^2 - 2 sigma^2 log V)) / 2, r = C_t - O_t, U, V ~ U(0, 1].
                   So low <= min(open, close) <= max(open, close) <= high always.
    With signal = 0 and no regime drift the log price is a martingale: every log return has mean
    zero given the whole past (only the U-shaped sigma varies, deterministically).

Planted signal (the latent predictable value m_t in [-1, 1])
    From the *observed* bars of the same session only: let P_j be the log close of the last bar at
    or before minute j in the session (NaN before the session's first bar). For i >= 45,
        S = P_{t-15} - P_{t-45},    Q = sum_{j=t-44}^{t-15} (P_j - P_{j-1})^2,
        m_t = -tanh(KAPPA * S / sqrt(Q))   (KAPPA = 1.5),
    the saturated reversal of the self-normalized (t-statistic-like) move of the 30 minutes that
    ended 15 minutes ago. It is scale-free (ticker, time of day and regime do not matter), a
    function of bars t-45..t-15 (inside a 60-minute window), and not one of the usual linear
    return features. m_t = 0 for the first 45 minutes of a session, when P_{t-45} is undefined,
    or when Q = 0. The next minute's expected log return is signal * sigma_{t+1} * m_t. Because
    prices differ by a constant factor inside a session, m_t is the same from raw or adjusted
    bars. Reversal (not momentum) keeps the feedback negative: with momentum the drift feeds the
    next window and signal = 0.2 doubled the daily volatility; with reversal the daily sd shrinks
    ~20 % (seed 7: 1.75 % -> 1.35 % at signal 0.2). Measured on 10 tickers x 124 sessions: with
    |m_t| > 0.5 the 15-minute forward return has the sign of m_t 50 % of the time at signal 0,
    66 % at 0.2, 72 % at 0.3; E|m_t| ~ 0.7 (after minute 45).

Volume (integer shares of the time, > 0)
    v(i, n) = 0.6 + 3 exp(-i / 15) + 2 exp(-(n - 1 - i) / 10)  (U-shaped)
    volume_t = max(1, round(B v(i, n) exp(0.5 w - 0.125) (1 + 0.5 |e_t|) sqrt(R_t) M_t)),
    w ~ N(0, 1), B = base shares per minute, M_t = product of the ratios of splits with
    ex-date <= the session of t (so raw volume jumps x r at a split).

Missing minutes and halts
    Each minute independently has no trade with probability ``missing_rate``; in addition
    Poisson(halts_per_year * sessions / 252) halts per ticker, each a run of 5..20 consecutive
    minutes inside one session. The source has no bar there; the economic path continues
    underneath. ``halts`` returns (first missing minute, end exclusive) pairs.

Liquidity (``liquidity``: one ``Liquidity`` for every ticker, or a mapping ticker -> ``Liquidity``;
tickers not named trade like the default ``Liquidity()``, which is the liquid market above, bit
for bit: no trade draw, no rounding)
    traded share s (``Liquidity.traded``): trades arrive as a Poisson process whose intensity
                   follows the volume shape, lambda v(i, n) per minute, so minute i trades with
                   probability P_i = 1 - exp(-lambda v(i, n)) (more often at the open and the
                   close, as real thin tickers do); lambda is solved (bisection) so that P_i
                   averages s over a full 390-minute session. A minute without a trade has no
                   bar, exactly like a missing minute (``missing_minutes`` lists it); the path
                   continues underneath, so the close of a traded minute is the price at that
                   time and the next traded bar's return spans the gap. A traded minute's volume
                   is the model's volume of that minute (a thin ticker's daily volume is about s
                   times the liquid one's). The draws come from their own stream.
    tick (``Liquidity.tick_bps``): raw prices are quotes on a grid of tick = tick_bps 1e-4 p0
                   (a fixed amount of money for the ticker's whole history, like a real $0.01
                   tick; expressed relative to the start price p0 so that its size against the
                   volatility does not depend on the drawn price): raw open, high, low and close
                   are rounded to the nearest tick (at least one tick). Rounding is monotone, so
                   low <= min(open, close) <= max(open, close) <= high still holds, and a minute
                   whose close rounds to the previous bar's close has a log return of exactly
                   zero (traded 0.25, tick_bps 20: 30-70 % of 1-minute returns, by volatility). The
                   economic X behind the bars becomes raw / k, so every ground-truth relation
                   below holds for the rounded bars; dividends use the rounded last close. The
                   planted signal m is computed from the unrounded path.

Corporate actions (``corporate_actions=True``; ``N`` = number of sessions, index 0 = first)
    - tickers[0]: 2:1 split on session index max(5, int(0.40 N));
    - tickers[1]: 3:1 split on session index max(5, int(0.65 N));
    - tickers at even positions (0, 2, 4, ...): quarterly cash dividends, first on session index
      10 + (7 * position // 2) % 40, then every 63 sessions (moved one session later if it lands
      on a split of the same ticker). Only sessions with index >= 5 and < N are used.
    Raw prices are raw(t) = X(t) k(t), k piecewise constant, k = 1 on the first session, and at
    the ex-date's open: split r -> k /= r; dividend -> k *= (1 - D / C), where C is the raw close
    of the last bar (observed) before the ex-date and D = q C is the cash amount in the ledger
    (a float, not rounded; D / C equals q up to rounding). Dividends are reinvested in X.

Regime shift (``regime_shift_at``, a tz-aware minute; None = no shift)
    From that minute on sigma (and the overnight gap sd) is multiplied by
    ``regime_vol_multiplier`` (3), volume by its square root, and a drift of ``regime_drift``
    (0.01) x sigma_t per minute is added (about +0.8 % a day at x3 for the default tickers). The
    path before the shift is identical to the unshifted market's.

Queries
    Bar-like queries take tz-aware [start, end) (naive -> ValueError) inside
    [config.start 00:00 New York, config.end + 1 day 00:00 New York); a non-session day gives an
    empty frame; outside it -> ``SourceRangeError`` (a ValueError, from market/sources.py).
    Ledger queries take date-likes, any range, inclusive on both ends.

Ground truth (independent of any adjustment code)
    total_return adjusted(t) = X(t) k(max(session(t), as_of)): for the actions with
    session(t) < ex-date <= as_of, prices before a split are divided by r and prices before a
    dividend multiplied by (1 - D / C) (CRSP / Yahoo; factors multiply). Equivalently
    adjusted(t) = raw(t) * prod of those factors, which is the contract the adjustment code is
    tested against (to ~1e-15 relative). split_only uses only the split factors.
    Adjusted volume = raw volume * product of the ratios of the later splits (ex-date <= as_of),
    exact. ``as_of`` defaults to ``config.end``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd
from numba import njit

from quant_assets.market.calendar import (
    MARKET_TZ,
    SESSION_MINUTES,
    TRADING_DAYS_PER_YEAR,
    DateLike,
    exchange_calendar,
    sessions,
    to_session_label,
)
from quant_assets.market.frames import (
    AdjustmentKind,
    as_bar_dtypes,
    empty_bars,
    empty_dividends,
    empty_splits,
)
from quant_assets.market.sources import SourceRangeError
from quant_assets.settings import DEFAULT_TICKERS

# --- model constants (documented in the module docstring) -------------------------------------
INTRADAY_VARIANCE_SHARE = 0.8
VOL_OPEN_AMP, VOL_OPEN_DECAY, VOL_CLOSE_AMP, VOL_CLOSE_DECAY = 1.5, 15.0, 0.5, 20.0
VOLU_BASE, VOLU_OPEN_AMP, VOLU_OPEN_DECAY, VOLU_CLOSE_AMP, VOLU_CLOSE_DECAY = (
    0.6, 3.0, 15.0, 2.0, 10.0,
)  # fmt: skip
VOLUME_NOISE_SD = 0.5
VOLUME_SHOCK_LOAD = 0.5
PRICE_RANGE = (20.0, 500.0)
ANNUAL_VOL_RANGE = (0.18, 0.45)
DOLLAR_VOLUME_RANGE = (2e6, 3e7)
DIVIDEND_YIELD_RANGE = (0.002, 0.008)
SIGNAL_LAG = 15  # the signal window ends this many minutes before t
SIGNAL_WINDOW = 30  # ... and spans this many one-minute returns
KAPPA = 1.5
HALT_MINUTES = (5, 20)
MIN_LEAD_SESSIONS = 5  # no corporate action on the first sessions
SPLIT_PLAN: dict[int, tuple[float, float]] = {0: (2.0, 0.40), 1: (3.0, 0.65)}  # pos: (r, where)
DIVIDEND_FIRST, DIVIDEND_STAGGER, DIVIDEND_SPREAD, DIVIDEND_EVERY = 10, 7, 40, 63

_MINUTE_NS = 60_000_000_000
# New streams go at the end: SeedSequence.spawn(n)[i] does not depend on n, so the others keep
# their draws.
_STREAMS = ("params", "returns", "highs", "lows", "gaps", "volume", "missing", "halts", "trades")
_BPS = 1e-4
_INTENSITY_STEPS = 200  # bisection steps for the trade intensity (to float precision)


@dataclass(frozen=True)
class Liquidity:
    """How one ticker trades (module docstring, "Liquidity"); the default is the liquid market."""

    traded: float = 1.0  # share of session minutes with a trade (a bar), in (0, 1]
    tick_bps: float = 0.0  # price tick in basis points of the start price; 0: no rounding

    def __post_init__(self) -> None:
        if not (math.isfinite(self.traded) and 0.0 < self.traded <= 1.0):
            raise ValueError(f"Liquidity.traded must be in (0, 1], not {self.traded}")
        if not (math.isfinite(self.tick_bps) and self.tick_bps >= 0.0):
            raise ValueError(f"Liquidity.tick_bps must be >= 0, not {self.tick_bps}")


# One spec for every ticker, or per ticker (a mapping; the config stores it as sorted pairs).
LiquiditySetting = Liquidity | Mapping[str, Liquidity] | tuple[tuple[str, Liquidity], ...]


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines a synthetic market (same config -> identical data).

    ``liquidity`` is one ``Liquidity`` for every ticker or a mapping ticker -> ``Liquidity``
    (stored as a sorted tuple of pairs, so the config stays hashable; unnamed tickers get the
    default ``Liquidity()``, the liquid market).
    """

    seed: int = 7
    tickers: tuple[str, ...] = DEFAULT_TICKERS
    start: str = "2026-01-02"
    end: str = "2026-12-31"
    signal: float = 0.0
    missing_rate: float = 0.002
    halts_per_year: float = 4.0
    regime_shift_at: pd.Timestamp | None = None
    regime_vol_multiplier: float = 3.0
    regime_drift: float = 0.01
    corporate_actions: bool = True
    liquidity: LiquiditySetting = Liquidity()

    def __post_init__(self) -> None:
        if isinstance(self.liquidity, Mapping):
            pairs = tuple(sorted(self.liquidity.items()))
            object.__setattr__(self, "liquidity", pairs)

    def liquidity_of(self, ticker: str) -> Liquidity:
        """The ``Liquidity`` of one ticker."""
        if isinstance(self.liquidity, Liquidity):
            return self.liquidity
        return dict(self.liquidity).get(ticker, Liquidity())


@dataclass(frozen=True)
class _Path:
    """One ticker's whole simulated history (arrays over all session minutes)."""

    volume: np.ndarray  # int64, raw shares
    econ: np.ndarray  # (4, N) economic X for open/high/low/close; raw = econ * k_total[session]
    m: np.ndarray
    observed: np.ndarray
    halted: np.ndarray
    k_total: np.ndarray  # per session
    k_div: np.ndarray  # per session, dividend part of k
    k_split: np.ndarray  # per session, split part of k (1 / prod r)
    split_mult: np.ndarray  # per session, prod of split ratios so far
    tick: float  # raw price tick in money (0: prices are not rounded)
    splits: pd.DataFrame = field(repr=False)
    dividends: pd.DataFrame = field(repr=False)


@njit(cache=False)
def _simulate(
    x0: float,
    eps: np.ndarray,
    u_hi: np.ndarray,
    u_lo: np.ndarray,
    gap_eps: np.ndarray,
    gap_sd: np.ndarray,
    sigma: np.ndarray,
    drift: np.ndarray,
    pos: np.ndarray,
    observed: np.ndarray,
    signal: float,
    kappa: float,
    lag: int,
    window: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sequential recursion: economic log OHLC and the latent signal m for every minute."""
    n = eps.shape[0]
    o = np.empty(n)
    h = np.empty(n)
    lo = np.empty(n)
    c = np.empty(n)
    m = np.zeros(n)
    p = np.empty(n)  # log close of the last observed bar in the session (NaN if none yet)
    prev_close = x0
    m_prev = 0.0
    session = -1
    for t in range(n):
        i = pos[t]
        if i == 0:
            session += 1
            op = x0 if t == 0 else prev_close + gap_sd[session] * gap_eps[session]
            m_prev = 0.0
        else:
            op = prev_close
        s = sigma[t]
        r = drift[t] + signal * s * m_prev + s * eps[t]
        o[t] = op
        c[t] = op + r
        h[t] = op + 0.5 * (r + math.sqrt(r * r - 2.0 * s * s * math.log(u_hi[t])))
        lo[t] = op + 0.5 * (r - math.sqrt(r * r - 2.0 * s * s * math.log(u_lo[t])))
        if observed[t]:
            p[t] = c[t]
        elif i == 0:
            p[t] = np.nan
        else:
            p[t] = p[t - 1]
        mt = 0.0
        if i >= lag + window:
            a = p[t - lag - window]
            if not math.isnan(a):
                q = 0.0
                for j in range(t - lag - window + 1, t - lag + 1):
                    d = p[j] - p[j - 1]
                    q += d * d
                if q > 0.0:
                    mt = -math.tanh(kappa * (p[t - lag] - a) / math.sqrt(q))
        m[t] = mt
        m_prev = mt
        prev_close = c[t]
    return o, h, lo, c, m


def _utc(ts: pd.Timestamp | str, what: str) -> pd.Timestamp:
    """A tz-aware timestamp converted to UTC; naive input is refused."""
    try:
        out = pd.Timestamp(ts)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}={ts!r} is not a timestamp") from exc
    if out is pd.NaT:
        raise ValueError(f"{what} is NaT")
    if out.tzinfo is None:
        raise ValueError(f"{what}={out} is naive; pass a tz-aware timestamp (UTC bar start)")
    return out.tz_convert("UTC")


def _runs(mask: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and exclusive end indices of True runs, split at session opens."""
    if not mask.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    prev = np.concatenate(([False], mask[:-1])) & (pos != 0)
    nxt = np.concatenate((mask[1:], [False])) & np.concatenate((pos[1:] != 0, [False]))
    starts = np.flatnonzero(mask & ~prev)
    ends = np.flatnonzero(mask & ~nxt) + 1
    return starts, ends


class SyntheticMarket:
    """A seeded simulated NYSE exchange serving 1-minute bars, splits and dividends.

    See the module docstring for the model and the ground-truth relations.
    """

    name = "synthetic"

    def __init__(self, config: SyntheticConfig = SyntheticConfig()) -> None:
        self.config = config
        self._validate_config()
        cal = exchange_calendar()
        self._sessions = sessions(config.start, config.end).as_unit("ns")
        if len(self._sessions) == 0:
            raise ValueError(f"no NYSE session between {config.start} and {config.end}")
        opens = pd.DatetimeIndex(cal.opens.loc[self._sessions]).as_unit("ns").asi8
        closes = pd.DatetimeIndex(cal.closes.loc[self._sessions]).as_unit("ns").asi8
        self._session_len = ((closes - opens) // _MINUTE_NS).astype(np.int64)
        self._session_first = np.concatenate(([0], np.cumsum(self._session_len)[:-1]))
        total = int(self._session_len.sum())
        self._session_id = np.repeat(np.arange(len(self._sessions)), self._session_len)
        self._pos = np.arange(total, dtype=np.int64) - self._session_first[self._session_id]
        self._minutes = opens[self._session_id] + self._pos * _MINUTE_NS
        self._n_of_minute = self._session_len[self._session_id]
        self._window = (
            pd.Timestamp(config.start).tz_localize(MARKET_TZ).tz_convert("UTC"),
            (pd.Timestamp(config.end) + pd.Timedelta(days=1))
            .tz_localize(MARKET_TZ)
            .tz_convert("UTC"),
        )
        self._ticker_pos = {t: k for k, t in enumerate(config.tickers)}
        self._paths: dict[str, _Path] = {}

    # --- public interface (same as the yfinance source) -----------------------------------------
    @property
    def tickers(self) -> tuple[str, ...]:
        """The simulated tickers, in config order."""
        return self.config.tickers

    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Raw (as traded) bars with ts in [start, end) UTC, without the no-trade minutes."""
        path, rows = self._rows(ticker, start, end)
        rows = rows[path.observed[rows]]
        if len(rows) == 0:
            return empty_bars()
        raw = _on_tick(path.econ[:, rows] * path.k_total[self._session_id[rows]], path.tick)
        return self._frame(ticker, rows, *raw, path.volume[rows])

    def get_splits(
        self, ticker: str, start: DateLike | None = None, end: DateLike | None = None
    ) -> pd.DataFrame:
        """Split ledger (ticker, ex_date session label, ratio) with ex_date in [start, end]."""
        return self._ledger_slice(self._path(ticker).splits, start, end)

    def get_dividends(
        self, ticker: str, start: DateLike | None = None, end: DateLike | None = None
    ) -> pd.DataFrame:
        """Dividend ledger (ticker, ex_date session label, amount) with ex_date in [start, end]."""
        return self._ledger_slice(self._path(ticker).dividends, start, end)

    # --- ground truth ---------------------------------------------------------------------------
    def true_adjusted_bars(
        self,
        ticker: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        as_of: DateLike | None = None,
        kind: AdjustmentKind = "total_return",
    ) -> pd.DataFrame:
        """The exactly adjusted bars (same rows as get_bars; volume float64), from X and k."""
        if kind not in ("total_return", "split_only"):
            raise ValueError(f"kind must be 'total_return' or 'split_only', not {kind!r}")
        path, rows = self._rows(ticker, start, end)
        rows = rows[path.observed[rows]]
        if len(rows) == 0:
            out = empty_bars()
            out["volume"] = out["volume"].astype("float64")
            return out
        label = to_session_label(self.config.end if as_of is None else as_of)
        asof_idx = int(np.searchsorted(self._sessions.asi8, label.as_unit("ns").value, "right")) - 1
        sess = self._session_id[rows]
        later = np.maximum(sess, asof_idx)
        if kind == "total_return":
            k = path.k_total[later]
        else:
            k = path.k_div[sess] * path.k_split[later]
        prices = path.econ[:, rows] * k
        volume = path.volume[rows] * (path.split_mult[later] / path.split_mult[sess])
        out = self._frame(ticker, rows, *prices, np.zeros(len(rows), dtype=np.int64))
        out["volume"] = volume.astype(np.float64)
        return out

    def missing_minutes(
        self, ticker: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DatetimeIndex:
        """Session minutes in [start, end) with no bar (no-trade minutes, thin trading, halts)."""
        path, rows = self._rows(ticker, start, end)
        return self._index(rows[~path.observed[rows]])

    def halts(
        self, ticker: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Halts overlapping [start, end): (first halted minute, end exclusive), unclipped."""
        path, rows = self._rows(ticker, start, end)
        if len(rows) == 0:
            return []
        starts, ends = _runs(path.halted, self._pos)
        keep = (starts < rows[-1] + 1) & (ends > rows[0])
        first = self._index(starts[keep])
        return [(a, a + pd.Timedelta(minutes=int(b - s))) for a, s, b in
                zip(first, starts[keep], ends[keep], strict=True)]  # fmt: skip

    def latent_signal(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        """m_t for every session minute in [start, end) (missing minutes included)."""
        path, rows = self._rows(ticker, start, end)
        return pd.Series(path.m[rows].copy(), index=self._index(rows), name="m", dtype="float64")

    # --- internals --------------------------------------------------------------------------------
    def _validate_config(self) -> None:
        c = self.config
        if not c.tickers or len(set(c.tickers)) != len(c.tickers):
            raise ValueError(f"tickers must be a non-empty tuple of distinct names: {c.tickers!r}")
        if not all(isinstance(t, str) and t for t in c.tickers):
            raise ValueError(f"tickers must be non-empty strings: {c.tickers!r}")
        if not isinstance(c.seed, int) or c.seed < 0:
            raise ValueError(f"seed must be a non-negative int, not {c.seed!r}")
        if pd.Timestamp(c.end) < pd.Timestamp(c.start):
            raise ValueError(f"end {c.end} is before start {c.start}")
        if not 0.0 <= c.missing_rate < 1.0:
            raise ValueError(f"missing_rate must be in [0, 1), not {c.missing_rate}")
        if c.halts_per_year < 0:
            raise ValueError(f"halts_per_year must be >= 0, not {c.halts_per_year}")
        if not c.regime_vol_multiplier > 0:
            raise ValueError(f"regime_vol_multiplier must be > 0, not {c.regime_vol_multiplier}")
        if not (math.isfinite(c.signal) and math.isfinite(c.regime_drift)):
            raise ValueError("signal and regime_drift must be finite")
        if c.regime_shift_at is not None:
            _utc(c.regime_shift_at, "regime_shift_at")
        self._validate_liquidity()

    def _validate_liquidity(self) -> None:
        setting = self.config.liquidity
        if isinstance(setting, Liquidity):
            return
        for ticker, spec in setting:
            if ticker not in self.config.tickers:
                raise ValueError(f"liquidity names {ticker!r}, which is not a simulated ticker")
            if not isinstance(spec, Liquidity):
                raise ValueError(f"liquidity of {ticker!r} must be a Liquidity, not {spec!r}")

    def _rows(
        self, ticker: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[_Path, np.ndarray]:
        """Validate a query; return the ticker's path and the minute indices in [start, end)."""
        start, end = _utc(start, "start"), _utc(end, "end")
        if start >= end:
            raise ValueError(f"start {start} must be before end {end}")
        lo, hi = self._window
        if start < lo or end > hi:
            raise SourceRangeError(
                f"[{start}, {end}) is outside the simulated range [{lo}, {hi}) "
                f"(config.start={self.config.start}, config.end={self.config.end})"
            )
        path = self._path(ticker)
        a = np.searchsorted(self._minutes, start.as_unit("ns").value, "left")
        b = np.searchsorted(self._minutes, end.as_unit("ns").value, "left")
        return path, np.arange(a, b, dtype=np.int64)

    def _index(self, rows: np.ndarray) -> pd.DatetimeIndex:
        values = self._minutes[rows].view("datetime64[ns]")
        return pd.DatetimeIndex(values, name="ts").tz_localize("UTC")

    def _frame(self, ticker: str, rows: np.ndarray, *cols: np.ndarray) -> pd.DataFrame:
        o, h, lo, c, v = cols
        frame = pd.DataFrame(
            {
                "ticker": pd.array([ticker] * len(rows), dtype="string"),
                "ts": self._index(rows),
                "open": o, "high": h, "low": lo, "close": c, "volume": v,
            }
        )  # fmt: skip
        return as_bar_dtypes(frame)

    @staticmethod
    def _ledger_slice(
        ledger: pd.DataFrame, start: DateLike | None, end: DateLike | None
    ) -> pd.DataFrame:
        lo = None if start is None else to_session_label(start)
        hi = None if end is None else to_session_label(end)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"start {lo.date()} is after end {hi.date()}")
        keep = np.ones(len(ledger), dtype=bool)
        if lo is not None:
            keep &= (ledger["ex_date"] >= lo).to_numpy()
        if hi is not None:
            keep &= (ledger["ex_date"] <= hi).to_numpy()
        return ledger.loc[keep].reset_index(drop=True)

    def _path(self, ticker: str) -> _Path:
        if ticker not in self._ticker_pos:
            raise ValueError(f"unknown ticker {ticker!r}; simulated: {', '.join(self.tickers)}")
        if ticker not in self._paths:
            self._paths[ticker] = self._simulate_ticker(ticker)
        return self._paths[ticker]

    def _simulate_ticker(self, ticker: str) -> _Path:
        cfg = self.config
        seq = np.random.SeedSequence(cfg.seed, spawn_key=tuple(ticker.encode("utf-8")))
        rng = dict(zip(_STREAMS, (np.random.default_rng(s) for s in seq.spawn(len(_STREAMS))),
                       strict=True))  # fmt: skip
        n_min, n_sess = len(self._minutes), len(self._sessions)
        pos, n_of = self._pos, self._n_of_minute

        # per-ticker parameters
        pr = rng["params"]
        p0 = math.exp(pr.uniform(*np.log(PRICE_RANGE)))
        annual_vol = pr.uniform(*ANNUAL_VOL_RANGE)
        dollar_volume = math.exp(pr.uniform(*np.log(DOLLAR_VOLUME_RANGE)))
        div_yield = pr.uniform(*DIVIDEND_YIELD_RANGE)
        daily_sd = annual_vol / math.sqrt(TRADING_DAYS_PER_YEAR)

        # deterministic intraday shapes and the regime
        shape = _vol_shape(pos, n_of)
        full = _vol_shape(np.arange(SESSION_MINUTES), SESSION_MINUTES)
        sigma0 = math.sqrt(INTRADAY_VARIANCE_SHARE * daily_sd**2 / float(np.sum(full**2)))
        regime = np.zeros(n_min, dtype=bool)
        if cfg.regime_shift_at is not None:
            shift_ns = _utc(cfg.regime_shift_at, "regime_shift_at").as_unit("ns").value
            regime = self._minutes >= shift_ns
        mult = np.where(regime, cfg.regime_vol_multiplier, 1.0)
        sigma = sigma0 * shape * mult
        drift = np.where(regime, cfg.regime_drift * sigma, 0.0)
        gap_sd = math.sqrt(1.0 - INTRADAY_VARIANCE_SHARE) * daily_sd * mult[self._session_first]

        # noise (one stream per quantity: fixed draws whatever signal / regime / missing_rate)
        eps = rng["returns"].standard_normal(n_min)
        u_hi = 1.0 - rng["highs"].random(n_min)  # (0, 1]
        u_lo = 1.0 - rng["lows"].random(n_min)
        gap_eps = rng["gaps"].standard_normal(n_sess)
        vol_noise = rng["volume"].standard_normal(n_min)
        observed = rng["missing"].random(n_min) >= cfg.missing_rate
        halted = self._draw_halts(rng["halts"])
        observed &= ~halted
        liquidity = cfg.liquidity_of(ticker)
        if liquidity.traded < 1.0:
            observed &= rng["trades"].random(n_min) < self._trade_probability(liquidity.traded)
        tick = liquidity.tick_bps * _BPS * p0

        o, h, lo, c, m = _simulate(
            math.log(p0), eps, u_hi, u_lo, gap_eps, gap_sd, sigma, drift, pos, observed,
            float(cfg.signal), KAPPA, SIGNAL_LAG, SIGNAL_WINDOW,
        )  # fmt: skip
        econ = np.exp(np.vstack((o, h, lo, c)))

        # corporate actions -> k per session
        split_at, div_at = self._action_sessions(self._ticker_pos[ticker])
        k_split = np.ones(n_sess)
        k_div = np.ones(n_sess)
        split_mult = np.ones(n_sess)
        split_rows, div_rows = [], []
        events = sorted([(s, "split", r) for s, r in split_at] + [(s, "div", 0.0) for s in div_at])
        for s, kind, ratio in events:
            if kind == "split":
                k_split[s:] /= ratio
                split_mult[s:] *= ratio
                split_rows.append((self._sessions[s], ratio))
            else:
                last = self._last_observed_before(observed, s)
                if last < 0:
                    continue
                prev_sess = self._session_id[last]
                close_raw = econ[3, last] * (k_split[prev_sess] * k_div[prev_sess])  # == raw close
                close_raw = float(_on_tick(close_raw, tick))  # the quoted close
                amount = div_yield * close_raw
                k_div[s:] *= 1.0 - amount / close_raw
                div_rows.append((self._sessions[s], amount))
        k_total = k_split * k_div
        if tick > 0.0:  # quotes on the tick grid; X follows them so the ground truth holds
            k_minute = k_total[self._session_id]
            econ = _on_tick(econ * k_minute, tick) / k_minute
        shares = (dollar_volume / p0) * _volume_shape(pos, n_of)
        shares = shares * np.exp(VOLUME_NOISE_SD * vol_noise - 0.5 * VOLUME_NOISE_SD**2)
        shares = shares * (1.0 + VOLUME_SHOCK_LOAD * np.abs(eps)) * np.sqrt(mult)
        volume = np.maximum(1, np.rint(shares * split_mult[self._session_id])).astype(np.int64)

        splits = empty_splits()
        if split_rows:
            splits = pd.DataFrame(
                {
                    "ticker": pd.array([ticker] * len(split_rows), dtype="string"),
                    "ex_date": pd.DatetimeIndex([d for d, _ in split_rows]).as_unit("ns"),
                    "ratio": np.array([r for _, r in split_rows], dtype=np.float64),
                }
            )
        dividends = empty_dividends()
        if div_rows:
            dividends = pd.DataFrame(
                {
                    "ticker": pd.array([ticker] * len(div_rows), dtype="string"),
                    "ex_date": pd.DatetimeIndex([d for d, _ in div_rows]).as_unit("ns"),
                    "amount": np.array([a for _, a in div_rows], dtype=np.float64),
                }
            )
        return _Path(
            volume=volume, econ=econ, m=m,
            observed=observed, halted=halted, k_total=k_total, k_div=k_div, k_split=k_split,
            split_mult=split_mult, tick=tick, splits=splits, dividends=dividends,
        )  # fmt: skip

    def _trade_probability(self, traded: float) -> np.ndarray:
        """P(a minute has a trade) = 1 - exp(-lambda v(i, n)), averaging ``traded`` per session."""
        lam = _trade_intensity(traded)
        return -np.expm1(-lam * _volume_shape(self._pos, self._n_of_minute))

    def _draw_halts(self, rng: np.random.Generator) -> np.ndarray:
        """A mask of halted minutes: Poisson many runs of 5..20 minutes, each inside one session."""
        n_sess = len(self._sessions)
        halted = np.zeros(len(self._minutes), dtype=bool)
        count = rng.poisson(self.config.halts_per_year * n_sess / TRADING_DAYS_PER_YEAR)
        for _ in range(count):
            s = int(rng.integers(n_sess))
            length = int(rng.integers(HALT_MINUTES[0], HALT_MINUTES[1] + 1))
            length = min(length, int(self._session_len[s]))
            begin = int(rng.integers(0, self._session_len[s] - length + 1))
            first = self._session_first[s] + begin
            halted[first : first + length] = True
        return halted

    def _action_sessions(self, position: int) -> tuple[list[tuple[int, float]], list[int]]:
        """Session indices of the planted splits (with ratio) and dividends of one ticker."""
        if not self.config.corporate_actions:
            return [], []
        n = len(self._sessions)
        splits: list[tuple[int, float]] = []
        if position in SPLIT_PLAN:
            ratio, where = SPLIT_PLAN[position]
            s = max(MIN_LEAD_SESSIONS, int(where * n))
            if s < n:
                splits.append((s, ratio))
        dividends: list[int] = []
        if position % 2 == 0:
            taken = {s for s, _ in splits}
            first = DIVIDEND_FIRST + (DIVIDEND_STAGGER * (position // 2)) % DIVIDEND_SPREAD
            for s in range(first, n, DIVIDEND_EVERY):
                day = s + 1 if s in taken else s
                if MIN_LEAD_SESSIONS <= day < n:
                    dividends.append(day)
        return splits, dividends

    def _last_observed_before(self, observed: np.ndarray, session: int) -> int:
        """Index of the last observed minute before a session's open (-1 if none)."""
        idx = np.flatnonzero(observed[: self._session_first[session]])
        return int(idx[-1]) if len(idx) else -1


def _vol_shape(pos: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """The U-shaped intraday volatility multiplier u(i, n)."""
    return (
        1.0
        + VOL_OPEN_AMP * np.exp(-pos / VOL_OPEN_DECAY)
        + VOL_CLOSE_AMP * np.exp(-(n - 1 - pos) / VOL_CLOSE_DECAY)
    )


def _on_tick(prices: np.ndarray | float, tick: float) -> np.ndarray:
    """Prices rounded to the nearest multiple of ``tick`` (at least one tick); 0: unchanged.

    Idempotent (a price on the grid maps to the same float), so re-rounding raw = X k gives the
    quote exactly.
    """
    if tick <= 0.0:
        return np.asarray(prices)
    return np.maximum(np.rint(np.asarray(prices) / tick), 1.0) * tick


def _trade_intensity(traded: float) -> float:
    """lambda with mean_i (1 - exp(-lambda v(i, 390))) = ``traded`` (bisection; deterministic)."""
    shape = _volume_shape(np.arange(SESSION_MINUTES), SESSION_MINUTES)

    def share(lam: float) -> float:
        return float(np.mean(-np.expm1(-lam * shape)))

    lo, hi = 0.0, 1.0
    while share(hi) < traded:
        hi *= 2.0
    for _ in range(_INTENSITY_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if share(mid) < traded else (lo, mid)
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def _volume_shape(pos: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """The U-shaped intraday volume multiplier v(i, n)."""
    return (
        VOLU_BASE
        + VOLU_OPEN_AMP * np.exp(-pos / VOLU_OPEN_DECAY)
        + VOLU_CLOSE_AMP * np.exp(-(n - 1 - pos) / VOLU_CLOSE_DECAY)
    )


@cache
def synthetic_market(config: SyntheticConfig) -> SyntheticMarket:
    """The market of ``config``, built once per process (deterministic and costly to rebuild)."""
    return SyntheticMarket(config)
