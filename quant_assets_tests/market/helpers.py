"""Builders for the file source: a market (or any bar frame) written out as a user's files.

``write_market`` writes a synthetic market's bars in a given format, layout, time stamping and
column style (and its corporate-action ledger) and returns the ``FileSource`` settings that read
them back: ``FileSource(**files.source_args())`` or ``files.source()``. ``thinned``,
``without_days``, ``cut_from`` and ``with_rows_at`` make bars look like real data first: a thin
ticker, a hole, a truncated session, extended-hours or bad rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from quant_assets.market import calendar
from quant_assets.market.calendar import MARKET_TZ
from quant_assets.market.file_source import ACTIONS_FILE, FileSource
from quant_assets.market.synthetic import SyntheticMarket

Format = Literal["csv", "csv.gz", "parquet"]
Layout = Literal["per_ticker", "multi"]
# naive UTC, naive New York, New York with offsets, epoch numbers (UTC) in a unit, or the
# frame's ts unchanged (for a test that stamps its own, e.g. naive times in another zone)
Stamps = Literal["utc", "ny", "aware", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "as_is"]
Columns = Literal["canonical", "aliases", "upper", "date_time"]

STAMP_ZONES: dict[str, str] = {"utc": "UTC", "ny": MARKET_TZ}  # what naive stamps are read in
EPOCH_NS_PER_UNIT = {"epoch_s": 10**9, "epoch_ms": 10**6, "epoch_us": 10**3, "epoch_ns": 1}
ALIASES = {"ticker": "symbol", "ts": "t", "open": "o", "high": "h", "low": "l", "close": "c",
           "volume": "v"}  # fmt: skip
MULTI_FILE = "bars"


@dataclass(frozen=True)
class MarketFiles:
    """A folder of bar files and the settings that read it back."""

    folder: Path
    tz: str
    ts_label: str

    def source_args(self) -> dict[str, object]:
        """Keyword arguments of ``FileSource`` for this folder."""
        return {"folder": self.folder, "tz": self.tz, "ts_label": self.ts_label}

    def source(self, **overrides: object) -> FileSource:
        """A ``FileSource`` on the folder (``overrides`` replace the settings)."""
        return FileSource(**{**self.source_args(), **overrides})  # type: ignore[arg-type]


def stamped(ts: pd.Series, stamps: Stamps, ts_label: str = "start") -> pd.Series:
    """UTC bar starts as a file would stamp them (the bar's end with ``ts_label="end"``)."""
    ts = ts + pd.Timedelta(minutes=1) if ts_label == "end" else ts
    if stamps == "as_is":
        return ts
    if stamps == "utc":
        return ts.dt.tz_convert("UTC").dt.tz_localize(None)
    if stamps == "ny":
        return ts.dt.tz_convert(MARKET_TZ).dt.tz_localize(None)
    if stamps == "aware":
        return ts.dt.tz_convert(MARKET_TZ)
    return ts.astype("datetime64[ns, UTC]").astype("int64") // EPOCH_NS_PER_UNIT[stamps]


def file_frame(
    bars: pd.DataFrame,
    stamps: Stamps = "utc",
    ts_label: str = "start",
    columns: Columns = "canonical",
    float_volume: bool = False,
    with_ticker: bool = True,
) -> pd.DataFrame:
    """A bar frame as a file's table: stamped, volume int or float, columns renamed."""
    frame = bars.copy()
    frame["ts"] = stamped(frame["ts"], stamps, ts_label)
    if float_volume:
        frame["volume"] = frame["volume"].astype("float64")
    if not with_ticker:
        frame = frame.drop(columns="ticker")
    if columns == "aliases":
        return frame.rename(columns=ALIASES)
    if columns == "upper":
        return frame.rename(columns=str.upper)
    if columns == "date_time":
        stamp = frame.pop("ts")
        frame.insert(0, "Time", stamp.dt.strftime("%H:%M:%S"))
        frame.insert(0, "Date", stamp.dt.strftime("%Y-%m-%d"))
    return frame


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table as CSV, gzipped CSV or Parquet, by the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)  # pandas gzips a .gz path
    return path


def write_bars(
    bars: pd.DataFrame,
    folder: Path,
    fmt: Format = "csv",
    layout: Layout = "per_ticker",
    **style: object,
) -> list[Path]:
    """Write bars as one file per ticker (no ticker column) or one multi-ticker file."""
    if layout == "multi":
        return [write_table(file_frame(bars, **style), folder / f"{MULTI_FILE}.{fmt}")]  # type: ignore[arg-type]
    return [
        write_table(file_frame(rows, with_ticker=False, **style), folder / f"{ticker}.{fmt}")  # type: ignore[arg-type]
        for ticker, rows in bars.groupby("ticker", sort=True)
    ]


