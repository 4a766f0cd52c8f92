"""The corporate-action ledger: its frames, their validation, and the ``corporate_actions`` table.

Ledger intake (``fetch_corporate_actions`` / ``record_corporate_actions``)
    Keyed on (ticker, ex_date, action): fetching the same action twice stores it once (an
    identical row is not rewritten, ``fetched_at`` keeps the first fetch); a revised value
    replaces the row and clears ``processed_at``. Refused with a reason, nothing stored: an
    unknown ticker or action type, a missing ex-date, a ratio/amount ≤ 0 or not finite, a
    dividend ≥ the stored close before its ex-date, conflicting duplicates. Deferred (logged,
    not stored, fetched again later): actions dated after today (New York date).

Rows are keyed on ``LEDGER_KEY``; ``describe_action`` gives the human form used in logs and
metadata ("split 2:1 ex 2026-05-28").
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine, bindparam, select

from quant_assets.market import calendar
from quant_assets.market.sources import MarketSource
from quant_assets.storage.database import get_engine, to_db_timestamp, to_utc, write_to_db
from quant_assets.storage.schema import corporate_actions, price_data

log = logging.getLogger(__name__)

SPLIT = "split"
DIVIDEND = "dividend"
ACTIONS: tuple[str, ...] = (SPLIT, DIVIDEND)
LEDGER_KEY: tuple[str, ...] = ("ticker", "ex_date", "action")
LEDGER_COLUMNS: tuple[str, ...] = (*LEDGER_KEY, "value", "source", "fetched_at", "processed_at")
REL_TOL_SAME_VALUE = 1e-12


class CorporateActionError(ValueError):
    """A corporate-action input that cannot be used (bad frame, duplicate keys, bad argument)."""


# --- ledger frames -----------------------------------------------------------------------------
def empty_ledger() -> pd.DataFrame:
    """A ledger frame with no rows (ticker, ex_date session label, action, value)."""
    return pd.DataFrame(
        {
            "ticker": pd.Series([], dtype="string"),
            "ex_date": pd.Series([], dtype="datetime64[ns]"),
            "action": pd.Series([], dtype="string"),
            "value": pd.Series([], dtype="float64"),
        }
    )


def normalize_ledger(actions: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes: ticker/action strings, ex_date tz-naive midnight, value float64.

    Extra columns (source, fetched_at, processed_at, reason) are kept.
    """
    missing = [c for c in ("ticker", "ex_date", "action", "value") if c not in actions.columns]
    if missing:
        raise CorporateActionError(f"ledger frame lacks columns {missing}")
    out = actions.copy()
    out["ticker"] = out["ticker"].astype("string")
    out["action"] = out["action"].astype("string")
    ex = pd.to_datetime(out["ex_date"])
    if isinstance(ex.dtype, pd.DatetimeTZDtype):
        ex = ex.dt.tz_convert(calendar.MARKET_TZ).dt.tz_localize(None)
    out["ex_date"] = ex.dt.normalize().astype("datetime64[ns]")
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    return out.reset_index(drop=True)


def ledger_from_source(
    splits: pd.DataFrame, dividends: pd.DataFrame, source: str, fetched_at: pd.Timestamp
) -> pd.DataFrame:
    """Turn a source's split (ratio) and dividend (amount) ledgers into ledger rows."""
    parts = []
    if len(splits):
        parts.append(
            splits.rename(columns={"ratio": "value"})[["ticker", "ex_date", "value"]].assign(
                action=SPLIT
            )
        )
    if len(dividends):
        parts.append(
            dividends.rename(columns={"amount": "value"})[["ticker", "ex_date", "value"]].assign(
                action=DIVIDEND
            )
        )
    frame = normalize_ledger(pd.concat(parts, ignore_index=True)) if parts else empty_ledger()
    frame["source"] = pd.Series([source] * len(frame), dtype="string")
    frame["fetched_at"] = pd.Series([fetched_at] * len(frame), dtype="datetime64[ns, UTC]")
    return frame


def describe_action(ex_date: pd.Timestamp, action: str, value: float) -> str:
    """Human form: ``split 2:1 ex 2026-05-28`` / ``dividend 0.84 ex 2026-03-03``."""
    day = pd.Timestamp(ex_date).date().isoformat()
    if action == SPLIT:
        return f"split {value:g}:1 ex {day}"
    return f"{action} {value:.6g} ex {day}"


@dataclass(frozen=True)
class LedgerCheck:
    """Ledger rows split into usable (``clean``), refused (``rejected``, with ``reason``) and
    dated in the future (``deferred``, with ``reason``)."""

    clean: pd.DataFrame
    rejected: pd.DataFrame
    deferred: pd.DataFrame


