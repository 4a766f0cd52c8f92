"""``quant export-features``: a sample CSV of the feature table with its spec (the hand-off).

The app developer who builds on the model gets two files side by side:

* ``<name>.csv`` — the ``features`` rows of the chosen sessions and tickers, each joined with
  the total-return adjusted close of the same bar (``adjusted_bars``) and its triple-barrier
  label (``labels``) where one is stored (empty cells otherwise). ``ts`` is the UTC start of the
  1-minute bar in ISO 8601; rows are ordered by ticker, then time.
* ``<name>.spec.json`` — ``FEATURE_SPEC.to_dict()`` (the ordered model inputs, their version and
  the warm-up), a description of every CSV column, the label specs that made the labels, and
  what was exported (range, tickers, row counts).

Both are written atomically (temp file, fsync, ``os.replace``). An export whose range holds no
feature rows raises ``NoFeatureRowsError`` saying which range the table does hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, func, select

from quant_assets.features.spec import FEATURE_SPEC, FEATURE_TABLE_COLUMNS, TIME_COLUMNS
from quant_assets.market import calendar
from quant_assets.settings import Settings
from quant_assets.storage.database import to_db_timestamp, to_utc
from quant_assets.storage.files import atomic_write_bytes
from quant_assets.storage.schema import adjusted_bars, features, labels

FEATURE_COLUMNS: tuple[str, ...] = tuple(
    c for c in FEATURE_TABLE_COLUMNS if c not in ("ticker", "ts")
)
LABEL_COLUMNS: tuple[str, ...] = ("label", "label_t1", "label_ret", "label_sigma")
CSV_COLUMNS: tuple[str, ...] = (
    "ticker",
    "ts",
    "adj_close",
    *FEATURE_COLUMNS,
    "feature_version",
    *LABEL_COLUMNS,
)

_LAGS = {"log_ret_1": 1, "log_ret_5": 5, "log_ret_15": 15, "log_ret_30": 30}

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "ticker": "stock symbol",
    "ts": "UTC start of the 1-minute bar (ISO 8601); the row uses bars at or before it only",
    "adj_close": "close of the bar, total-return adjusted (splits and dividends): raw close x "
    "the cumulative adjustment factor (adjusted_bars.close)",
    "rsi_14": "RSI, 14 bars, Wilder smoothing (0-100; 50 for a window with no movement)",
    "macd": "MACD line: EMA-12 - EMA-26 of the adjusted close (price units)",
    "macd_signal": "MACD signal line: EMA-9 of the MACD line (price units)",
    "macd_hist": "MACD histogram: macd - macd_signal (price units)",
    "ema_12": "exponential moving average of the adjusted close, 12 bars",
    "ema_26": "exponential moving average of the adjusted close, 26 bars",
    "bb_lower": "lower Bollinger band: 20-bar mean - 2 population standard deviations",
    "bb_middle": "middle Bollinger band: 20-bar mean of the adjusted close",
    "bb_upper": "upper Bollinger band: 20-bar mean + 2 population standard deviations",
    "bb_bandwidth": "(bb_upper - bb_lower) / bb_middle, a fraction (0 for zero-width bands)",
    "bb_percent": "%b: (close - bb_lower) / (bb_upper - bb_lower) (0.5 for zero-width bands)",
    "realized_vol_30": "sqrt of the sum of the last 30 squared bar log returns (the overnight "
    "one included)",
    "volume_mean_30": "mean volume of the last 30 bars, this bar included (adjusted volume)",
    "volume_rel_30": "volume / volume_mean_30 (1 when the recent mean volume is 0)",
    **{
        name: f"log(close_t / last traded close at t - {k} min): the {k}-minute log return "
        "in wall-clock minutes (the overnight gap included at a session's first minutes)"
        for name, k in _LAGS.items()
    },
    "minute_of_hour": "New York minute of the hour of the bar (0-59)",
    "hour_of_day": "New York hour of the bar (9-15)",
    "day_of_week": "New York weekday of the bar (Monday = 0)",
    "minute_of_session": "minutes since the 09:30 New York open",
    "macd_rel": "macd / close (scale-free model input)",
    "macd_signal_rel": "macd_signal / close (scale-free model input)",
    "macd_hist_rel": "macd_hist / close (scale-free model input)",
    "close_ema_12_rel": "close / ema_12 - 1 (scale-free model input)",
    "close_ema_26_rel": "close / ema_26 - 1 (scale-free model input)",
    "minute_of_hour_sin": "sin(2 pi minute_of_hour / 60)",
    "minute_of_hour_cos": "cos(2 pi minute_of_hour / 60)",
    "minute_of_session_sin": "sin(2 pi minute_of_session / 780): half a turn per session",
    "minute_of_session_cos": "cos(2 pi minute_of_session / 780)",
    "day_of_week_sin": "sin(2 pi day_of_week / 5)",
    "day_of_week_cos": "cos(2 pi day_of_week / 5)",
    "warm": "true when the row had a full session (390 bars) of history: its values equal "
    "those from unlimited history; train on warm rows only",
    "feature_version": "FEATURE_SPEC.version of the code that computed the row",
    "label": "triple-barrier label: 1 up (upper barrier first), -1 down (lower barrier first, or "
    "both in one bar), 0 neither within the horizon; empty when no label is stored (the "
    "session's last bar, no volatility yet, or labels not built for the day)",
    "label_t1": "UTC start of the bar that ended the label (barrier touch or vertical barrier)",
    "label_ret": "adj close at label_t1 / adj_close - 1",
    "label_sigma": "barrier volatility used: EWM std of past in-session bar log returns x "
    "sqrt(horizon)",
}


class NoFeatureRowsError(LookupError):
    """The features table holds no row for the asked sessions and tickers."""


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds."""

    csv_path: Path
    spec_path: Path
    rows: int
    labeled_rows: int
    tickers: tuple[str, ...]
    first_ts: pd.Timestamp
    last_ts: pd.Timestamp


