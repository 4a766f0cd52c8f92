"""What each ticker's bars cover, session by session: holes and truncated sessions (pure core).

The input is a *session summary*: one row per ticker × session (``summarize_sessions``), with
the number of bars and the first and last bar start — zero bars where the session had none.

* A **hole** is a run of consecutive sessions without a bar of the ticker. One longer than
  ``MAX_GAP_SESSIONS`` breaks the ticker's series: features restart after it (``features``),
  so no window or warm-up spans it.
* A session is **truncated** when its bars start more than ``TRUNCATED_MINUTES`` after the open
  or stop more than that before the close (early closes included): a cut in the data rather
  than a quiet spell. At the thinnest real ticker's 16 % of minutes traded, an hour without a
  trade has probability 0.84^60 ≈ 3e-5.
* A session is **incomplete** (``incomplete_sessions``) when it has fewer than
  ``RELATIVE_COMPLETENESS`` × the ticker's own typical share of minutes — or, as an option,
  fewer than a fixed share of the session's minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.market import calendar

MAX_GAP_SESSIONS = 5  # a trading week: longer holes (delistings, data outages) break the series
TRUNCATED_MINUTES = 60
RELATIVE_COMPLETENESS = 0.5  # of a ticker's typical share of minutes: below it, incomplete
SUMMARY_COLUMNS: tuple[str, ...] = ("ticker", "session", "bars", "first_ts", "last_ts")
_MINUTE = pd.Timedelta(minutes=1)


@dataclass(frozen=True)
class Hole:
    """Consecutive sessions first … last (inclusive) without a bar of ``ticker``."""

    ticker: str
    first: pd.Timestamp
    last: pd.Timestamp
    sessions: int

    @property
    def breaks_series(self) -> bool:
        """Longer than ``MAX_GAP_SESSIONS``: the ticker's features start afresh after it."""
        return self.sessions > MAX_GAP_SESSIONS

    def describe(self) -> str:
        span = f"{self.first.date()}" if self.sessions == 1 else f"{self.first.date()}…"
        span += "" if self.sessions == 1 else f"{self.last.date()}"
        return f"{span} ({self.sessions} session{'s' if self.sessions > 1 else ''})"


