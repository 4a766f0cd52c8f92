"""Bar frames for the storage tests."""

from __future__ import annotations

import pandas as pd

DAY_OPEN = pd.Timestamp("2026-09-01 13:30", tz="UTC")


def bars(ticker: str = "AAPL", n: int = 5, price: float = 100.0) -> pd.DataFrame:
    ts = pd.date_range(DAY_OPEN, periods=n, freq="min")
    close = price + pd.Series(range(n), dtype="float64") * 0.1
    return pd.DataFrame(
        {
            "ticker": ticker,
            "ts": ts,
            "open": close - 0.05,
            "high": close + 0.1,
            "low": close - 0.1,
            "close": close,
            "volume": pd.Series(range(n), dtype="int64") * 100 + 1000,
        }
    )