def parse_tickers(text: str | None) -> tuple[str, ...] | None:
    """``"aapl, MSFT"`` -> ``("AAPL", "MSFT")``; None or blank -> None (every ticker)."""
    if text is None:
        return None
    tickers = tuple(dict.fromkeys(t.strip().upper() for t in text.split(",") if t.strip()))
    return tickers or None


def read_feature_rows(
    engine: Engine, start: date | str, end: date | str, tickers: Sequence[str] | None = None
) -> pd.DataFrame:
    """Feature rows of the New York sessions ``start`` … ``end`` (inclusive) in ``CSV_COLUMNS``.

    Left-joined with the adjusted close and the stored label of the same (ticker, ts), so a row
    without a label (or, in a damaged database, without an adjusted bar) is kept with empty cells.
    """
    lo, hi = _span(start, end)
    f, a, lab = features, adjusted_bars, labels
    query = (
        select(
            f.c.ticker,
            f.c.ts,
            a.c.close.label("adj_close"),
            *(f.c[c] for c in FEATURE_COLUMNS),
            f.c.feature_version,
            lab.c.label,
            lab.c.t1.label("label_t1"),
            lab.c.ret.label("label_ret"),
            lab.c.sigma.label("label_sigma"),
            lab.c.label_spec,
        )
        .select_from(
            f.outerjoin(a, and_(a.c.ticker == f.c.ticker, a.c.ts == f.c.ts)).outerjoin(
                lab, and_(lab.c.ticker == f.c.ticker, lab.c.ts == f.c.ts)
            )
        )
        .where(f.c.ts >= to_db_timestamp(lo, engine), f.c.ts < to_db_timestamp(hi, engine))
        .order_by(f.c.ticker, f.c.ts)
    )
    if tickers:
        query = query.where(f.c.ticker.in_(list(tickers)))
    columns = [*CSV_COLUMNS, "label_spec"]
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).fetchall(), columns=columns)
    frame["ticker"] = frame["ticker"].astype("string")
    for col in ("ts", "label_t1"):
        frame[col] = (
            to_utc(frame[col].astype("object"))
            if len(frame)
            else frame[col].astype("datetime64[ns, UTC]")
        )
    frame["label"] = pd.to_numeric(frame["label"]).astype("Int8")
    for col in TIME_COLUMNS:  # whole numbers, stored as floats
        frame[col] = pd.to_numeric(frame[col]).round().astype("Int16")
    frame["warm"] = frame["warm"].astype("boolean")
    return frame


