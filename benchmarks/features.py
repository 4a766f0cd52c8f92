"""``create_features`` vs the bare pandas-ta calls for the same indicators, in one process.

20 tickers × 60 sessions of synthetic 1-minute bars (``SyntheticMarket``; a seeded random walk
if that module is unavailable). The baseline is only the pandas-ta calls (rsi 14, macd 12/26/9,
ema 12, ema 26, bbands 20/2 with ddof=0, all ``talib=False``) on each ticker's close, already
split per ticker outside the timer; the full feature set adds validation, sorting, the scale-free
forms, rolling volatility/volume, lag returns and New York time fields. Best of ``REPEATS``
runs each. Prints both timings and the ratio (goal ≤ 2×); exit status 1 if the goal is missed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandas_ta as ta

from quant_assets.features.indicators import create_features
from quant_assets.market import calendar

N_TICKERS, N_SESSIONS, REPEATS, GOAL = 20, 60, 5, 2.0
TICKERS = tuple(f"T{k:02d}" for k in range(N_TICKERS))


def benchmark_bars() -> tuple[pd.DataFrame, str]:
    """20 × 60 sessions of bars, and which generator made them."""
    days = calendar.sessions("2026-01-02", "2026-06-30")[:N_SESSIONS]
    start, end = calendar.session_bounds(days[0])[0], calendar.session_bounds(days[-1])[1]
    try:
        from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
    except ImportError:
        return random_walk_bars(calendar.trading_minutes(start, end)), "seeded random walk"
    market = SyntheticMarket(
        SyntheticConfig(tickers=TICKERS, start=str(days[0].date()), end=str(days[-1].date()))
    )
    bars = pd.concat([market.get_bars(t, start, end) for t in TICKERS], ignore_index=True)
    return bars, "SyntheticMarket"


def random_walk_bars(minutes: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for ticker in TICKERS:
        ts = minutes[rng.random(len(minutes)) < 0.99]
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(ts))))
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "ts": ts,
                    "open": close,
                    "high": close * 1.0005,
                    "low": close * 0.9995,
                    "close": close,
                    "volume": rng.integers(1, 10_000, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def bare_pandas_ta(closes: list[pd.Series]) -> None:
    for c in closes:
        ta.rsi(c, length=14, talib=False)
        ta.macd(c, fast=12, slow=26, signal=9, talib=False)
        ta.ema(c, length=12, talib=False)
        ta.ema(c, length=26, talib=False)
        ta.bbands(c, length=20, lower_std=2.0, upper_std=2.0, ddof=0, talib=False)


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    fn()  # warm caches / imports outside the timing
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    bars, source = benchmark_bars()
    closes = [g["close"].reset_index(drop=True) for _, g in bars.groupby("ticker", sort=False)]
    print(
        f"bars: {len(bars):,} ({bars['ticker'].nunique()} tickers × {N_SESSIONS} sessions, "
        f"{source})"
    )
    t_bare = best_of(lambda: bare_pandas_ta(closes))
    t_full = best_of(lambda: create_features(bars))
    ratio = t_full / t_bare
    print(f"bare pandas-ta calls : {t_bare * 1e3:8.1f} ms")
    print(f"create_features      : {t_full * 1e3:8.1f} ms")
    print(
        f"ratio                : {ratio:8.2f}x  (goal <= {GOAL:.0f}x: "
        f"{'met' if ratio <= GOAL else 'MISSED'})"
    )
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
