"""Triple-barrier labels of 1-minute bars (López de Prado), with the plan's 0 at the vertical.

The contract of ``triple_barrier_labels`` (bars of one or many tickers):

* **Volatility.** σ at entry bar t comes from ``barrier_volatility``: the EWM standard deviation
  (pandas ``ewm(span).std()``, bias-corrected) of the ticker's past bar-to-bar log returns up to
  and including t's own return, each divided by √(its minutes) so that a return over a pause of
  k minutes counts as k one-minute returns would, times ``sqrt(horizon)`` (minutes). With every
  minute present this is the plain per-bar figure. Overnight returns (a session's first bar)
  are left out: the barriers live inside a session. It uses no bar after t. Any σ can be
  passed instead (a column name or an array), so the labelling core can be checked on its own.
  A row whose σ is NaN, infinite or ≤ 0 gets no label.
* **Barriers.** p0 = close[t]; upper = p0 · (1 + profit_take · σ); lower = p0 · (1 − stop_loss · σ).
* **Path.** The bars after t up to ``horizon`` *minutes* after t (wall clock: the bars starting
  at or before ts[t] + horizon, the usual definition), and never past t's session, are scanned
  in order. A thin ticker's horizon holds fewer bars than a liquid one's, but the same time.
  With ``touch="close"`` (default) the first bar whose close ≥ upper gives +1, whose close ≤
  lower gives −1. With ``touch="high_low"`` the bar's high is tested against upper and its low
  against lower. A bar meeting both gives −1 (stop first, the conservative rule) in either mode.
* **Vertical barrier.** No touch by the last scanned bar: label 0 there.
* **Unlabelled** (label <NA>, t1 NaT, ret NaN): a bar with no later bar in its horizon and
  session (the session's last bar; a thin ticker's bar followed by a pause longer than the
  horizon), and rows without a usable σ. The frame is taken to hold whole sessions: for a
  session still in progress, the vertical barrier of its last ``horizon`` minutes could still
  move, so label completed sessions only.
* **Output**, same index and order as ``bars``: ticker, ts, ``label`` (pandas nullable Int8:
  −1/0/+1/<NA>), ``t1`` (ts of the touching or vertical-barrier bar), ``ret`` (close[t1]/p0 − 1)
  and ``sigma`` (the σ used).

Rows must be in strictly increasing ts order within each ticker (tickers may interleave).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numba import njit

from quant_assets.market.calendar import MARKET_TZ

# The three classes, in the order of every model's softmax outputs and probability columns.
DOWN, NEUTRAL, UP = -1, 0, 1
CLASS_ORDER: tuple[int, int, int] = (DOWN, NEUTRAL, UP)
CLASS_NAMES: tuple[str, str, str] = ("down", "flat", "up")

Touch = Literal["close", "high_low"]
TOUCH_MODES: tuple[str, ...] = ("close", "high_low")
LABEL_COLUMNS: tuple[str, ...] = ("ticker", "ts", "label", "t1", "ret", "sigma")
_NS_PER_DAY = 86_400_000_000_000
_NS_PER_MINUTE = 60_000_000_000


@dataclass(frozen=True)
class LabelSpec:
    """Triple-barrier parameters; model bundles carry it. Invalid values raise ValueError."""

    horizon: int = 30  # minutes (wall clock) to the vertical barrier
    profit_take: float = 1.0
    stop_loss: float = 1.0
    vol_span: int = 100
    touch: Touch = "close"

    def __post_init__(self) -> None:
        if isinstance(self.horizon, bool) or int(self.horizon) != self.horizon:
            raise ValueError(f"horizon must be a whole number of minutes, got {self.horizon!r}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 minute, got {self.horizon}")
        for name in ("profit_take", "stop_loss"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite multiplier >= 0, got {value!r}")
        if isinstance(self.vol_span, bool) or int(self.vol_span) != self.vol_span:
            raise ValueError(f"vol_span must be an integer, got {self.vol_span!r}")
        if self.vol_span < 1:
            raise ValueError(f"vol_span must be >= 1, got {self.vol_span}")
        if self.touch not in TOUCH_MODES:
            raise ValueError(f"touch must be one of {TOUCH_MODES}, got {self.touch!r}")

    @property
    def history_bars(self) -> int:
        """Bars of a ticker's history before a row that make its σ equal the unlimited-history
        σ to ~1e-9 (the EWM weights of older returns sum to e^-20)."""
        return 10 * (self.vol_span + 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for a model bundle."""
        return {
            "horizon": int(self.horizon),
            "profit_take": float(self.profit_take),
            "stop_loss": float(self.stop_loss),
            "vol_span": int(self.vol_span),
            "touch": self.touch,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSpec:
        """Inverse of ``to_dict``."""
        return cls(**data)


def barrier_volatility(
    bars: pd.DataFrame, span: int, horizon: int, *, min_periods: int | None = None
) -> pd.Series:
    """σ per bar for the barriers: EWM sd of past intraday per-minute log returns ×
    sqrt(horizon minutes).

    Per ticker, across sessions, without the overnight return; a return over k minutes is scaled
    by 1/√k. NaN until ``min_periods`` (default ``span``) returns have been seen. Same index as
    ``bars``; uses no later bar.
    """
    LabelSpec(horizon=horizon, vol_span=span)  # same validation as the labeller's
    ordered = _Ordered.of(bars, need_high_low=False)
    sigma = _barrier_volatility(
        ordered, span, horizon, span if min_periods is None else min_periods
    )
    return pd.Series(ordered.unsort(sigma), index=bars.index, name="sigma")


def _barrier_volatility(ordered: _Ordered, span: int, horizon: int, min_periods: int) -> np.ndarray:
    """barrier_volatility on already ordered bars; result in the ordered row order."""
    log_close = np.log(ordered.close)
    minutes = np.r_[1.0, np.diff(ordered.ts_ns) / _NS_PER_MINUTE]
    ret = np.r_[np.nan, np.diff(log_close)] / np.sqrt(np.maximum(minutes, 1.0))
    ret[ordered.segment_start] = np.nan  # new ticker or new session: no intraday return
    sigma = np.full(ordered.n, np.nan)
    for lo, hi in ordered.ticker_bounds():
        # ignore_na: a skipped overnight return is absent, not a gap that decays the weights.
        sd = pd.Series(ret[lo:hi]).ewm(span=span, min_periods=min_periods, ignore_na=True).std()
        sigma[lo:hi] = sd.to_numpy(dtype="float64") * np.sqrt(horizon)
    return sigma


def triple_barrier_labels(
    bars: pd.DataFrame,
    spec: LabelSpec | None = None,
    *,
    sigma: str | pd.Series | np.ndarray | None = None,
) -> pd.DataFrame:
    """Triple-barrier labels of every bar; see the module docstring for the semantics.

    ``sigma``: None computes ``barrier_volatility(bars, spec.vol_span, spec.horizon)``; a
    string names a column of ``bars``; a Series must share ``bars``' index; an array is taken
    by position.
    """
    spec = LabelSpec() if spec is None else spec
    ordered = _Ordered.of(bars, need_high_low=spec.touch == "high_low")
    if sigma is None:
        sig = ordered.unsort(
            _barrier_volatility(ordered, spec.vol_span, spec.horizon, spec.vol_span)
        )
    elif isinstance(sigma, str):
        if sigma not in bars.columns:
            raise ValueError(f"sigma column {sigma!r} is not in bars")
        sig = bars[sigma].to_numpy(dtype="float64")
    elif isinstance(sigma, pd.Series):
        if not sigma.index.equals(bars.index):
            raise ValueError("sigma Series must have the same index as bars")
        sig = sigma.to_numpy(dtype="float64")
    else:
        sig = np.asarray(sigma, dtype="float64")
        if sig.shape != (ordered.n,):
            raise ValueError(f"sigma must have one value per bar ({ordered.n}), got {sig.shape}")

    label, end, ret = _scan_barriers(
        ordered.ts_ns,
        ordered.close,
        ordered.high,
        ordered.low,
        sig[ordered.order],
        ordered.segment_end,
        int(spec.horizon) * _NS_PER_MINUTE,
        float(spec.profit_take),
        float(spec.stop_loss),
        spec.touch == "high_low",
    )
    labelled = end >= 0
    t1 = np.full(ordered.n, np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    t1[labelled] = ordered.ts_ns[end[labelled]]
    label_arr = pd.arrays.IntegerArray(ordered.unsort(label), ordered.unsort(~labelled))
    return pd.DataFrame(
        {
            "ticker": bars["ticker"].astype("string").array,
            "ts": pd.to_datetime(bars["ts"], utc=True).astype("datetime64[ns, UTC]").array,
            "label": label_arr,
            "t1": pd.DatetimeIndex(ordered.unsort(t1).view("datetime64[ns]"), tz="UTC"),
            "ret": ordered.unsort(ret),
            "sigma": sig,
        },
        index=bars.index,
    )


@njit(cache=True)
def _scan_barriers(
    ts_ns: np.ndarray,
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    sigma: np.ndarray,
    segment_end: np.ndarray,
    horizon_ns: int,
    profit_take: float,
    stop_loss: float,
    high_low: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over time-ordered bars; end = -1 marks an unlabelled row."""
    n = close.size
    label = np.zeros(n, dtype=np.int8)
    end = np.full(n, -1, dtype=np.int64)
    ret = np.full(n, np.nan)
    last = -1  # the last bar inside row i's horizon and session; never moves back in a segment
    for i in range(n):
        last = max(last, i)
        while last + 1 <= segment_end[i] and ts_ns[last + 1] <= ts_ns[i] + horizon_ns:
            last += 1
        s = sigma[i]
        if not (s > 0.0 and s < np.inf) or last <= i:
            continue
        p0 = close[i]
        if not (p0 > 0.0 and p0 < np.inf):
            continue
        upper = p0 * (1.0 + profit_take * s)
        lower = p0 * (1.0 - stop_loss * s)
        hit = last  # vertical barrier unless a touch comes first
        lab = 0
        for j in range(i + 1, last + 1):
            if high_low:
                down, up = low[j] <= lower, high[j] >= upper
            else:
                down, up = close[j] <= lower, close[j] >= upper
            if down:  # stop first when a bar meets both
                hit, lab = j, -1
                break
            if up:
                hit, lab = j, 1
                break
        label[i] = lab
        end[i] = hit
        ret[i] = close[hit] / p0 - 1.0
    return label, end, ret


@dataclass(frozen=True)
class _Ordered:
    """Bars in (ticker, ts) order, with their ticker and (ticker, session) segments."""

    order: np.ndarray  # position in bars of each ordered row
    ts_ns: np.ndarray
    close: np.ndarray
    high: np.ndarray
    low: np.ndarray
    ticker_start: np.ndarray  # bool per ordered row
    segment_start: np.ndarray  # bool: first bar of a (ticker, session)
    segment_end: np.ndarray  # ordered index of the last bar of the row's (ticker, session)

    @property
    def n(self) -> int:
        return self.order.size

    @classmethod
    def of(cls, bars: pd.DataFrame, need_high_low: bool) -> _Ordered:
        required = ["ticker", "ts", "close", *(["high", "low"] if need_high_low else [])]
        missing = [c for c in required if c not in bars.columns]
        if missing:
            raise ValueError(f"bars lack columns {missing}")
        ticker = bars["ticker"].astype("string")
        if ticker.isna().any():
            raise ValueError("bars have a missing ticker")
        ts = pd.to_datetime(bars["ts"], utc=True).astype("datetime64[ns, UTC]")
        if ts.isna().any():
            raise ValueError("bars have a missing ts")
        codes, _ = pd.factorize(ticker)
        order = np.argsort(codes, kind="stable")  # keeps each ticker's own row order
        ts_ns = ts.array.asi8[order]
        n = order.size
        ticker_start = (
            np.r_[True, codes[order][1:] != codes[order][:-1]] if n else np.zeros(0, dtype=bool)
        )
        step = np.r_[1, np.diff(ts_ns)] if n else np.zeros(0, dtype=np.int64)
        if (~ticker_start & (step == 0)).any():
            raise ValueError("bars have duplicate (ticker, ts) rows")
        if (~ticker_start & (step < 0)).any():
            raise ValueError("bars are not sorted by ts within each ticker")
        local = pd.DatetimeIndex(ts_ns.view("datetime64[ns]"), tz="UTC").tz_convert(MARKET_TZ)
        day = local.tz_localize(None).asi8 // _NS_PER_DAY  # New York date = session
        segment_start = ticker_start | (np.r_[0, np.diff(day)] != 0)
        seg_id = np.cumsum(segment_start) - 1
        seg_last = np.r_[np.flatnonzero(segment_start)[1:] - 1, n - 1] if n else seg_id
        close = bars["close"].to_numpy(dtype="float64")[order]
        if need_high_low:
            high = bars["high"].to_numpy(dtype="float64")[order]
            low = bars["low"].to_numpy(dtype="float64")[order]
        else:
            high = low = close
        return cls(
            order,
            ts_ns,
            close,
            high,
            low,
            ticker_start,
            segment_start,
            seg_last[seg_id].astype(np.int64),
        )

    def ticker_bounds(self) -> list[tuple[int, int]]:
        starts = np.flatnonzero(self.ticker_start)
        return list(
            zip(starts.tolist(), [*starts[1:].tolist(), self.n][: starts.size], strict=True)
        )

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Values of the ordered rows, back in the row order of ``bars``."""
        out = np.empty_like(values)
        out[self.order] = values
        return out
