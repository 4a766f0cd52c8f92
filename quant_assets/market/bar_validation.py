"""Bar validation: a bad frame is refused with a clear error, bad rows are quarantined and counted.

Frame-level faults (not a DataFrame, missing or duplicated columns, non-numeric prices or
volumes, timestamps that are not tz-aware datetimes, an unexpected empty frame) raise
``BarValidationError``: nothing of such a frame is stored. Everything else is judged row by row:
a bad row moves to the quarantine with its reason, and only clean rows go on to storage, so
``len(clean) + len(quarantined) == len(bars)`` less the exact repeats (an identical row sent
twice is one bar; the copy is dropped).

Row reasons, the first failing one wins (``ROW_REASONS``):

* ``missing_ticker`` / ``bad_ticker`` (longer than ``MAX_TICKER_CHARS`` or with characters a
  partition key refuses) / ``unknown_ticker`` (not in the tickers asked for);
* ``missing_ts`` (NaT), ``not_minute_aligned``;
* ``non_finite_price``, ``non_positive_price``, ``high_below_low``, ``open_outside_range``,
  ``close_outside_range``; ``bad_volume`` (NaN, negative, fractional, or above 2^53, where a
  float no longer holds an integer exactly);
* ``outside_calendar`` (a date the exchange calendar does not cover), ``outside_request`` (a
  session other than the ones asked for), ``extended_hours`` (pre- or post-market minutes of a
  session: real trades, but not regular-session bars), ``outside_session`` (a weekend, a
  holiday, the night);
* ``duplicate``: good rows sharing a (ticker, ts) with different values (all of them are kept in
  the quarantine; none is stored, since there is no telling which is right). A copy that fails
  another check does not make the good row a duplicate.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, PRICE_COLUMNS, as_bar_dtypes

QUARANTINE_COLUMNS: tuple[str, ...] = (*BAR_COLUMNS, "reason")
MAX_TICKER_CHARS = 32
MAX_VOLUME = 2.0**53
# Rows that are real data outside the regular session rather than faults.
NOT_FAULTS: tuple[str, ...] = ("extended_hours",)
ROW_REASONS: tuple[str, ...] = (
    "missing_ticker",
    "bad_ticker",
    "unknown_ticker",
    "missing_ts",
    "not_minute_aligned",
    "non_finite_price",
    "non_positive_price",
    "high_below_low",
    "open_outside_range",
    "close_outside_range",
    "bad_volume",
    "outside_calendar",
    "outside_request",
    "extended_hours",
    "outside_session",
    "duplicate",
)
# Characters a static partition key refuses (and white space).
_BAD_TICKER = r"[|\[\], \t\n]"


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

    @property
    def fault_counts(self) -> dict[str, int]:
        """``reason_counts`` without the rows that are not faults (extended hours)."""
        return {k: v for k, v in self.reason_counts.items() if k not in NOT_FAULTS}


def validate_bars(
    bars: pd.DataFrame,
    tickers: Collection[str],
    allow_empty: bool = False,
    sessions: Collection[pd.Timestamp] | None = None,
) -> ValidatedBars:
    """Check a raw bar frame; see the module docstring for what is refused and quarantined.

    ``sessions``: when given, rows of any other session are quarantined as ``outside_request``.
    """
    _check_frame(bars, allow_empty)
    frame = bars.loc[:, list(BAR_COLUMNS)].copy()
    frame["ticker"] = frame["ticker"].astype("string")
    frame = frame.drop_duplicates(keep="first").reset_index(drop=True)
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(mask: pd.Series | np.ndarray, name: str) -> None:
        mask = pd.Series(mask, index=frame.index).fillna(True).astype(bool)
        reason[mask & reason.isna()] = name

    ticker = frame["ticker"]
    flag(ticker.isna(), "missing_ticker")
    flag(ticker.str.len().gt(MAX_TICKER_CHARS) | ticker.str.contains(_BAD_TICKER), "bad_ticker")
    flag(~ticker.isin(list(tickers)), "unknown_ticker")
    ts = frame["ts"]
    flag(ts.isna(), "missing_ts")
    flag(ts != ts.dt.floor("min"), "not_minute_aligned")
    prices = frame[list(PRICE_COLUMNS)].astype("float64")
    flag(~np.isfinite(prices).all(axis=1), "non_finite_price")
    flag((prices <= 0).any(axis=1), "non_positive_price")
    flag(prices["high"] < prices["low"], "high_below_low")
    flag((prices["open"] < prices["low"]) | (prices["open"] > prices["high"]), "open_outside_range")
    flag(
        (prices["close"] < prices["low"]) | (prices["close"] > prices["high"]),
        "close_outside_range",
    )
    volume = pd.to_numeric(frame["volume"], errors="coerce").astype("float64")
    flag(
        ~np.isfinite(volume) | (volume < 0) | (volume != np.floor(volume)) | (volume > MAX_VOLUME),
        "bad_volume",
    )
    _flag_times(ts, reason, sessions)
    # Conflicts among rows that are otherwise good: a bad copy does not cost the good one.
    good = reason.isna()
    flag(
        good & frame[good].duplicated(["ticker", "ts"], keep=False).reindex(frame.index),
        "duplicate",
    )

    bad = reason.notna()
    quarantined = frame[bad].assign(reason=reason[bad]).reset_index(drop=True)
    clean = as_bar_dtypes(frame[~bad]).sort_values(["ticker", "ts"], ignore_index=True)
    return ValidatedBars(clean=clean, quarantined=quarantined)


def _flag_times(
    ts: pd.Series, reason: pd.Series, sessions: Collection[pd.Timestamp] | None
) -> None:
    """Calendar reasons for the rows without a reason yet (NaT never reaches the calendar)."""
    todo = reason.isna()
    if not todo.any():
        return
    when = ts[todo].dt.tz_convert("UTC")
    covered = calendar.in_calendar_range(when)
    days = calendar.session_labels(when.where(covered))
    place = pd.Series("outside_calendar", index=when.index, dtype="string")
    inside = covered.copy()
    if sessions is not None:
        wanted = {calendar.to_session_label(d) for d in sessions}
        off = covered & ~days.isin(list(wanted))
        place[off] = "outside_request"
        inside &= ~off
    regular = calendar.in_regular_session(when.where(inside))
    extended = calendar.in_extended_hours(when.where(inside & ~regular))
    place[inside & regular] = pd.NA
    place[inside & ~regular & extended] = "extended_hours"
    place[inside & ~regular & ~extended] = "outside_session"
    reason[place.index] = reason[place.index].fillna(place)


def _check_frame(bars: object, allow_empty: bool) -> None:
    if not isinstance(bars, pd.DataFrame):
        raise BarValidationError(f"expected a DataFrame, got {type(bars).__name__}")
    duplicated = sorted({str(c) for c in bars.columns[bars.columns.duplicated()]})
    if duplicated:
        raise BarValidationError(f"bar frame has duplicated columns {duplicated}")
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
