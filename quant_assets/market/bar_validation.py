"""Bar validation: a bad frame is refused with a clear error, bad rows are quarantined and counted.

Frame-level faults (missing columns, wrong dtypes, tz-naive timestamps, an unexpected empty
frame) raise ``BarValidationError``: nothing of such a frame is stored. Row-level faults move the
row to the quarantine with its reason; only clean rows go on to storage.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, PRICE_COLUMNS, as_bar_dtypes

QUARANTINE_COLUMNS: tuple[str, ...] = (*BAR_COLUMNS, "reason")


class BarValidationError(ValueError):
    """The frame as a whole is not a bar frame; nothing of it may be stored."""


@dataclass(frozen=True)
class ValidatedBars:
    """Clean bars ready to store, and the quarantined rows with a ``reason`` column."""

    clean: pd.DataFrame
    quarantined: pd.DataFrame

    @property
    def reason_counts(self) -> dict[str, int]:
        """How many rows were quarantined for each reason."""
        return {str(k): int(v) for k, v in self.quarantined["reason"].value_counts().items()}


def validate_bars(
    bars: pd.DataFrame, tickers: Collection[str], allow_empty: bool = False
) -> ValidatedBars:
    """Check a raw bar frame; see the module docstring for what is refused and quarantined.

    Row reasons, first failing wins: unknown_ticker, non_finite_price, non_positive_price,
    high_below_low, open_outside_range, close_outside_range, bad_volume, not_minute_aligned,
    outside_session, duplicate (rows sharing a (ticker, ts) with different values; exact
    repeats keep one copy).
    """
    _check_frame(bars, allow_empty)
    frame = bars.loc[:, list(BAR_COLUMNS)].copy()
    frame["ticker"] = frame["ticker"].astype("string")
    frame = frame.drop_duplicates(keep="first").reset_index(drop=True)
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(mask: pd.Series | np.ndarray, name: str) -> None:
        reason[pd.Series(mask, index=frame.index).fillna(True) & reason.isna()] = name

    prices = frame[list(PRICE_COLUMNS)].astype("float64")
    flag(~frame["ticker"].isin(list(tickers)), "unknown_ticker")
    flag(~np.isfinite(prices).all(axis=1), "non_finite_price")
    flag((prices <= 0).any(axis=1), "non_positive_price")
    flag(prices["high"] < prices["low"], "high_below_low")
    flag((prices["open"] < prices["low"]) | (prices["open"] > prices["high"]), "open_outside_range")
    flag(
        (prices["close"] < prices["low"]) | (prices["close"] > prices["high"]),
        "close_outside_range",
    )
    volume = pd.to_numeric(frame["volume"], errors="coerce").astype("float64")
    flag(~np.isfinite(volume) | (volume < 0) | (volume != np.floor(volume)), "bad_volume")
    flag(frame["ts"] != frame["ts"].dt.floor("min"), "not_minute_aligned")
    flag(~calendar.in_regular_session(frame["ts"]), "outside_session")
    flag(frame.duplicated(["ticker", "ts"], keep=False), "duplicate")

    bad = reason.notna()
    quarantined = frame[bad].assign(reason=reason[bad]).reset_index(drop=True)
    clean = as_bar_dtypes(frame[~bad]).sort_values(["ticker", "ts"], ignore_index=True)
    return ValidatedBars(clean=clean, quarantined=quarantined)


def _check_frame(bars: pd.DataFrame, allow_empty: bool) -> None:
    if not isinstance(bars, pd.DataFrame):
        raise BarValidationError(f"expected a DataFrame, got {type(bars).__name__}")
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise BarValidationError(f"bar frame lacks columns {missing}")
    if bars.empty and not allow_empty:
        raise BarValidationError("bar frame is empty where bars were expected")
    if not isinstance(bars["ts"].dtype, pd.DatetimeTZDtype):
        raise BarValidationError(
            f"ts must be tz-aware datetimes (UTC bar starts), got dtype {bars['ts'].dtype}"
        )
    for col in (*PRICE_COLUMNS, "volume"):
        if not pd.api.types.is_numeric_dtype(bars[col]) or pd.api.types.is_bool_dtype(bars[col]):
            raise BarValidationError(f"column {col} must be numeric, got dtype {bars[col].dtype}")
