"""The normalized frames every market source returns and every consumer accepts."""

from __future__ import annotations

from typing import Literal

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


def as_bar_dtypes(bars: pd.DataFrame) -> pd.DataFrame:
    """Return ``bars`` restricted to BAR_COLUMNS, in order, with the canonical dtypes.

    ticker: string; ts: datetime64[ns, UTC] (bar start); prices: float64; volume: int64.
    """
    out = bars.loc[:, list(BAR_COLUMNS)].copy()
    out["ticker"] = out["ticker"].astype("string")
    out["ts"] = pd.to_datetime(out["ts"], utc=True).astype("datetime64[ns, UTC]")
    for col in PRICE_COLUMNS:
        out[col] = out[col].astype("float64")
    out["volume"] = out["volume"].astype("int64")
    return out.reset_index(drop=True)


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