def export_features(
    engine: Engine,
    start: date | str,
    end: date | str,
    out: Path | str,
    tickers: Sequence[str] | None = None,
) -> ExportResult:
    """Write the CSV at ``out`` and its spec at ``<out stem>.spec.json``; see the module doc."""
    start_day, end_day = _day(start), _day(end)
    if end_day < start_day:
        raise ValueError(f"--end {end_day} is before --start {start_day}")
    frame = read_feature_rows(engine, start_day, end_day, tickers)
    if frame.empty:
        raise NoFeatureRowsError(_no_rows_message(engine, start_day, end_day, tickers))
    out = Path(out)
    spec_path = spec_path_for(out)
    label_specs = sorted(frame["label_spec"].dropna().unique().tolist())
    frame = frame.drop(columns="label_spec")
    csv_text = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n")
    exported = tuple(frame["ticker"].unique().tolist())
    result = ExportResult(
        csv_path=out,
        spec_path=spec_path,
        rows=len(frame),
        labeled_rows=int(frame["label"].notna().sum()),
        tickers=exported,
        first_ts=frame["ts"].min(),
        last_ts=frame["ts"].max(),
    )
    spec = spec_document(result, start_day, end_day, tickers, frame, label_specs)
    atomic_write_bytes(out, csv_text.encode())
    atomic_write_bytes(spec_path, (json.dumps(spec, indent=2) + "\n").encode())
    return result


def spec_path_for(csv_path: Path) -> Path:
    """``features.csv`` -> ``features.spec.json`` (beside it)."""
    return csv_path.with_name(csv_path.stem + ".spec.json")


def default_out_path(settings: Settings, start: date | str, end: date | str) -> Path:
    """``QUANT_HOME/exports/features_<start>_<end>.csv``."""
    return settings.exports_dir / f"features_{_day(start)}_{_day(end)}.csv"


def spec_document(
    result: ExportResult,
    start: date,
    end: date,
    tickers: Sequence[str] | None,
    frame: pd.DataFrame,
    label_specs: Sequence[str],
) -> dict[str, Any]:
    """The JSON written beside the CSV."""
    return {
        "feature_spec": FEATURE_SPEC.to_dict(),
        "columns": [
            {"name": c, "dtype": str(frame[c].dtype), "description": COLUMN_DESCRIPTIONS[c]}
            for c in CSV_COLUMNS
        ],
        "label_specs": [json.loads(s) for s in label_specs],
        "export": {
            "csv": result.csv_path.name,
            "sessions": [start.isoformat(), end.isoformat()],
            "tickers_requested": list(tickers) if tickers else "all",
            "tickers": list(result.tickers),
            "rows": result.rows,
            "labeled_rows": result.labeled_rows,
            "warm_rows": int(frame["warm"].fillna(False).sum()),
            "first_ts": _iso(result.first_ts),
            "last_ts": _iso(result.last_ts),
            "generated_at": _iso(pd.Timestamp.now(tz="UTC")),
        },
        "notes": [
            "Model inputs are feature_spec.columns, in that order; the other feature columns "
            "are the raw indicators and time fields they come from.",
            "Prices are total-return adjusted as of the export: a later split or dividend "
            "rescales past rows (the database rebuilds them; this file does not change).",
            "An empty cell is a missing value (indicator not yet defined, or no label).",
        ],
    }


def _no_rows_message(engine: Engine, start: date, end: date, tickers: Sequence[str] | None) -> str:
    who = ", ".join(tickers) if tickers else "any ticker"
    query = select(func.min(features.c.ts), func.max(features.c.ts), func.count())
    if tickers:
        query = query.where(features.c.ticker.in_(list(tickers)))
    with engine.connect() as conn:
        first, last, count = conn.execute(query).one()
    if not count:
        held = "the table holds no rows for them at all"
    else:
        lo, hi = to_utc(pd.Series([first, last]).astype("object"))
        held = (
            f"the table holds {count:,} rows for them, sessions "
            f"{calendar.session_of(lo).date()} … {calendar.session_of(hi).date()}"
        )
    return (
        f"no feature rows for {who} in the sessions {start} … {end}: {held}. "
        "Materialize `features` (and `labels`) for those partitions first, e.g. "
        "`quant demo`, or pick a range inside the stored one."
    )


def _span(start: date | str, end: date | str) -> tuple[pd.Timestamp, pd.Timestamp]:
    return calendar.span_of_days(_day(start), _day(end))


def _day(value: date | str) -> date:
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError):
        raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD)") from None


def _iso(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