def market_bars(
    market: SyntheticMarket, tickers: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """The market's bars of several tickers in [start, end), concatenated."""
    frames = [market.get_bars(t, start, end) for t in tickers]
    return pd.concat(frames, ignore_index=True)


def write_corporate_actions(market: SyntheticMarket, folder: Path, tickers: Sequence[str]) -> Path:
    """The market's split and dividend ledgers as ``corporate_actions.csv``."""
    rows = []
    for ticker in tickers:
        for kind, ledger, column in (
            ("split", market.get_splits(ticker), "ratio"),
            ("dividend", market.get_dividends(ticker), "amount"),
        ):
            rows += [
                {"ticker": ticker, "ex_date": d.date().isoformat(), "action": kind, "value": v}
                for d, v in zip(ledger["ex_date"], ledger[column], strict=True)
            ]
    frame = pd.DataFrame(rows, columns=["ticker", "ex_date", "action", "value"])
    return write_table(frame, folder / ACTIONS_FILE)


def write_market(
    market: SyntheticMarket,
    folder: Path,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    tickers: Sequence[str] | None = None,
    fmt: Format = "csv",
    layout: Layout = "per_ticker",
    stamps: Stamps = "utc",
    ts_label: str = "start",
    columns: Columns = "canonical",
    float_volume: bool = False,
    actions: bool = True,
) -> MarketFiles:
    """Write the market's bars in [start, end) (and its ledgers) as a user's folder of files."""
    tickers = list(tickers or market.tickers)
    bars = market_bars(market, tickers, start, end)
    write_bars(
        bars, folder, fmt, layout,
        stamps=stamps, ts_label=ts_label, columns=columns, float_volume=float_volume,
    )  # fmt: skip
    if actions:
        write_corporate_actions(market, folder, tickers)
    return MarketFiles(folder, STAMP_ZONES.get(stamps, "UTC"), ts_label)


def _days(bars: pd.DataFrame) -> pd.Series:
    return calendar.session_labels(bars["ts"])


def thinned(bars: pd.DataFrame, ticker: str, keep: float, seed: int = 0) -> pd.DataFrame:
    """``bars`` with a random ``keep`` share of ``ticker``'s rows kept (a thin ticker)."""
    rng = np.random.default_rng(seed)
    drop = (bars["ticker"] == ticker).to_numpy() & (rng.random(len(bars)) >= keep)
    return bars[~drop].reset_index(drop=True)


def without_days(bars: pd.DataFrame, ticker: str, days: Sequence[str]) -> pd.DataFrame:
    """``bars`` without ``ticker``'s rows on the New York ``days`` (a hole)."""
    drop = (bars["ticker"] == ticker) & _days(bars).isin(pd.DatetimeIndex(days))
    return bars[~drop].reset_index(drop=True)


def cut_from(bars: pd.DataFrame, ticker: str, day: str, hhmm: str) -> pd.DataFrame:
    """``bars`` without ``ticker``'s rows of ``day`` from ``hhmm`` New York on (truncated)."""
    cut = pd.Timestamp(f"{day} {hhmm}", tz=MARKET_TZ)
    drop = (bars["ticker"] == ticker) & (_days(bars) == pd.Timestamp(day)) & (bars["ts"] >= cut)
    return bars[~drop].reset_index(drop=True)


def with_rows_at(
    bars: pd.DataFrame, ticker: str, times: Sequence[str], **values: float
) -> pd.DataFrame:
    """``bars`` plus rows of ``ticker`` at New York ``times`` (e.g. pre-market), valued like its
    first row except for ``values`` (e.g. ``high=0.5`` for a bad row); sorted."""
    template = bars[bars["ticker"] == ticker].iloc[[0] * len(times)].copy()
    template["ts"] = [pd.Timestamp(t, tz=MARKET_TZ).tz_convert("UTC") for t in times]
    for column, value in values.items():
        template[column] = value
    out = pd.concat([bars, template], ignore_index=True)
    return out.sort_values(["ticker", "ts"], kind="stable", ignore_index=True)


MESSY_TICKERS: tuple[str, ...] = ("AAPL", "MSFT", "NVDA")
MESSY_DAYS: tuple[str, str] = ("2026-03-02", "2026-03-13")


def messy_bars(market: SyntheticMarket) -> pd.DataFrame:
    """Two weeks (``MESSY_DAYS``) of ``MESSY_TICKERS`` as real data looks: NVDA thin (a quarter
    of its minutes), MSFT with a two-session hole (03-05, 03-06) and a session cut at 13:00
    (03-10), AAPL with two extended-hours rows and one bad row (a stamp not on the minute)."""
    bars = market_bars(market, MESSY_TICKERS, *calendar.span_of_days(*MESSY_DAYS))
    bars = thinned(bars, "NVDA", 0.25)
    bars = without_days(bars, "MSFT", ["2026-03-05", "2026-03-06"])
    bars = cut_from(bars, "MSFT", "2026-03-10", "13:00")
    bars = with_rows_at(bars, "AAPL", ["2026-03-02 08:00", "2026-03-03 16:30"])
    return with_rows_at(bars, "AAPL", ["2026-03-04 11:00:30"])
