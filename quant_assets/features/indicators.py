"""Features of 1-minute bars: pandas-ta indicators, time of day, lagged returns (pure core).

``create_features(bars)`` is the one function training and live scoring both call (train/serve
parity). It returns one row per input bar with the raw indicator columns (for the features
table) and the scale-free model inputs named, in order, by ``FEATURE_SPEC.columns``.

Rules (the contract):

* **Per ticker.** Every series is computed over one ticker's bars in time order; tickers never
  mix. Indicators run *across* sessions (the overnight gap is just one more bar step), so the
  first bars of a session are warmed up by the previous sessions' bars of the same ticker.
* **Warm-up.** Pass at least ``FEATURE_WARMUP_BARS`` (390, one full session) bars of history
  before the first bar whose features you keep. The recursive indicators forget their starting
  state geometrically; the slowest is RSI's Wilder average, (13/14)^390 ≈ 3e-13, and the EMA-26
  gives (25/27)^390 ≈ 1e-13, so features computed from 390 bars of history equal those from
  unlimited history to ~1e-10 (RSI on its 0-100 scale), and every finite window (≤ 34 bars)
  and lag (≤ 30 minutes) lies inside that history. The ``warm`` column says whether a row had
  that much history in the frame given. Warm-up is counted in *bars of the ticker*, not in
  sessions: a thin ticker (a trade in 16 % of the minutes) needs about six sessions of history.
* **Holes.** More than ``spec.max_gap_sessions`` whole sessions without a bar (a data outage, a
  suspension) break a ticker's series: everything after the hole is computed as if the ticker
  started there (indicators, lag returns, warm-up), so nothing bridges the hole and no window
  built on warm rows spans it.
* **Minutes without a bar** (no trade, or not fetched): *skipped* by the indicators. RSI, MACD,
  EMAs, Bollinger bands, realized volatility and the volume ratio run over the bars that exist
  (bar time), i.e. "EMA-12" is over the last 12 bars. Forward-filling was rejected: for thin
  tickers (20-38 % of minutes have a bar) it would invent mostly flat zero-volume bars that
  drag RSI toward 50 and shrink the bands, and it would add rows that are not bars. The lagged
  returns are the exception, because their name promises wall-clock minutes: ``log_ret_k`` is
  ``log(close_t / P(t - k min))`` where ``P(s)`` is the close of the last bar starting at or
  before ``s`` (the last traded price at that time, as an as-of join / forward fill would give);
  with every minute present this is the plain k-bar return. At a session's first minutes the
  reference is the previous session's last price, so the overnight gap is part of the return.
* **No lookahead.** A row uses bars at or before its ``ts`` only: no centred windows, no bfill,
  no whole-series normalisation. Each pandas-ta indicator is NaN until its own minimum length
  (RSI 15 bars, MACD 34, EMA n, BBands 20) because pandas-ta returns nothing at all for a
  shorter series; masking those first rows keeps a row's value independent of how many bars
  follow it.
* **Degenerate windows** get their neutral value instead of NaN: RSI of a window with no
  movement is 50; %b of zero-width bands is 0.5 (and bandwidth 0); a volume ratio whose recent
  mean volume is 0 is 1.

The columns and the model inputs are named in ``features.spec``.

Indicators come from pandas-ta 0.4.71b0 with ``talib=False`` on every call (with TA-Lib
installed pandas-ta would otherwise silently switch to TA-Lib's code), and Bollinger bands with
``ddof=0`` (Bollinger's population standard deviation; pandas-ta's own default is ddof=1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandas_ta as ta
from numba import njit

from quant_assets.features.kernels import INDICATOR_ROWS, indicator_block
from quant_assets.features.spec import (
    BB_LENGTH,
    BB_STD,
    EMA_LENGTHS,
    FEATURE_SPEC,
    FEATURE_TABLE_COLUMNS,
    LAG_MINUTES,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    REALIZED_VOL_BARS,
    RSI_LENGTH,
    TIME_COLUMNS,
    VOLUME_MEAN_BARS,
    FeatureSpec,
)
from quant_assets.market.calendar import (
    MARKET_TZ,
    SESSION_MINUTES,
    SESSION_OPEN_MINUTE,
    exchange_calendar,
)

# pandas-ta returns None for a series shorter than these; rows before (minimum - 1) are masked.
_MIN_BARS = {
    "rsi": RSI_LENGTH + 1,
    "macd": MACD_SLOW + MACD_SIGNAL - 1,
    "ema_12": EMA_LENGTHS[0],
    "ema_26": EMA_LENGTHS[1],
    "bbands": BB_LENGTH,
}

_INDICATOR_COLUMNS = {
    "rsi": ("rsi_14",),
    "macd": ("macd", "macd_signal", "macd_hist"),
    "ema_12": ("ema_12",),
    "ema_26": ("ema_26",),
    "bbands": ("bb_lower", "bb_middle", "bb_upper", "bb_bandwidth", "bb_percent"),
}

INDICATOR_ENGINES: tuple[str, ...] = ("pandas_ta", "numba")
_REQUIRED = ("ticker", "ts", "close", "volume")
_NS_PER_MINUTE = 60_000_000_000
_NS_PER_DAY = 1440 * _NS_PER_MINUTE
# Float columns live in one (columns x rows) block, written in place and handed to pandas
# row by row (each a column) without a copy; the int time fields and ``warm`` go beside them.
_FLOAT_COLUMNS: tuple[str, ...] = tuple(
    c for c in FEATURE_TABLE_COLUMNS[2:] if c not in TIME_COLUMNS and c != "warm"
)
_ROW = {c: k for k, c in enumerate(_FLOAT_COLUMNS)}


def create_features(
    bars: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC, indicators: str = "pandas_ta"
) -> pd.DataFrame:
    """Features of every bar; one output row per input row, same order and index.

    Columns: ``FEATURE_TABLE_COLUMNS`` (ticker, ts, the raw indicators, the New York time
    fields, the scale-free model inputs of ``FEATURE_SPEC`` and ``warm``). Input rows may come
    in any order and mix tickers; (ticker, ts) must be unique and close finite and positive.
    ``spec`` gives the warm-up and the hole rule (training and live scoring pass the same one:
    the bundle's). See the module docstring for warm-up, holes, missing minutes and lookahead.
    ``indicators``: "pandas_ta" (one pandas-ta call per indicator and series: the training
    path) or "numba" (``features.kernels``: every series in one compiled pass, the same numbers
    to float precision; the live path, where pandas-ta's fixed cost per ticker dominates).
    """
    # One column per array, none copied (each float column is a contiguous row of the block).
    return pd.DataFrame(feature_arrays(bars, spec, indicators), index=bars.index, copy=False)


def feature_arrays(
    bars: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC, indicators: str = "pandas_ta"
) -> dict[str, Any]:
    """``create_features`` as its columns (name → array, in ``FEATURE_TABLE_COLUMNS`` order),
    without the frame: live scoring takes a window of rows from a few of them each minute."""
    if indicators not in INDICATOR_ENGINES:
        raise ValueError(f"indicators must be one of {INDICATOR_ENGINES}, got {indicators!r}")
    missing = [c for c in _REQUIRED if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    n = len(bars)
    ticker = bars["ticker"].astype("string")
    if ticker.isna().any():
        raise ValueError("bars have a missing ticker")
    ts = pd.to_datetime(bars["ts"], utc=True).astype("datetime64[ns, UTC]")
    if ts.isna().any():
        raise ValueError("bars have a missing ts")
    close = bars["close"].to_numpy(dtype="float64")
    if not (np.isfinite(close) & (close > 0)).all():
        raise ValueError("bars have a non-finite or non-positive close")
    volume = bars["volume"].to_numpy(dtype="float64")
    ts_ns = ts.array.asi8
    codes, _ = pd.factorize(ticker)

    # Rows in (ticker, ts) order; the usual input is already in it, then no reordering at all.
    in_order = n < 2 or bool(
        ((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (ts_ns[1:] > ts_ns[:-1]))).all()
    )
    order = np.arange(n) if in_order else np.lexsort((ts_ns, codes))
    s_ts, s_codes = ts_ns[order], codes[order]
    new_ticker = np.r_[True, s_codes[1:] != s_codes[:-1]] if n else np.zeros(0, dtype=bool)
    if (~new_ticker & (np.r_[1, np.diff(s_ts)] == 0)).any():
        raise ValueError("bars have duplicate (ticker, ts) rows")
    local_ns = _new_york_ns(ts_ns)
    new_series = new_ticker | _after_hole(local_ns[order], spec.max_gap_sessions)
    starts = np.flatnonzero(new_series)
    ends = np.r_[starts[1:], n][: starts.size]

    # Every row of every column is written below (NaN where undefined): no need to pre-fill.
    block = np.empty((len(_FLOAT_COLUMNS), n))
    warm = np.zeros(n, dtype=bool)
    if indicators == "numba":
        _kernel_indicators(block, order if not in_order else slice(None), close, starts, ends)
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        rows: slice | np.ndarray = slice(lo, hi) if in_order else order[lo:hi]
        if indicators == "pandas_ta":
            _ticker_features(block, rows, close[rows])
        _window_features(block, rows, s_ts[lo:hi], close[rows], volume[rows])
        warm[rows] = np.arange(hi - lo) >= spec.warmup_bars

    # Scale-free forms for the models (raw price levels stay in the table only).
    for name in ("macd", "macd_signal", "macd_hist"):
        np.divide(block[_ROW[name]], close, out=block[_ROW[f"{name}_rel"]])
    for length in EMA_LENGTHS:
        np.divide(close, block[_ROW[f"ema_{length}"]], out=block[_ROW[f"close_ema_{length}_rel"]])
        block[_ROW[f"close_ema_{length}_rel"]] -= 1.0
    int_time = _time_features(local_ns, block)

    columns = {"ticker": ticker.array, "ts": ts.array, **int_time, "warm": warm}
    columns.update((name, block[k]) for k, name in enumerate(_FLOAT_COLUMNS))
    return {name: columns[name] for name in FEATURE_TABLE_COLUMNS}


def _new_york_ns(ts_ns: np.ndarray) -> np.ndarray:
    """New York wall-clock times (ns since 1970 as if UTC) of UTC bar starts (ns)."""
    local = pd.DatetimeIndex(ts_ns.view("datetime64[ns]"), tz="UTC").tz_convert(MARKET_TZ)
    return local.tz_localize(None).asi8


def _after_hole(local_ns: np.ndarray, max_gap_sessions: int | None) -> np.ndarray:
    """True at a bar (New York wall-clock ns, sorted per ticker) that follows more than
    ``max_gap_sessions`` whole sessions without one."""
    if max_gap_sessions is None or local_ns.size < 2:
        return np.zeros(local_ns.size, dtype=bool)
    days = local_ns - local_ns % _NS_PER_DAY
    position = np.searchsorted(exchange_calendar().sessions.asi8, days)
    skipped = np.r_[0, np.diff(position) - 1]  # whole sessions between consecutive bars
    return skipped > max_gap_sessions


def _kernel_indicators(
    block: np.ndarray,
    order: slice | np.ndarray,
    close: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> None:
    """Write every series' pandas-ta indicators into ``block`` with one ``kernels`` pass."""
    values = indicator_block(close[order], starts, ends)
    for k, name in enumerate(INDICATOR_ROWS):
        block[_ROW[name], order] = values[k]
    lower, mid, upper = (block[_ROW[name]] for name in ("bb_lower", "bb_middle", "bb_upper"))
    bandwidth, percent = _bollinger_derived(lower, mid, upper, close)
    block[_ROW["bb_bandwidth"]] = bandwidth
    block[_ROW["bb_percent"]] = percent


def _bollinger_derived(
    lower: np.ndarray, mid: np.ndarray, upper: np.ndarray, close: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(bandwidth, %b); zero-width bands give 0 and 0.5 (pandas-ta's own add an epsilon)."""
    width = upper - lower
    flat = width == 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flat, 0.0, width / mid), np.where(flat, 0.5, (close - lower) / width)


def _ticker_features(block: np.ndarray, rows: slice | np.ndarray, close: np.ndarray) -> None:
    """Write one ticker's time-ordered pandas-ta indicators into ``block[:, rows]``."""
    m = close.size
    c = pd.Series(close)
    for kind, names in _INDICATOR_COLUMNS.items():
        if m < _MIN_BARS[kind]:  # too short for pandas-ta: undefined for all these rows
            for name in names:
                block[_ROW[name], rows] = np.nan

    def put(name: str, values: Any, kind: str | None = None) -> None:
        arr = np.array(values, dtype="float64", copy=True)
        if kind is not None:
            arr[: _MIN_BARS[kind] - 1] = np.nan  # see _MIN_BARS: independent of later bars
        block[_ROW[name], rows] = arr

    if m >= _MIN_BARS["rsi"]:
        rsi = ta.rsi(c, length=RSI_LENGTH, talib=False).to_numpy(dtype="float64", copy=True)
        # 0/0: no movement inside the average's memory -> neutral 50, not NaN.
        rsi[np.isnan(rsi)] = 50.0
        put("rsi_14", rsi, "rsi")
    if m >= _MIN_BARS["macd"]:
        macd = ta.macd(c, fast=MACD_FAST, slow=MACD_SLOW, signal=MACD_SIGNAL, talib=False)
        # pandas-ta's column order: MACD line, histogram, signal.
        put("macd", macd.iloc[:, 0], "macd")
        put("macd_hist", macd.iloc[:, 1], "macd")
        put("macd_signal", macd.iloc[:, 2], "macd")
    for length in EMA_LENGTHS:
        name = f"ema_{length}"
        if m >= _MIN_BARS[name]:
            put(name, ta.ema(c, length=length, talib=False), name)
    if m >= _MIN_BARS["bbands"]:
        bb = ta.bbands(c, length=BB_LENGTH, lower_std=BB_STD, upper_std=BB_STD, ddof=0, talib=False)
        lower, mid, upper = (bb.iloc[:, k].to_numpy(dtype="float64") for k in range(3))
        put("bb_lower", lower, "bbands")
        put("bb_middle", mid, "bbands")
        put("bb_upper", upper, "bbands")
        bandwidth, percent = _bollinger_derived(lower, mid, upper, close)
        put("bb_bandwidth", bandwidth, "bbands")
        put("bb_percent", percent, "bbands")


def _window_features(
    block: np.ndarray,
    rows: slice | np.ndarray,
    ts_ns: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> None:
    """Write one ticker's bar-window features and as-of lag returns into ``block[:, rows]``."""
    lags_ns = np.array(LAG_MINUTES, dtype=np.int64) * _NS_PER_MINUTE
    rv, vmean, vrel, lags = _bar_window_features(
        ts_ns, np.log(close), volume, REALIZED_VOL_BARS, VOLUME_MEAN_BARS, lags_ns
    )
    block[_ROW["realized_vol_30"], rows] = rv
    block[_ROW["volume_mean_30"], rows] = vmean
    block[_ROW["volume_rel_30"], rows] = vrel
    for k, minutes in enumerate(LAG_MINUTES):
        block[_ROW[f"log_ret_{minutes}"], rows] = lags[k]


@njit(cache=True)
def _bar_window_features(
    ts_ns: np.ndarray,
    log_close: np.ndarray,
    volume: np.ndarray,
    rv_bars: int,
    volume_bars: int,
    lags_ns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Realized vol, volume mean/ratio and as-of lag returns of one ticker's sorted bars.

    Window sums are recomputed per row (not running sums), so a row's value depends on its
    own window only, bit for bit.
    """
    m = ts_ns.size
    rv = np.full(m, np.nan)
    vmean = np.full(m, np.nan)
    vrel = np.full(m, np.nan)
    for i in range(rv_bars, m):
        acc = 0.0
        for j in range(i - rv_bars + 1, i + 1):
            d = log_close[j] - log_close[j - 1]
            acc += d * d
        rv[i] = np.sqrt(acc)
    for i in range(volume_bars - 1, m):
        acc = 0.0
        for j in range(i - volume_bars + 1, i + 1):
            acc += volume[j]
        mean = acc / volume_bars
        vmean[i] = mean
        vrel[i] = 1.0 if mean == 0.0 else volume[i] / mean
    lags = np.full((lags_ns.size, m), np.nan)
    for k in range(lags_ns.size):
        p = -1  # last bar starting at or before ts - lag (as-of); -1: none yet
        for i in range(m):
            target = ts_ns[i] - lags_ns[k]
            while p + 1 < m and ts_ns[p + 1] <= target:
                p += 1
            if p >= 0:
                lags[k, i] = log_close[i] - log_close[p]
    return rv, vmean, vrel, lags


def _time_features(local_ns: np.ndarray, block: np.ndarray) -> dict[str, np.ndarray]:
    """Clock fields of New York wall-clock bar starts (ns); cyclical encodings go into
    ``block``."""
    local_min = local_ns // _NS_PER_MINUTE
    minute_of_day = local_min % 1440
    minute_of_hour = minute_of_day % 60
    minute_of_session = minute_of_day - SESSION_OPEN_MINUTE
    day_of_week = (local_min // 1440 + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    # Lookup tables: a few hundred sin/cos values instead of one per row.
    hour_angle = 2 * np.pi * np.arange(60) / 60.0
    # Half a turn per session: the open and the close get distinct codes (a full turn would
    # make 15:59 look like 09:30), and the sine traces the intraday U-shape.
    day_angle = np.pi * (np.arange(1440) - SESSION_OPEN_MINUTE) / SESSION_MINUTES
    week_angle = 2 * np.pi * np.arange(7) / 5.0  # trading week: Friday wraps to Monday
    for name, angle, index in (
        ("minute_of_hour", hour_angle, minute_of_hour),
        ("minute_of_session", day_angle, minute_of_day),
        ("day_of_week", week_angle, day_of_week),
    ):
        np.take(np.sin(angle), index, out=block[_ROW[f"{name}_sin"]])
        np.take(np.cos(angle), index, out=block[_ROW[f"{name}_cos"]])
    return {
        "minute_of_hour": minute_of_hour,
        "hour_of_day": minute_of_day // 60,
        "day_of_week": day_of_week,
        "minute_of_session": minute_of_session,
    }
