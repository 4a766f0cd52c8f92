"""NYSE trading calendar: sessions and their regular-hours minutes (exchange-calendars).

Conventions used across the project:
- a *session* is a tz-naive midnight ``pd.Timestamp`` naming the trading day (New York date);
- a *minute* is the tz-aware UTC start of a one-minute bar ("left" side, as yfinance labels bars),
  so a full session has ``SESSION_MINUTES`` = 390 minutes 09:30..15:59 New York and an early
  close 210;
- the *session minute* of a timestamp is its New York clock time in minutes after the 09:30 open.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

import exchange_calendars as xcals
import numpy as np
import pandas as pd

EXCHANGE = "XNYS"
MARKET_TZ = "America/New_York"

DateLike = str | date | pd.Timestamp
SESSION_OPEN_MINUTE = 9 * 60 + 30  # 09:30 New York, in minutes after midnight
# Pre- and post-market trading on a session day, New York time.
EXTENDED_OPEN = pd.Timedelta(hours=4)
EXTENDED_CLOSE = pd.Timedelta(hours=20)
SESSION_MINUTES = 390  # a full regular session
TRADING_DAYS_PER_YEAR = 252  # sessions in a year, for annualizing daily figures
EMPTY_MINUTES = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="ts")


@cache
def exchange_calendar() -> xcals.ExchangeCalendar:
    """The NYSE calendar (built once per process; it is immutable)."""
    return xcals.get_calendar(EXCHANGE)


def to_session_label(day: DateLike) -> pd.Timestamp:
    """Normalize a date-like value to the tz-naive midnight label exchange-calendars uses."""
    ts = pd.Timestamp(day)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(MARKET_TZ).tz_localize(None)
    return ts.normalize()


def is_session(day: DateLike) -> bool:
    """True when the New York date is a trading session (not a weekend or holiday)."""
    return bool(exchange_calendar().is_session(to_session_label(day)))


def sessions(start: DateLike, end: DateLike) -> pd.DatetimeIndex:
    """Trading sessions between two dates, both inclusive."""
    return exchange_calendar().sessions_in_range(to_session_label(start), to_session_label(end))


def session_minutes(day: DateLike) -> pd.DatetimeIndex:
    """UTC start of every regular-hours minute of a session; empty for a non-session day."""
    label = to_session_label(day)
    if not is_session(label):
        return EMPTY_MINUTES.copy()
    return exchange_calendar().session_minutes(label).rename("ts")


def session_bounds(day: DateLike) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(open, close) of a session in UTC; close is exclusive (the end of the last bar)."""
    label = to_session_label(day)
    cal = exchange_calendar()
    return cal.session_open(label), cal.session_close(label)


def trading_minutes(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """UTC bar-start minutes of regular sessions in the half-open range [start, end)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end <= start:
        return EMPTY_MINUTES.copy()
    minutes = exchange_calendar().minutes_in_range(start, end - pd.Timedelta(minutes=1))
    return minutes.rename("ts")


def session_of(ts: pd.Timestamp) -> pd.Timestamp:
    """The New York calendar date of a UTC timestamp, as a session label (may be a non-session)."""
    return to_session_label(pd.Timestamp(ts).tz_convert(MARKET_TZ))


def next_open(ts: pd.Timestamp) -> pd.Timestamp:
    """The first regular-session open strictly after ``ts`` (UTC)."""
    return exchange_calendar().next_open(pd.Timestamp(ts))


def is_open(ts: pd.Timestamp) -> bool:
    """True when ``ts`` falls inside a regular session's minutes."""
    return bool(exchange_calendar().is_trading_minute(pd.Timestamp(ts).floor("min")))


def regular_session_mask(ts: pd.DatetimeIndex) -> np.ndarray:
    """Whether each tz-aware timestamp falls inside a regular session (open <= ts < close).

    The vectorized form of ``in_regular_session`` for large inputs (one binary search per
    timestamp, not a pass per day); NaT and times outside the calendar's range are False.
    """
    cal = exchange_calendar()
    ns = ts.tz_convert("UTC").as_unit("ns").asi8
    session = np.searchsorted(cal.opens_nanos, ns, side="right") - 1
    inside = ns < cal.closes_nanos[np.maximum(session, 0)]
    return (session >= 0) & inside & ~ts.isna()


def session_labels(ts: pd.Series) -> pd.Series:
    """The New York date (as a session label) of each UTC timestamp in a Series."""
    return ts.dt.tz_convert(MARKET_TZ).dt.normalize().dt.tz_localize(None).astype("datetime64[ns]")


def in_calendar_range(ts: pd.Series) -> pd.Series:
    """Whether each tz-aware timestamp's New York date lies in the calendar's range (NaT: no)."""
    cal = exchange_calendar()
    days = session_labels(ts.dt.tz_convert("UTC"))
    return days.notna() & (days >= cal.first_session) & (days <= cal.last_session)


def in_regular_session(ts: pd.Series) -> pd.Series:
    """Whether each tz-aware timestamp falls inside a regular session (open <= ts < close).

    NaT and dates outside the calendar's range are not in a session.
    """
    return pd.Series(regular_session_mask(pd.DatetimeIndex(ts)), index=ts.index, dtype=bool)


def in_extended_hours(ts: pd.Series) -> pd.Series:
    """Whether each tz-aware timestamp falls in a session day's pre- or post-market hours
    (04:00 … 20:00 New York, outside the regular session)."""
    local = pd.DatetimeIndex(ts).tz_convert(MARKET_TZ)
    day = local.normalize().tz_localize(None)
    on_session_day = day.isin(exchange_calendar().sessions)
    clock = local - local.normalize()
    within = (clock >= EXTENDED_OPEN) & (clock < EXTENDED_CLOSE)
    extended = on_session_day & within & ~regular_session_mask(pd.DatetimeIndex(ts))
    return pd.Series(np.asarray(extended, dtype=bool), index=ts.index)


def session_before(day: DateLike, count: int) -> pd.Timestamp:
    """The session ``count`` sessions before ``day`` (``day`` itself may be a non-session)."""
    cal = exchange_calendar()
    anchor = cal.date_to_session(to_session_label(day), direction="previous")
    return cal.sessions_window(anchor, -(count + 1))[0]


def span_of_days(first: DateLike, last: DateLike) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC [start, end) covering the New York calendar days first … last (whole days)."""
    start = to_session_label(first).tz_localize(MARKET_TZ).tz_convert("UTC")
    end = (to_session_label(last) + pd.Timedelta(days=1)).tz_localize(MARKET_TZ).tz_convert("UTC")
    return start, end


def next_session(day: DateLike) -> pd.Timestamp:
    """The first session strictly after ``day``."""
    return exchange_calendar().date_to_session(
        to_session_label(day) + pd.Timedelta(days=1), direction="next"
    )


def utc_index(ts: Any) -> pd.DatetimeIndex:
    """A UTC DatetimeIndex of timestamps (tz-naive values are taken as UTC)."""
    idx = pd.DatetimeIndex(ts)
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")


def session_minute(ts: Any) -> np.ndarray:
    """Minutes since 09:30 New York of tz-aware (or UTC-naive) timestamps; < 0 before the open."""
    idx = utc_index(ts).tz_convert(MARKET_TZ)
    return np.asarray(idx.hour * 60 + idx.minute, dtype=np.int64) - SESSION_OPEN_MINUTE