def validate_actions(
    actions: pd.DataFrame, universe: Collection[str], today: pd.Timestamp | None = None
) -> LedgerCheck:
    """Check ledger rows that do not need price data (see the module docstring)."""
    frame = normalize_ledger(actions)
    today = calendar.to_session_label(today if today is not None else _today())
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(mask: pd.Series, why: str | pd.Series) -> None:
        nonlocal reason
        mask = mask.fillna(True).astype(bool) & reason.isna()
        reason = reason.mask(mask, why)

    value = frame["value"]
    flag(~frame["action"].isin(ACTIONS), "unknown action type (split or dividend)")
    flag(~frame["ticker"].isin(list(universe)), "unknown ticker (not in the universe)")
    flag(frame["ex_date"].isna(), "no ex-date")
    finite = pd.Series(np.isfinite(value.to_numpy()), index=frame.index)
    flag((frame["action"] == SPLIT) & ~(finite & (value > 0)), "split ratio must be > 0")
    flag((frame["action"] == DIVIDEND) & ~(finite & (value > 0)), "dividend must be > 0")
    key = list(LEDGER_KEY)
    dup = frame.duplicated(key, keep=False)
    conflicting = dup & ~frame.duplicated([*key, "value"], keep=False)
    flag(conflicting, "conflicting duplicate rows for one (ticker, ex_date, action)")
    rejected = frame[reason.notna()].assign(reason=reason[reason.notna()])
    ok = frame[reason.isna()].drop_duplicates(key)
    future = ok["ex_date"] > today
    deferred = ok[future].assign(reason=f"dated in the future (after {today.date()})")
    return LedgerCheck(
        clean=ok[~future].reset_index(drop=True),
        rejected=rejected.reset_index(drop=True),
        deferred=deferred.reset_index(drop=True),
    )


# --- database: the ledger -----------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerUpdate:
    """What one intake stored: new and revised rows, unchanged ones, refused and deferred."""

    new: pd.DataFrame
    revised: pd.DataFrame
    unchanged: int
    rejected: pd.DataFrame
    deferred: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)


