"""Bars and corporate actions from a folder of files: the user's own history (``FileSource``).

Bar files
    Directly in the folder: ``<TICKER>.csv``, ``<TICKER>.csv.gz`` or ``<TICKER>.parquet`` (the
    ticker is the name without its suffix, upper-cased), or any such file with a ``ticker`` /
    ``symbol`` column naming each row's ticker (the column wins over the name, so one file may
    hold several tickers). Every such file is read and the rows of one ticker from several files
    are combined; ``corporate_actions.csv``, hidden files (``._AAPL.csv``) and other names are
    not bar files.

Columns
    Header names are matched case-insensitively (surrounding spaces ignored); the first alias
    present wins: timestamp / datetime / ts / t / window_start / ts_event / date + time (two
    columns, joined) / date / time; open / o, high / h, low / l, close / c, volume / v; ticker /
    symbol. Other columns are ignored. In CSV an empty field is missing and every other text is
    kept (a ticker ``NA`` stays a ticker). Prices and volumes that are not numbers are read as
    NaN (counted in a warning) and left to bar validation, which quarantines their rows with a
    reason; so is a non-integral volume: it is never rounded.

Timestamps
    Text (ISO 8601, or one consistent format pandas infers), datetimes (Parquet), or numbers:
    epoch seconds, milliseconds, microseconds or nanoseconds, told apart by the median magnitude
    (< 1e11 s, < 1e14 ms, < 1e17 µs, else ns), always UTC. Timestamps that state their zone (an
    offset such as ``Z`` / ``-05:00``, tz-aware Parquet, epoch) are converted; naive ones are
    wall-clock times in ``tz`` (default UTC); in a text column mixing both, the naive ones are
    taken as UTC. ``ts_label="start"`` (our contract): a row is
    stamped at its bar's start; ``"end"``: at its end, and one minute is subtracted. The served
    ``ts`` is the tz-aware UTC bar start. Rows without a readable timestamp are left out with a
    warning (they belong to no range); a file with none readable is refused.

DST rule (naive times in a zone with daylight saving)
    A wall-clock time that occurs twice (fall back) is read as its first occurrence, in daylight
    time; one that does not exist (spring forward) is read on the standard-time clock, one hour
    later on the wall clock (02:30 -> 03:30 EDT, the instant 02:30 EST names), so distinct rows
    stay distinct and in order. In the zones of ``ZONE_CANDIDATES`` such times fall early on a
    Sunday, outside any NYSE session, so bar validation quarantines the rows (outside_session):
    none is dropped and none silently moved into the session. Each file's counts are logged as
    a warning.

Wrong-zone refusal
    A file of ``ZONE_CHECK_MIN_ROWS`` rows or more is refused (``FileSourceError``) when a zone
    of ``ZONE_CANDIDATES`` leaves clearly fewer of its rows outside the regular NYSE session than
    the zone it is read in: at least ``ZONE_MARGIN`` of the rows fewer, and at most half as many.
    The message names the file, both shares and the setting to change (``QUANT_FILES_TZ=...``).
    Extended-hours rows do not trigger it: a shift by whole hours moves dense regular-session
    rows out at least as fast as it moves sparser extended rows in, so the right zone keeps the
    fewest rows outside (even with every minute 04:00-20:00 present). Row counts cannot tell the
    zone of a file with every extended minute present: such a file in a zone off by an hour or
    two is not caught. A one-minute shift (a wrong ``ts_label``) is no zone problem: it is only
    warned about, when the other label puts about one row per day more inside the session.

Serving
    The folder is listed at construction; files are read lazily and once each: a per-ticker file
    when its ticker is first asked for, the files with a ticker column at the first request for
    any ticker. Rows are cached per ticker as arrays sorted by ``ts`` (stable, so equal stamps
    keep their file order) and ``get_bars`` slices them by binary search. Every row of the files
    is served, extended hours, duplicates and bad values included: bar validation decides.

Corporate actions
    ``corporate_actions.csv`` (optional, same folder): ticker (or symbol), ex_date, action
    (``split`` | ``dividend``), value (split: new shares per old, 2-for-1 is 2; dividend: cash
    per share). An unreadable ex_date or value is served as NaT / NaN (whatever the requested
    range) so the ledger's validation refuses it with a reason; a row without a ticker or with
    another action fits neither ledger and is refused here, with its line number.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from quant_assets.market import calendar
from quant_assets.market.frames import (
    PRICE_COLUMNS,
    as_bar_dtypes,
    empty_bars,
    empty_dividends,
    empty_splits,
)
from quant_assets.market.sources import require_utc_range

log = logging.getLogger(__name__)

# The settings the lead wires to FileSource(tz=..., ts_label=...); named in error messages.
TZ_SETTING = "QUANT_FILES_TZ"
TS_LABEL_SETTING = "QUANT_FILES_TS_LABEL"
TS_LABELS: tuple[str, ...] = ("start", "end")

BAR_SUFFIXES: tuple[str, ...] = (".csv.gz", ".csv", ".parquet")
ACTIONS_FILE = "corporate_actions.csv"
SPLIT, DIVIDEND = "split", "dividend"

# Header aliases (lower-cased). A timestamp may be spread over a date and a time column.
TIMESTAMP_ALIASES: tuple[tuple[str, ...], ...] = (
    ("timestamp",), ("datetime",), ("ts",), ("t",), ("window_start",), ("ts_event",),
    ("date", "time"), ("date",), ("time",),
)  # fmt: skip
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "v"),
}
TICKER_ALIASES: tuple[str, ...] = ("ticker", "symbol")
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "ticker": TICKER_ALIASES,
    "ex_date": ("ex_date",),
    "action": ("action",),
    "value": ("value",),
}

ZONE_CANDIDATES: tuple[str, ...] = (
    "UTC", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "Europe/London",
)  # fmt: skip
ZONE_CHECK_MIN_ROWS = 100  # fewer rows (a day of after-hours trades) cannot tell a zone
ZONE_MARGIN = 0.10
EPOCH_UNITS: tuple[tuple[float, str], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))
DST_GAP = pd.Timedelta(hours=1)
MINUTE = pd.Timedelta(minutes=1)
NO_SHIFT = pd.Timedelta(0)
DAY_NS = 86_400 * 10**9
# What pandas / pyarrow raise on a file they cannot read (gzip raises zlib.error mid-stream).
READ_ERRORS = (OSError, ValueError, EOFError, zlib.error)


class FileSourceError(ValueError):
    """The folder or one of its files cannot be served; the message names the file and the fix."""


class Coverage(NamedTuple):
    """What the files hold for one ticker: first and last bar start (UTC), and the row count."""

    first: pd.Timestamp | None
    last: pd.Timestamp | None
    rows: int


@dataclass(frozen=True)
class _BarFile:
    """A bar file and its ticker column (None: every row is the ticker of the file's name)."""

    path: Path
    ticker_column: str | None

    @property
    def ticker(self) -> str:
        name = self.path.name
        return name[: -len(_bar_suffix(name) or "")].strip().upper()


@dataclass(frozen=True)
class _Series:
    """One ticker's rows as arrays sorted by ts (int64 ns UTC bar starts)."""

    ts: np.ndarray
    values: dict[str, np.ndarray]  # open, high, low, close, volume: float64 as read

    @classmethod
    def of(cls, frames: Sequence[pd.DataFrame]) -> _Series:
        """Combine row frames (ticker, ts, open..volume); equal stamps keep their file order."""
        if not frames:
            return cls(np.empty(0, dtype=np.int64), {c: np.empty(0) for c in _VALUE_COLUMNS})
        rows = pd.concat(frames, ignore_index=True)
        ts = rows["ts"].to_numpy(dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        values = {c: rows[c].to_numpy(dtype=np.float64)[order] for c in _VALUE_COLUMNS}
        return cls(ts[order], values)

    def between(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The bar frame of the rows with start <= ts < end."""
        lo, hi = np.searchsorted(self.ts, [_ns(start), _ns(end)], side="left")
        if lo == hi:
            return empty_bars()
        volume = self.values["volume"][lo:hi]
        frame = pd.DataFrame(
            {
                "ticker": pd.array([ticker] * int(hi - lo), dtype="string"),
                "ts": pd.DatetimeIndex(self.ts[lo:hi].view("datetime64[ns]")).tz_localize("UTC"),
                **{c: self.values[c][lo:hi] for c in PRICE_COLUMNS},
                "volume": volume,
            }
        )
        if np.isfinite(volume).all() and (volume == np.floor(volume)).all():
            return as_bar_dtypes(frame)
        # A missing or fractional volume stays float64: bar validation quarantines the row
        # (bad_volume) rather than the int64 cast truncating it.
        return frame


_VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")


class FileSource:
    """1-minute bars and corporate actions from a folder of CSV / Parquet files.

    The file contract, the time-zone and DST rules and the caching are in the module docstring.
    ``tickers`` (optional) limits what is served to those tickers: the other per-ticker files
    are never read and other rows of shared files are ignored.
    """

    name = "files"

    def __init__(
        self,
        folder: str | Path,
        tz: str = "UTC",
        ts_label: str = "start",
        tickers: Collection[str] | None = None,
    ) -> None:
        self.folder = _existing_folder(Path(folder))
        self.tz = _checked_zone(tz)
        self.ts_label = _checked_label(ts_label)
        self._wanted = None if tickers is None else frozenset(tickers)
        self._paths = _bar_paths(self.folder)
        self._actions_path = _actions_path(self.folder)
        self._lock = threading.Lock()  # sensors and runs may share one source across threads
        self._files: list[_BarFile] | None = None
        self._shared: dict[str, list[pd.DataFrame]] | None = None  # rows of ticker-column files
        self._shared_tickers: frozenset[str] = frozenset()
        self._series: dict[str, _Series] = {}
        self._actions: pd.DataFrame | None = None

    # --- MarketSource ---------------------------------------------------------------------------
    def get_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Every row of ``ticker`` in the files with ``start <= ts < end`` (UTC bar starts), sorted.

        Unlike the synthetic and yfinance sources, which serve regular-session rows only, this
        serves extended-hours rows (and bad rows) too: bar validation quarantines them with their
        reason, so no row of the files is lost and none is invented. A ticker without rows gives
        an empty frame. Canonical dtypes, except that volume stays float64 when the slice holds a
        missing or non-integral volume (for bar validation to quarantine, not rounded).
        """
        start, end = require_utc_range(start, end)
        return self._series_of(ticker).between(ticker, start, end)

    def get_splits(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Splits (ticker, ex_date, ratio) of ``corporate_actions.csv``, ex_date in [start, end]."""
        rows = _actions_of(self._actions_table(), ticker, SPLIT, start, end)
        return _ledger_frame(rows, "ratio", empty_splits())

    def get_dividends(
        self, ticker: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Dividends (ticker, ex_date, amount) of ``corporate_actions.csv``, in [start, end]."""
        rows = _actions_of(self._actions_table(), ticker, DIVIDEND, start, end)
        return _ledger_frame(rows, "amount", empty_dividends())

    # --- import summary -------------------------------------------------------------------------
    def tickers(self) -> tuple[str, ...]:
        """The tickers the folder has a file or rows for (within ``tickers`` if given), sorted.

        Reads the files with a ticker column (once); per-ticker files are known by their names.
        """
        with self._lock:
            named = {f.ticker for f in self._bar_files() if f.ticker_column is None}
            if self._wanted is not None:
                named &= self._wanted
            self._shared_rows()
            return tuple(sorted(named | self._shared_tickers))

    def coverage(self, ticker: str) -> Coverage:
        """First and last bar start (UTC) and the row count of ``ticker`` (reads its files once)."""
        ts = self._series_of(ticker).ts
        if len(ts) == 0:
            return Coverage(None, None, 0)
        return Coverage(pd.Timestamp(ts[0], tz="UTC"), pd.Timestamp(ts[-1], tz="UTC"), len(ts))

    # --- loading --------------------------------------------------------------------------------
    def _series_of(self, ticker: str) -> _Series:
        with self._lock:
            if ticker not in self._series:
                self._series[ticker] = _Series.of(self._frames_of(ticker))
            return self._series[ticker]

    def _frames_of(self, ticker: str) -> list[pd.DataFrame]:
        if self._wanted is not None and ticker not in self._wanted:
            return []
        named = [
            self._read(f)
            for f in self._bar_files()
            if f.ticker_column is None and f.ticker == ticker
        ]
        return named + self._shared_rows().pop(ticker, [])  # moved into the ticker's series

    def _bar_files(self) -> list[_BarFile]:
        """The bar files with their ticker columns (reads each file's header, once)."""
        if self._files is None:
            self._files = [_BarFile(p, _ticker_column(_read_columns(p))) for p in self._paths]
        return self._files

    def _shared_rows(self) -> dict[str, list[pd.DataFrame]]:
        """Rows of the files with a ticker column by ticker (all read at the first request)."""
        if self._shared is None:
            shared: dict[str, list[pd.DataFrame]] = {}
            for bar_file in self._bar_files():
                if bar_file.ticker_column is None:
                    continue
                for ticker, rows in self._read(bar_file).groupby("ticker", sort=False):
                    if self._wanted is None or ticker in self._wanted:
                        shared.setdefault(str(ticker), []).append(rows)
            self._shared, self._shared_tickers = shared, frozenset(shared)
        return self._shared

    def _read(self, bar_file: _BarFile) -> pd.DataFrame:
        column = bar_file.ticker_column
        raw = _read_table(bar_file.path, dtype=None if column is None else {column: "string"})
        rows = _bar_rows(bar_file.path, raw, self.tz, self.ts_label, bar_file.ticker)
        log.info("%s: %d rows read", bar_file.path, len(rows))
        return rows

    def _actions_table(self) -> pd.DataFrame:
        with self._lock:
            if self._actions is None:
                self._actions = _read_actions(self._actions_path)
            return self._actions


# --- the folder -----------------------------------------------------------------------------------
def _existing_folder(folder: Path) -> Path:
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileSourceError(f"market data folder {folder} {what}")
    return folder


def _bar_suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in BAR_SUFFIXES if lower.endswith(s)), None)


def _bar_paths(folder: Path) -> list[Path]:
    paths = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")  # editor locks, macOS ._ companions
        and p.name.lower() != ACTIONS_FILE
        and _bar_suffix(p.name) is not None
    )
    if not paths:
        raise FileSourceError(
            f"no bar files in {folder}: expected <TICKER>.csv, <TICKER>.csv.gz or "
            "<TICKER>.parquet (one per ticker, or files with a ticker or symbol column)"
        )
    return paths


def _actions_path(folder: Path) -> Path | None:
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() == ACTIONS_FILE), None)


