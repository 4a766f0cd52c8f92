"""The normalized frames every market source returns and every consumer accepts."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

# Adjusted prices: for splits and cash dividends (what the models use), or for splits only.
AdjustmentKind = Literal["total_return", "split_only"]

BAR_COLUMNS: tuple[str, ...] = ("ticker", "ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
SPLIT_COLUMNS: tuple[str, ...] = ("ticker", "ex_date", "ratio")
DIVIDEND_COLUMNS: tuple[str, ...] = ("ticker", "ex_date", "amount")


def empty_bars() -> pd.DataFrame:
    """A bar frame with no rows and the canonical dtypes."""
    return pd.DataFrame(
        {
            "ticker": pd.Series([], dtype="string"),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            **{c: pd.Series([], dtype="float64") for c in PRICE_COLUMNS},
            "volume": pd.Series([], dtype="int64"),
        }
    )


def newest_positions(codes: np.ndarray, ts_ns: np.ndarray, n: int) -> np.ndarray:
    """Positions of each ticker's newest ``n`` rows (all of a ticker with fewer), in (ticker,
    ts) order; ``codes`` is the ticker as an integer per row, ``ts_ns`` its time."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.intp)
    order = np.lexsort((ts_ns, codes))
    by_ticker = codes[order]
    first = np.r_[True, by_ticker[1:] != by_ticker[:-1]]
    ends = np.r_[np.flatnonzero(first)[1:], len(order)]  # one past each ticker's last row
    from_end = ends[np.cumsum(first) - 1] - np.arange(len(order))  # 1 at the newest row
    return order[from_end <= n]


def as_bar_dtypes(bars: pd.DataFrame) -> pd.DataFrame:
    """Return ``bars`` restricted to BAR_COLUMNS, in order, with the canonical dtypes.

    ticker: string; ts: datetime64[ns, UTC] (bar start); prices: float64; volume: int64.
    Refuses (ValueError) what a cast would silently change: naive timestamps (in which zone?)
    and volumes that are not whole numbers an int64 holds exactly (|v| ≤ 2^53).
    """
    out = bars.loc[:, list(BAR_COLUMNS)].copy()
    out["ticker"] = out["ticker"].astype("string")
    out["ts"] = _utc_bar_starts(out["ts"])
    for col in PRICE_COLUMNS:
        out[col] = out[col].astype("float64")
    volume = out["volume"].to_numpy(dtype="float64")
    if not (np.isfinite(volume) & (volume == np.floor(volume)) & (np.abs(volume) <= 2.0**53)).all():
        raise ValueError("bar volumes must be whole numbers of at most 2^53")
    out["volume"] = volume.astype("int64")
    return out.reset_index(drop=True)


def _utc_bar_starts(values: pd.Series) -> pd.Series:
    if values.empty:
        return pd.Series([], index=values.index, dtype="datetime64[ns, UTC]")
    ts = pd.to_datetime(values)
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError("bar timestamps are naive: say their zone (tz_localize) first")
    return ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def empty_splits() -> pd.DataFrame:
    """A split ledger with no rows: ticker, ex_date (session label), ratio (new shares per old)."""
    return pd.DataFrame(
        {
            "ticker": pd.Series([], dtype="string"),
            "ex_date": pd.Series([], dtype="datetime64[ns]"),
            "ratio": pd.Series([], dtype="float64"),
        }
    )


def empty_dividends() -> pd.DataFrame:
    """A dividend ledger with no rows: ticker, ex_date (session label), amount (cash per share)."""
    return pd.DataFrame(
        {
            "ticker": pd.Series([], dtype="string"),
            "ex_date": pd.Series([], dtype="datetime64[ns]"),
            "amount": pd.Series([], dtype="float64"),
        }
    )