def read_corporate_actions(engine: Engine, tickers: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored ledger (``LEDGER_COLUMNS``), sorted by ticker, ex_date, action."""
    table = corporate_actions
    query = select(*(table.c[c] for c in LEDGER_COLUMNS))
    if tickers is not None:
        query = query.where(table.c.ticker.in_(list(tickers)))
    query = query.order_by(table.c.ticker, table.c.ex_date, table.c.action)
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).fetchall(), columns=list(LEDGER_COLUMNS))
    if frame.empty:
        out = empty_ledger()
        out["source"] = pd.Series([], dtype="string")
        out["fetched_at"] = pd.Series([], dtype="datetime64[ns, UTC]")
        out["processed_at"] = pd.Series([], dtype="datetime64[ns, UTC]")
        return out
    frame = normalize_ledger(frame)
    frame["source"] = frame["source"].astype("string")
    frame["fetched_at"] = to_utc(frame["fetched_at"])
    frame["processed_at"] = to_utc(frame["processed_at"])
    return frame


def record_corporate_actions(
    actions: pd.DataFrame,
    engine: Engine,
    universe: Collection[str],
    *,
    today: pd.Timestamp | None = None,
    source: str = "manual",
    now: pd.Timestamp | None = None,
) -> LedgerUpdate:
    """Validate ledger rows and store the usable ones (new or revised); see the module docstring.

    Invalid rows are refused with a reason and logged: nothing of them is stored.
    """
    now = pd.Timestamp(now if now is not None else _now())
    frame = normalize_ledger(actions)
    if "source" not in frame.columns:
        frame["source"] = source
    if "fetched_at" not in frame.columns:
        frame["fetched_at"] = now
    frame["fetched_at"] = pd.to_datetime(frame["fetched_at"], utc=True)
    check = validate_actions(frame, universe, today)
    clean, rejected = _refuse_dividends_above_close(engine, check.clean, check.rejected)
    for r in rejected.itertuples():
        log.warning(
            "refused corporate action %s %s: %s",
            r.ticker, describe_action(r.ex_date, r.action, r.value), r.reason,
        )  # fmt: skip
    for r in check.deferred.itertuples():
        log.info(
            "deferred corporate action %s %s: %s",
            r.ticker, describe_action(r.ex_date, r.action, r.value), r.reason,
        )  # fmt: skip
    stored = read_corporate_actions(engine, sorted(set(clean["ticker"])) if len(clean) else [])
    merged = clean.merge(
        stored[[*LEDGER_KEY, "value"]], on=list(LEDGER_KEY), how="left", suffixes=("", "_stored")
    )
    known = merged["value_stored"].notna()
    same = known & np.isclose(
        merged["value"], merged["value_stored"], rtol=REL_TOL_SAME_VALUE, atol=0.0
    )
    new = merged[~known].drop(columns="value_stored").reset_index(drop=True)
    revised = merged[known & ~same].drop(columns="value_stored").reset_index(drop=True)
    to_write = pd.concat([new, revised], ignore_index=True)
    if len(to_write):
        out = to_write[["ticker", "ex_date", "action", "value", "source", "fetched_at"]].copy()
        out["ex_date"] = [d.date() for d in out["ex_date"]]
        out["processed_at"] = pd.Series([None] * len(out), dtype="object")
        write_to_db(out, corporate_actions.name, engine)
    for r in revised.itertuples():
        log.warning(
            "revised corporate action %s %s",
            r.ticker,
            describe_action(r.ex_date, r.action, r.value),
        )
    for r in new.itertuples():
        log.info(
            "new corporate action %s %s", r.ticker, describe_action(r.ex_date, r.action, r.value)
        )
    return LedgerUpdate(new, revised, int(same.sum()), rejected, check.deferred)


def _refuse_dividends_above_close(
    engine: Engine, clean: pd.DataFrame, rejected: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move dividends ≥ the stored close before their ex-date to ``rejected``."""
    if clean.empty:
        return clean, rejected
    bad = pd.Series(False, index=clean.index)
    reasons = pd.Series("", index=clean.index, dtype="string")
    for ticker, group in clean[clean["action"] == DIVIDEND].groupby("ticker"):
        closes = stored_prior_closes(engine, str(ticker), group["ex_date"])
        for idx, r in group.iterrows():
            close = closes.get(pd.Timestamp(r["ex_date"]))
            if close is not None and r["value"] >= close:
                bad[idx] = True
                reasons[idx] = f"dividend {r['value']:g} ≥ prior close {close:g}"
    if not bad.any():
        return clean, rejected
    refused = clean[bad].assign(reason=reasons[bad])
    return (
        clean[~bad].reset_index(drop=True),
        pd.concat([rejected, refused], ignore_index=True),
    )


def fetch_corporate_actions(
    tickers: Sequence[str],
    source: MarketSource,
    engine: Engine | None = None,
    *,
    universe: Collection[str] | None = None,
    today: pd.Timestamp | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> LedgerUpdate:
    """Fetch splits and cash dividends of ``tickers`` from the source into the ledger.

    The plan's function: run daily before the open. It asks for the whole history (or
    [start, end]) rather than only the upcoming day, so a missed day loses nothing; what is
    already stored is not stored again. A ticker outside ``universe`` (default: ``tickers``) is
    refused without asking the source; a source error for one ticker is recorded in ``errors``
    and the others go on.
    """
    engine = engine or get_engine()
    universe = list(universe) if universe is not None else list(tickers)
    fetched_at = _now()
    frames = []
    errors: dict[str, str] = {}
    unknown = []
    for ticker in tickers:
        if ticker not in universe:
            unknown.append(ticker)
            continue
        try:
            splits = source.get_splits(ticker, start, end)
            dividends = source.get_dividends(ticker, start, end)
        except Exception as exc:  # one ticker's failure must not lose the others' actions
            errors[ticker] = f"{type(exc).__name__}: {exc}"
            log.error("corporate actions of %s not fetched: %s", ticker, errors[ticker])
            continue
        frames.append(ledger_from_source(splits, dividends, source.name, fetched_at))
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else ledger_from_source(pd.DataFrame(), pd.DataFrame(), source.name, fetched_at)
    )
    result = record_corporate_actions(frame, engine, universe, today=today, now=fetched_at)
    for ticker in unknown:
        errors[ticker] = "unknown ticker (not in the universe); not fetched"
        log.warning("corporate actions of %s not fetched: unknown ticker", ticker)
    return LedgerUpdate(
        result.new, result.revised, result.unchanged, result.rejected, result.deferred, errors
    )


def stored_prior_closes(
    engine: Engine, ticker: str, ex_dates: Iterable[pd.Timestamp]
) -> dict[pd.Timestamp, float]:
    """Ex-date → raw close of the last stored bar before it (one indexed query per ex-date)."""
    out: dict[pd.Timestamp, float] = {}
    labels = sorted({calendar.to_session_label(d) for d in ex_dates})
    if not labels:
        return out
    query = (
        select(price_data.c.close)
        .where(price_data.c.ticker == ticker, price_data.c.ts < bindparam("cut"))
        .order_by(price_data.c.ts.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        for label in labels:
            cut = to_db_timestamp(calendar.span_of_days(label, label)[0], engine)
            close = conn.execute(query, {"cut": cut}).scalar()
            if close is not None:
                out[label] = float(close)
    return out


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _today() -> pd.Timestamp:
    return calendar.to_session_label(pd.Timestamp.now(tz=calendar.MARKET_TZ))