def _checked_zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ValueError, KeyError) as exc:
        raise FileSourceError(
            f"unknown time zone {tz!r} ({TZ_SETTING}): use an IANA name such as "
            "America/New_York or UTC"
        ) from exc
    return tz


def _checked_label(ts_label: str) -> str:
    if ts_label not in TS_LABELS:
        raise FileSourceError(
            f"ts_label must be 'start' or 'end' ({TS_LABEL_SETTING}), not {ts_label!r}"
        )
    return ts_label


# --- reading --------------------------------------------------------------------------------------
@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except READ_ERRORS as exc:
        raise FileSourceError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from exc


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(".parquet")


def _compression(path: Path) -> str | None:
    return "gzip" if path.name.lower().endswith(".gz") else None


def _read_columns(path: Path) -> list[str]:
    """A file's column names, from its header or schema only."""
    with _reading(path):
        if _is_parquet(path):
            return list(pq.read_schema(path).names)
        return [str(c) for c in pd.read_csv(path, nrows=0, compression=_compression(path))]


def _read_table(path: Path, dtype: str | Mapping[str, str] | None = None) -> pd.DataFrame:
    """A whole CSV / Parquet file (``dtype`` applies to CSV; an empty CSV field is missing)."""
    with _reading(path):
        if _is_parquet(path):
            return pd.read_parquet(path)
        return pd.read_csv(
            path,
            dtype=dtype,
            compression=_compression(path),
            keep_default_na=False,  # a ticker NA, text "null": kept as written, not missing
            na_values=[""],
        )