@dataclass(frozen=True)
class TickerCoverage:
    """One ticker's coverage of the sessions summarized."""

    ticker: str
    sessions: int  # sessions summarized
    sessions_with_bars: int
    bars: int
    minute_share: float  # bars / session minutes over the sessions with bars (NaN: none)
    holes: tuple[Hole, ...]
    truncated: tuple[pd.Timestamp, ...]

    @property
    def series_breaks(self) -> tuple[Hole, ...]:
        """The holes that restart the ticker's features."""
        return tuple(h for h in self.holes if h.breaks_series)

    def describe(self) -> str:
        """One line for logs, ``quant status`` and import summaries."""
        share = "no bars" if np.isnan(self.minute_share) else f"{self.minute_share:.0%} of minutes"
        parts = [f"{self.ticker}: {self.sessions_with_bars}/{self.sessions} sessions, {share}"]
        if self.holes:
            parts.append("holes " + ", ".join(h.describe() for h in self.holes[:3]))
            if len(self.holes) > 3:
                parts[-1] += f" and {len(self.holes) - 3} more"
        if self.truncated:
            days = ", ".join(str(d.date()) for d in self.truncated[:3])
            more = f" and {len(self.truncated) - 3} more" if len(self.truncated) > 3 else ""
            parts.append(f"truncated {days}{more}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for asset metadata."""
        share = None if np.isnan(self.minute_share) else round(float(self.minute_share), 4)
        return {
            "sessions": self.sessions,
            "sessions_with_bars": self.sessions_with_bars,
            "bars": self.bars,
            "minute_share": share,
            "holes": [h.describe() for h in self.holes],
            "series_breaks": len(self.series_breaks),
            "truncated": [str(d.date()) for d in self.truncated],
        }


def summarize_sessions(
    bars: pd.DataFrame, tickers: Sequence[str], days: Sequence[pd.Timestamp]
) -> pd.DataFrame:
    """``SUMMARY_COLUMNS`` of regular-session bars (ticker, ts) for every ticker × session day
    (days that are not sessions are left out; a ticker without bars gets zero rows' counts)."""
    sessions = sorted({calendar.to_session_label(d) for d in days if calendar.is_session(d)})
    grid = pd.MultiIndex.from_product([list(tickers), sessions], names=["ticker", "session"])
    if len(bars):
        frame = pd.DataFrame(
            {"ticker": bars["ticker"].astype(str), "session": calendar.session_labels(bars["ts"])}
        ).assign(ts=pd.to_datetime(bars["ts"], utc=True).to_numpy())
        stats = frame.groupby(["ticker", "session"])["ts"].agg(["size", "min", "max"])
        stats.columns = ["bars", "first_ts", "last_ts"]
    else:
        stats = pd.DataFrame(columns=["bars", "first_ts", "last_ts"])
    out = stats.reindex(grid).reset_index()
    out["bars"] = out["bars"].fillna(0).astype("int64")
    for col in ("first_ts", "last_ts"):
        out[col] = pd.to_datetime(out[col], utc=True)
    return out[list(SUMMARY_COLUMNS)]


def ticker_coverage(summary: pd.DataFrame) -> list[TickerCoverage]:
    """The coverage of each ticker of a session summary, in ticker order."""
    return [
        _one_ticker(str(ticker), group.sort_values("session"))
        for ticker, group in summary.groupby("ticker", sort=True)
    ]


def _one_ticker(ticker: str, group: pd.DataFrame) -> TickerCoverage:
    days = pd.DatetimeIndex(group["session"])
    count = group["bars"].to_numpy(dtype="int64")
    traded = count > 0
    minutes = np.array([len(calendar.session_minutes(d)) for d in days[traded]])
    share = count[traded].sum() / minutes.sum() if minutes.size else np.nan
    return TickerCoverage(
        ticker=ticker,
        sessions=len(days),
        sessions_with_bars=int(traded.sum()),
        bars=int(count.sum()),
        minute_share=float(share),
        holes=_holes(ticker, days, traded),
        truncated=_truncated(days[traded], group[traded]),
    )


def _holes(ticker: str, days: pd.DatetimeIndex, traded: np.ndarray) -> tuple[Hole, ...]:
    edges = np.diff(np.r_[0, (~traded).astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return tuple(
        Hole(ticker, days[a], days[b - 1], int(b - a))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    )


def _truncated(days: pd.DatetimeIndex, traded: pd.DataFrame) -> tuple[pd.Timestamp, ...]:
    limit = pd.Timedelta(minutes=TRUNCATED_MINUTES)
    out = []
    for day, first, last in zip(days, traded["first_ts"], traded["last_ts"], strict=True):
        open_, close = calendar.session_bounds(day)
        if first - open_ > limit or close - (last + _MINUTE) > limit:
            out.append(pd.Timestamp(day))
    return tuple(out)


def session_shares(summary: pd.DataFrame) -> pd.Series:
    """Bars / session minutes of each row of a session summary."""
    minutes = [len(calendar.session_minutes(d)) for d in summary["session"]]
    return summary["bars"].astype("float64") / np.asarray(minutes, dtype="float64")


def typical_share(summary: pd.DataFrame) -> pd.Series:
    """Each ticker's typical share of session minutes with a bar: the median over its sessions
    with bars (tickers without any bar are left out)."""
    traded = summary[summary["bars"] > 0]
    return session_shares(traded).groupby(traded["ticker"]).median()


def incomplete_sessions(
    summary: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    floor: float | None = None,
) -> pd.DataFrame:
    """The sessions of ``summary`` with too few bars: ticker, session, share, expected.

    With ``floor``: a share of the session minutes below it (the fixed rule; suits liquid
    tickers only — a thin one trades in 16–35 % of the minutes). Without: below
    ``RELATIVE_COMPLETENESS`` × the ticker's own typical share, the median over its sessions with
    bars in ``reference`` (earlier sessions) and ``summary``; a ticker with no bars anywhere is
    incomplete everywhere.
    """
    share = session_shares(summary)
    if floor is not None:
        expected = pd.Series(float(floor), index=summary.index)
    else:
        known = pd.concat([reference, summary]) if reference is not None else summary
        typical = typical_share(known.reset_index(drop=True))
        expected = summary["ticker"].map(typical).astype("float64") * RELATIVE_COMPLETENESS
    flagged = (share < expected) | expected.isna()
    out = summary.loc[flagged, ["ticker", "session"]].assign(
        share=share[flagged], expected=expected[flagged]
    )
    return out.reset_index(drop=True)