def _by_name(columns: Sequence[object]) -> dict[str, str]:
    """Lower-cased, stripped header name -> the column's name (the first one wins)."""
    names: dict[str, str] = {}
    for column in columns:
        names.setdefault(str(column).strip().lower(), str(column))
    return names


def _ticker_column(columns: Sequence[object]) -> str | None:
    names = _by_name(columns)
    return next((names[a] for a in TICKER_ALIASES if a in names), None)


def _expected_bar_columns() -> str:
    stamps = " / ".join(" + ".join(a) for a in TIMESTAMP_ALIASES)
    fields = ", ".join(" / ".join(a) for a in FIELD_ALIASES.values())
    return f"{stamps}; {fields}; optionally {' / '.join(TICKER_ALIASES)}"


@dataclass(frozen=True)
class _Columns:
    """Where a bar file keeps each field."""

    ts: tuple[str, ...]  # one column, or a date and a time column
    values: dict[str, str]  # open, high, low, close, volume
    ticker: str | None


def _bar_columns(path: Path, columns: Sequence[object]) -> _Columns:
    """Match a bar file's header against the aliases, or refuse it naming what is missing."""
    names = _by_name(columns)
    stamp = next((a for a in TIMESTAMP_ALIASES if all(n in names for n in a)), None)
    values = {
        field: next(names[a] for a in aliases if a in names)
        for field, aliases in FIELD_ALIASES.items()
        if any(a in names for a in aliases)
    }
    missing = [f for f in FIELD_ALIASES if f not in values]
    if stamp is None:
        missing.insert(0, "timestamp")
    if stamp is None or missing:
        raise FileSourceError(
            f"{path}: no column for {', '.join(missing)}; found {[str(c) for c in columns]}, "
            f"expected {_expected_bar_columns()} (any case)"
        )
    return _Columns(tuple(names[n] for n in stamp), values, _ticker_column(columns))


# --- timestamps -----------------------------------------------------------------------------------
def _to_datetime(text: pd.Series, fmt: str | None) -> pd.DatetimeIndex:
    try:
        return pd.DatetimeIndex(pd.to_datetime(text, format=fmt, errors="coerce"))
    except ValueError:  # several offsets (-05:00 / -04:00 across DST): all to UTC
        return pd.DatetimeIndex(pd.to_datetime(text, format=fmt, errors="coerce", utc=True))


def _from_text(values: pd.Series) -> pd.DatetimeIndex:
    text = values.astype("string")
    parsed = _to_datetime(text, "ISO8601")
    if parsed.isna().sum() > text.notna().sum() / 2:  # not ISO 8601: one format, inferred
        inferred = _to_datetime(text, None)
        if inferred.isna().sum() < parsed.isna().sum():
            return inferred
    return parsed


def _from_epoch(values: pd.Series) -> pd.DatetimeIndex:
    numbers = pd.to_numeric(values, errors="coerce")
    finite = numbers.dropna().abs()
    magnitude = float(finite.median()) if len(finite) else 0.0
    unit = next((u for limit, u in EPOCH_UNITS if magnitude < limit), "ns")
    return pd.DatetimeIndex(pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce"))


def _stamp_values(raw: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    if len(columns) == 1:
        return raw[columns[0]]
    date, time = (raw[c].astype("string") for c in columns)
    return date + " " + time


def _wall_clock(values: pd.Series) -> tuple[pd.DatetimeIndex, bool]:
    """Timestamps as naive wall-clock times, and whether the file stated their zone.

    Stated (offsets, tz-aware datetimes, epoch numbers): the times are UTC wall-clock times.
    Otherwise they are naive, to be read in the configured zone. Unreadable ones are NaT.
    """
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        parsed = pd.DatetimeIndex(values)
    elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        parsed = _from_epoch(values)
    else:
        parsed = _from_text(values)
    if parsed.tz is None:
        return parsed.as_unit("ns"), False
    return parsed.tz_convert("UTC").tz_localize(None).as_unit("ns"), True


def _localize(wall: pd.DatetimeIndex, zone: str) -> pd.DatetimeIndex:
    """UTC instants of wall-clock times in ``zone``, by the module's DST rule."""
    first = np.ones(len(wall), dtype=bool)  # an ambiguous time: its first (daylight) occurrence
    return wall.tz_localize(zone, ambiguous=first, nonexistent=DST_GAP).tz_convert("UTC")


def _dst_counts(wall: pd.DatetimeIndex, zone: str) -> tuple[int, int]:
    """How many wall-clock times in ``zone`` are ambiguous and how many do not exist."""
    unresolved = wall.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").isna() & wall.notna()
    if not unresolved.any():
        return 0, 0
    first = np.ones(len(wall), dtype=bool)
    gaps = wall.tz_localize(zone, ambiguous=first, nonexistent="NaT").isna() & wall.notna()
    return int(unresolved.sum() - gaps.sum()), int(gaps.sum())


def _outside_share(starts: pd.DatetimeIndex) -> float:
    return 1.0 - float(calendar.regular_session_mask(starts).mean())


def _check_zone(
    path: Path,
    wall: pd.DatetimeIndex,
    starts: pd.DatetimeIndex,
    zone: str,
    shift: pd.Timedelta,
    stated: bool,
) -> None:
    """Refuse a file that another common zone puts clearly more inside the session (see above).

    ``wall``: the file's wall-clock times in ``zone``; ``starts``: the bar starts read from them.
    """
    if len(wall) < ZONE_CHECK_MIN_ROWS:
        return
    here = _outside_share(starts)
    if here < ZONE_MARGIN:
        return  # no zone can do ZONE_MARGIN better
    others = {z: _outside_share(_localize(wall, z) - shift) for z in ZONE_CANDIDATES if z != zone}
    best = min(others, key=others.__getitem__)
    there = others[best]
    if here - there < ZONE_MARGIN or there > here / 2:
        return
    head = f"{path}: {here:.0%} of its {len(wall)} rows fall outside the regular NYSE session"
    if stated:
        raise FileSourceError(
            f"{head} at the instants its timestamps state (UTC offsets or epoch), but {there:.0%} "
            f"if their UTC clock times were {best} times: the file looks like {best} times "
            f"written with a wrong offset; fix the file ({TZ_SETTING} applies to naive "
            "timestamps only)"
        )
    raise FileSourceError(
        f"{head} when its naive timestamps are read in {zone}, but {there:.0%} when read in "
        f"{best}: the file looks like {best} time; set {TZ_SETTING}={best}"
    )


def _check_label(path: Path, instants: pd.DatetimeIndex, ts_label: str) -> None:
    """Warn when the other ``ts_label`` puts about one row per day more inside the session."""
    other = "start" if ts_label == "end" else "end"
    shifts = {"start": NO_SHIFT, "end": MINUTE}

    def outside(label: str) -> int:
        return int((~calendar.regular_session_mask(instants - shifts[label])).sum())

    gain = outside(ts_label) - outside(other)
    days = len(np.unique(instants.asi8 // DAY_NS))
    if gain >= max(1.0, days / 2):
        log.warning(
            "%s: %d more rows fall inside the session when read as bar %ss: if the file "
            "stamps each bar at its %s, set %s=%s",
            path, gain, other, other, TS_LABEL_SETTING, other,
        )  # fmt: skip


def _bar_starts(
    path: Path, wall: pd.DatetimeIndex, stated: bool, tz: str, ts_label: str
) -> pd.DatetimeIndex:
    """UTC bar starts of a file's readable wall-clock times, after the zone and label checks."""
    zone = "UTC" if stated else tz
    ambiguous, nonexistent = _dst_counts(wall, zone)
    if ambiguous or nonexistent:
        log.warning(
            "%s: %d ambiguous local times (DST fall back) read as their first occurrence and %d "
            "nonexistent ones (spring forward) read one hour later; they fall outside NYSE "
            "hours, so bar validation quarantines them",
            path, ambiguous, nonexistent,
        )  # fmt: skip
    instants = _localize(wall, zone)
    shift = MINUTE if ts_label == "end" else NO_SHIFT
    starts = instants - shift
    _check_zone(path, wall, starts, zone, shift, stated)
    _check_label(path, instants, ts_label)
    return starts


# --- rows -----------------------------------------------------------------------------------------
def _numbers(path: Path, values: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    unreadable = int((numbers.isna() & values.notna()).sum())
    if unreadable:
        log.warning(
            "%s: %d values of %s are not numbers, read as missing (bar validation "
            "quarantines their rows)",
            path, unreadable, values.name,
        )  # fmt: skip
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _row_numbers(mask: np.ndarray) -> list[int]:
    """1-based data-row numbers (header not counted) of the first few True entries."""
    return (np.flatnonzero(mask)[:5] + 1).tolist()


def _readable(
    path: Path, raw: pd.DataFrame, wall: pd.DatetimeIndex, columns: _Columns
) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """The rows with a readable timestamp (the others are counted in a warning)."""
    unreadable = np.asarray(wall.isna())
    if unreadable.all() and len(raw):
        first = _stamp_values(raw, columns.ts).head(3).tolist()
        raise FileSourceError(
            f"{path}: no readable timestamp in {' + '.join(columns.ts)} (first values {first})"
        )
    if unreadable.any():
        log.warning(
            "%s: %d rows without a readable timestamp left out (data rows %s ...)",
            path, int(unreadable.sum()), _row_numbers(unreadable),
        )  # fmt: skip
    return raw[~unreadable], wall[~unreadable]


def _row_tickers(raw: pd.DataFrame, column: str | None, name: str) -> pd.Series:
    """Each row's ticker: the column's (stripped, upper-cased; blank is missing) or the name's."""
    if column is None:
        return pd.Series(name, index=raw.index, dtype="string")
    tickers = raw[column].astype("string").str.strip().str.upper()
    return tickers.mask(tickers == "")


def _bar_rows(path: Path, raw: pd.DataFrame, tz: str, ts_label: str, name: str) -> pd.DataFrame:
    """One bar file's rows: ticker, ts (int64 ns UTC bar start), open..volume (float64).

    ``name`` is the ticker of the file's name, used when the file has no ticker column.
    """
    columns = _bar_columns(path, raw.columns)
    wall, stated = _wall_clock(_stamp_values(raw, columns.ts))
    raw, wall = _readable(path, raw, wall, columns)
    starts = _bar_starts(path, wall, stated, tz, ts_label)
    rows = pd.DataFrame(
        {
            "ticker": _row_tickers(raw, columns.ticker, name).to_numpy(),
            "ts": starts.asi8,
            **{f: _numbers(path, raw[c]) for f, c in columns.values.items()},
        }
    )
    orphans = rows["ticker"].isna().to_numpy()
    if orphans.any():
        log.warning(
            "%s: %d rows without a ticker left out (data rows %s ...)",
            path, int(orphans.sum()), _row_numbers(orphans),
        )  # fmt: skip
    return rows[~orphans].reset_index(drop=True)


# --- corporate actions ----------------------------------------------------------------------------
def read_actions_file(path: Path) -> pd.DataFrame:
    """A ledger CSV (the ``corporate_actions.csv`` format) as rows: ticker (stripped,
    upper-cased; missing when blank), ex_date (session label or NaT), action (stripped,
    lower-cased), value (or NaN) and ``line`` (its line in the file). No row is refused here: the
    ledger's validation judges each one (``quant import-actions``)."""
    return _actions_rows(path, _read_table(path, dtype="string"))


def _read_actions(path: Path | None) -> pd.DataFrame:
    """The actions file's rows; none (the ledger columns only) when the folder has no file.

    A row without a ticker or with another action than split or dividend fits neither ledger
    this source serves, so the file is refused with the lines.
    """
    if path is None:
        return pd.DataFrame(
            {
                "ticker": pd.Series([], dtype="string"),
                "ex_date": pd.Series([], dtype="datetime64[ns]"),
                "action": pd.Series([], dtype="string"),
                "value": pd.Series([], dtype="float64"),
            }
        )
    rows = read_actions_file(path)
    unusable = (rows["ticker"].isna() | ~rows["action"].isin([SPLIT, DIVIDEND])).to_numpy(bool)
    if unusable.any():
        found = sorted(set(rows.loc[unusable, "action"].fillna("").tolist()))
        raise FileSourceError(
            f"{path}: lines {rows.loc[unusable, 'line'].tolist()[:10]}: every action needs a "
            f"ticker and an action 'split' or 'dividend' (found actions {found})"
        )
    return rows


def _actions_rows(path: Path, raw: pd.DataFrame) -> pd.DataFrame:
    """The actions file as rows: ticker, ex_date (session label or NaT), action, value (or NaN),
    line (1-based, the header being line 1)."""
    names = _by_name(raw.columns)
    found = {f: next((names[a] for a in aliases if a in names), None)
             for f, aliases in ACTION_FIELDS.items()}  # fmt: skip
    missing = [f for f, column in found.items() if column is None]
    if missing:
        raise FileSourceError(
            f"{path}: no column for {', '.join(missing)}; found {[str(c) for c in raw.columns]}, "
            "expected ticker (or symbol), ex_date, action (split or dividend), value (any case)"
        )
    ticker = raw[found["ticker"]].astype("string").str.strip().str.upper()
    action = raw[found["action"]].astype("string").str.strip().str.lower()
    wall, _ = _wall_clock(raw[found["ex_date"]])
    ex_date = wall.normalize().astype("datetime64[ns]")
    value = pd.Series(_numbers(path, raw[found["value"]]))
    if ex_date.isna().any():
        log.warning("%s: %d unreadable ex-dates served as NaT", path, int(ex_date.isna().sum()))
    return pd.DataFrame(
        {"ticker": ticker.mask(ticker == "").to_numpy(), "ex_date": ex_date,
         "action": action.to_numpy(), "value": value.to_numpy(),
         "line": np.arange(len(raw)) + 2}
    )  # fmt: skip


def _actions_of(
    actions: pd.DataFrame,
    ticker: str,
    action: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> pd.DataFrame:
    """One ticker's actions of one kind with ex_date in [start, end]; NaT ex-dates always kept."""
    rows = actions[(actions["ticker"] == ticker) & (actions["action"] == action)]
    ex = rows["ex_date"]
    keep = pd.Series(True, index=rows.index)
    if start is not None:
        keep &= ex >= calendar.to_session_label(start)
    if end is not None:
        keep &= ex <= calendar.to_session_label(end)
    return rows[keep | ex.isna()].sort_values("ex_date", kind="stable")


def _ledger_frame(rows: pd.DataFrame, value_name: str, empty: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return empty
    return pd.DataFrame(
        {
            "ticker": rows["ticker"].astype("string").to_numpy(),
            "ex_date": rows["ex_date"].astype("datetime64[ns]").to_numpy(),
            value_name: rows["value"].astype("float64").to_numpy(),
        }
    ).astype(empty.dtypes.to_dict())


def _ns(ts: pd.Timestamp) -> int:
    return int(ts.as_unit("ns").value)
