"""Corporate actions (the seed's ``corporate_action_handler.py``): ledger, adjusted bars.

One change of design against the seed: raw bars (``price_data``) are never overwritten. The
adjusted bars (``adjusted_bars``) are *rebuilt* as ``raw × cumulative factor``, the factors
computed from the ledger (``corporate_actions``) as of the build, so applying the same action
twice is impossible by construction; "processed" marks (``processed_at``) only record which
actions a build included.

Conventions (CRSP / Yahoo; STACK_NOTES.md "Market conventions")
    split r:1 (``value`` = r new shares per old share) with ex-date d:
        prices of every bar before d × 1/r, volumes × r;
    cash dividend D with ex-date d:
        prices of every bar before d × (1 − D / C), C = the raw close of the last stored bar
        before d (its session's close as traded); volumes unchanged;
    factors compose multiplicatively: the factor of a bar in session s is the product of the
    factors of the applied actions with ex-date > s. Bars on or after the last ex-date keep
    their raw prices. D and C are taken in the same (pre-ex-date) share units; should a split
    and a dividend ever share an ex-date, the ledger must state D per pre-split share.

Two adjusted series are kept
    * **total return** (``open/high/low/close``, ``price_factor``): splits *and* dividends.
      **This is the series the models and features use.** A dividend makes the price drop at the
      ex-date open by about D although the holder lost nothing (the cash is paid out); on the
      split-only series that drop looks like a market move, a negative return no model can or
      should predict, and it biases returns, volatility and labels around every ex-date. The
      total-return series is the value of one share with its dividends reinvested, whose
      returns are the returns an investor earns.
    * **split only** (``split_close``, ``split_factor``): prices in today's share units as they
      were quoted (no dividend correction), for display and for comparison with quoted prices.
    Adjusted volume = raw volume × the ratios of the later splits (a float, exact for integer
    ratios), the same for both series.

Which actions a build applies (the *plan*), as of ``as_of`` = the last stored raw session
    * split ratio ≤ 0 or not finite, dividend ≤ 0, an unknown action type: skipped (invalid);
    * ex-date after ``as_of``: skipped (pending: no bar on or after it yet; applying it would
      adjust history for an event the data has not reached, a lookahead);
    * no stored bar before the ex-date: skipped ("before any data": nothing to adjust, and a
      dividend has no C);
    * dividend D ≥ C: skipped (it would make the factor ≤ 0);
    every skip is logged with its reason and changes nothing. The applied actions and their
    factors form the plan's *fingerprint*, stored per ticker in ``adjusted_bars_state``.

Rebuild (``rebuild_ticker`` / ``rebuild_adjusted_bars``)
    When a ticker's fingerprint differs from the one its adjusted bars were built with (a new or
    revised action, an action that became effective, a changed C) every stored session of that
    ticker is rebuilt in **one transaction**: delete the ticker's adjusted rows, insert the new
    ones, record the new state and the ``processed_at`` marks. An exception anywhere inside rolls
    everything back and leaves the previous adjusted rows intact; the next run completes it.
    Otherwise only the sessions asked for are (re)written, also in one transaction.

Ledger intake (``fetch_corporate_actions`` / ``record_corporate_actions``)
    Keyed on (ticker, ex_date, action): fetching the same action twice stores it once (an
    identical row is not rewritten, ``fetched_at`` keeps the first fetch); a revised value
    replaces the row and clears ``processed_at``. Refused with a reason, nothing stored: an
    unknown ticker or action type, a missing ex-date, a ratio/amount ≤ 0 or not finite, a
    dividend ≥ the stored close before its ex-date, conflicting duplicates. Deferred (logged,
    not stored, fetched again later): actions dated after today (New York date).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from quant_assets.market import calendar
from quant_assets.market.frames import BAR_COLUMNS, PRICE_COLUMNS
from quant_assets.market.sources import MarketSource
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import (
    get_engine,
    insert_frame,
    to_db_timestamp,
    to_utc,
    write_to_db,
)
from quant_assets.storage.schema import adjusted_bars, adjusted_bars_state, corporate_actions

log = logging.getLogger(__name__)

SPLIT = "split"
DIVIDEND = "dividend"
ACTIONS: tuple[str, ...] = (SPLIT, DIVIDEND)
LEDGER_KEY: tuple[str, ...] = ("ticker", "ex_date", "action")
LEDGER_COLUMNS: tuple[str, ...] = (*LEDGER_KEY, "value", "source", "fetched_at", "processed_at")
ADJUSTED_COLUMNS: tuple[str, ...] = (
    "ticker", "ts", "session", "open", "high", "low", "close", "volume", "split_close",
    "price_factor", "split_factor", "volume_factor", "built_at",
)  # fmt: skip

# The "no unexplained jump" check: a session-open log return of adjusted closes is flagged when
# it exceeds both JUMP_K robust standard deviations of that ticker's session-open returns and
# MIN_JUMP_LOG (a 5:4 split is log 1.25 = 0.22; 2:1 is 0.69). Overnight returns, not all
# one-minute returns, set the scale: overnight gaps are ~10× a typical minute's move.
JUMP_K = 10.0
MIN_JUMP_LOG = 0.2
MIN_SCALE_RETURNS = 10  # fewer session-open returns than this: only MIN_JUMP_LOG applies
MAD_TO_SD = 1.4826

INSERT_CHUNK_ROWS = 50_000
REL_TOL_SAME_VALUE = 1e-12

BuildMode = Literal["full", "sessions", "unchanged", "empty"]
AdjustmentKind = Literal["total_return", "split_only"]


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


# --- the plan: which actions apply, with which factors -----------------------------------------
_APPLIED_COLUMNS = (
    "ex_date", "action", "value", "reference_close", "price_factor", "split_factor",
    "volume_factor",
)  # fmt: skip


@dataclass(frozen=True)
class AdjustmentPlan:
    """The actions one build applies (with their factors) and those it skips (with a reason)."""

    ticker: str
    as_of: pd.Timestamp | None
    applied: pd.DataFrame  # _APPLIED_COLUMNS, sorted by (ex_date, action)
    skipped: pd.DataFrame  # ex_date, action, value, reason

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the applied actions and their exact factors (hex floats)."""
        return hashlib.sha256(applied_to_json(self.applied).encode()).hexdigest()

    def pending(self) -> pd.DataFrame:
        """Skipped because the data has not reached the ex-date yet."""
        return self.skipped[self.skipped["reason"].str.startswith("pending")]


def _empty_applied() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype="float64") for c in _APPLIED_COLUMNS})
    frame["ex_date"] = frame["ex_date"].astype("datetime64[ns]")
    frame["action"] = frame["action"].astype("string")
    return frame


def applied_to_json(applied: pd.DataFrame) -> str:
    """Exact, order-canonical JSON of applied actions (floats as hex)."""
    rows = [
        [
            pd.Timestamp(r.ex_date).date().isoformat(),
            str(r.action),
            float(r.value).hex(),
            float(r.reference_close).hex() if not math.isnan(r.reference_close) else None,
            float(r.price_factor).hex(),
            float(r.split_factor).hex(),
            float(r.volume_factor).hex(),
        ]
        for r in applied.sort_values(["ex_date", "action"]).itertuples()
    ]
    return json.dumps(rows, separators=(",", ":"))


def applied_from_json(text: str) -> pd.DataFrame:
    """Inverse of ``applied_to_json``."""
    rows = json.loads(text)
    if not rows:
        return _empty_applied()
    out = pd.DataFrame(
        {
            "ex_date": pd.to_datetime([r[0] for r in rows]).astype("datetime64[ns]"),
            "action": pd.array([r[1] for r in rows], dtype="string"),
            "value": [float.fromhex(r[2]) for r in rows],
            "reference_close": [float.fromhex(r[3]) if r[3] else math.nan for r in rows],
            "price_factor": [float.fromhex(r[4]) for r in rows],
            "split_factor": [float.fromhex(r[5]) for r in rows],
            "volume_factor": [float.fromhex(r[6]) for r in rows],
        }
    )
    return out


def plan_adjustment(
    ticker: str,
    actions: pd.DataFrame,
    as_of: pd.Timestamp | None,
    prior_close: Mapping[pd.Timestamp, float],
) -> AdjustmentPlan:
    """Decide which of a ticker's ledger rows apply and with which factor (pure).

    ``as_of``: the last session with stored raw data (None: no data). ``prior_close``: ex-date →
    raw close of the last stored bar before it; an ex-date absent from it has no bar before it.
    """
    frame = normalize_ledger(actions) if len(actions) else empty_ledger()
    frame = frame[frame["ticker"] == ticker]
    if frame.duplicated(list(LEDGER_KEY)).any():
        raise CorporateActionError(f"{ticker}: duplicate (ex_date, action) rows in the ledger")
    as_of = None if as_of is None else calendar.to_session_label(as_of)
    applied: list[dict[str, object]] = []
    skipped: list[dict[str, object]] = []
    for row in frame.sort_values(["ex_date", "action"]).itertuples():
        ex, action, value = pd.Timestamp(row.ex_date), str(row.action), float(row.value)
        close = prior_close.get(ex)
        why: str | None = None
        if action not in ACTIONS:
            why = f"unknown action type {action!r}"
        elif not (math.isfinite(value) and value > 0):
            why = "split ratio must be > 0" if action == SPLIT else "dividend must be > 0"
        elif as_of is None:
            why = "before any data: no raw bars stored"
        elif ex > as_of:
            why = f"pending: ex-date after the last stored session {as_of.date()}"
        elif close is None:
            why = "before any data: no stored bar before the ex-date"
        elif action == DIVIDEND and value >= close:
            why = f"dividend {value:g} ≥ prior close {close:g}"
        if why is not None:
            skipped.append({"ex_date": ex, "action": action, "value": value, "reason": why})
            continue
        if action == SPLIT:
            price, split, volume = 1.0 / value, 1.0 / value, value
        else:
            price, split, volume = 1.0 - value / close, 1.0, 1.0
        applied.append(
            {
                "ex_date": ex, "action": action, "value": value,
                "reference_close": float(close) if action == DIVIDEND else math.nan,
                "price_factor": price, "split_factor": split, "volume_factor": volume,
            }
        )  # fmt: skip
    applied_frame = pd.DataFrame(applied, columns=list(_APPLIED_COLUMNS)) if applied else None
    if applied_frame is None:
        applied_frame = _empty_applied()
    else:
        applied_frame["ex_date"] = applied_frame["ex_date"].astype("datetime64[ns]")
        applied_frame["action"] = applied_frame["action"].astype("string")
    skipped_frame = pd.DataFrame(skipped, columns=["ex_date", "action", "value", "reason"])
    skipped_frame["ex_date"] = skipped_frame["ex_date"].astype("datetime64[ns]")
    return AdjustmentPlan(ticker, as_of, applied_frame, skipped_frame)


def prior_closes(bars: pd.DataFrame, ex_dates: Iterable[pd.Timestamp]) -> dict[pd.Timestamp, float]:
    """Ex-date → raw close of the last bar before that session (absent: no bar before it)."""
    if bars.empty:
        return {}
    ordered = bars.sort_values("ts")
    ts = ordered["ts"].dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]")
    close = ordered["close"].to_numpy(dtype="float64")
    out: dict[pd.Timestamp, float] = {}
    for ex in ex_dates:
        label = calendar.to_session_label(ex)
        cut = _session_start_utc(label).tz_localize(None).to_datetime64()
        idx = int(np.searchsorted(ts, cut, side="left")) - 1
        if idx >= 0:
            out[label] = float(close[idx])
    return out


def cumulative_factors(
    sessions: Sequence[pd.Timestamp] | pd.Series, applied: pd.DataFrame
) -> pd.DataFrame:
    """Per bar session: the product of the factors of the applied actions dated after it.

    Returns columns price_factor (total return), split_factor, volume_factor, aligned with
    ``sessions``. Deterministic whatever the order of ``applied`` (actions are sorted first).
    """
    days = pd.to_datetime(pd.Series(sessions)).astype("datetime64[ns]").to_numpy()
    n = len(days)
    if applied.empty:
        ones = np.ones(n)
        return pd.DataFrame({"price_factor": ones, "split_factor": ones, "volume_factor": ones})
    ordered = applied.sort_values(["ex_date", "action"], kind="mergesort")
    ex = ordered["ex_date"].astype("datetime64[ns]").to_numpy()
    idx = np.searchsorted(ex, days, side="right")  # first applied action dated after the bar
    out = {}
    for col in ("price_factor", "split_factor", "volume_factor"):
        f = ordered[col].to_numpy(dtype="float64")
        suffix = np.ones(len(f) + 1)
        for i in range(len(f) - 1, -1, -1):
            suffix[i] = f[i] * suffix[i + 1]
        out[col] = suffix[idx]
    return pd.DataFrame(out)


def adjust_bars(
    bars: pd.DataFrame, applied: pd.DataFrame, built_at: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Adjusted bars: raw × cumulative factors (pure; ``ADJUSTED_COLUMNS``)."""
    built_at = pd.Timestamp(built_at if built_at is not None else _now())
    frame = bars.loc[:, list(BAR_COLUMNS)].sort_values(["ticker", "ts"], ignore_index=True)
    sessions = calendar.session_labels(frame["ts"]) if len(frame) else pd.Series([], "M8[ns]")
    factors = cumulative_factors(sessions, applied)
    out = pd.DataFrame(
        {
            "ticker": frame["ticker"].astype("string"),
            "ts": frame["ts"],
            "session": sessions.to_numpy(),
        }
    )
    for col in PRICE_COLUMNS:
        out[col] = frame[col].to_numpy(dtype="float64") * factors["price_factor"].to_numpy()
    out["volume"] = frame["volume"].to_numpy(dtype="float64") * factors["volume_factor"].to_numpy()
    out["split_close"] = (
        frame["close"].to_numpy(dtype="float64") * factors["split_factor"].to_numpy()
    )
    for col in ("price_factor", "split_factor", "volume_factor"):
        out[col] = factors[col].to_numpy()
    out["built_at"] = pd.Series([built_at] * len(out), dtype="datetime64[ns, UTC]")
    return out


def changed_sessions(
    sessions: Sequence[pd.Timestamp], before: pd.DataFrame | None, after: pd.DataFrame
) -> list[pd.Timestamp]:
    """Sessions whose cumulative factors differ between two applied sets (all when no before)."""
    days = sorted({calendar.to_session_label(s) for s in sessions})
    if before is None:
        return days
    a = cumulative_factors(days, before).to_numpy()
    b = cumulative_factors(days, after).to_numpy()
    differs = (a != b).any(axis=1)
    return [d for d, x in zip(days, differs, strict=True) if x]


def ledger_changes(before: pd.DataFrame | None, after: pd.DataFrame) -> list[str]:
    """What differs between the applied actions of two builds, in words."""
    if before is None:
        return (
            ["first build"]
            if after.empty
            else [
                f"new {describe_action(r.ex_date, r.action, r.value)}" for r in after.itertuples()
            ]
        )
    key = ["ex_date", "action"]
    merged = before.merge(after, on=key, how="outer", suffixes=("_old", "_new"), indicator="origin")
    out = []
    for r in merged.sort_values(key).itertuples():
        if r.origin == "right_only":
            out.append(f"new {describe_action(r.ex_date, r.action, r.value_new)}")
        elif r.origin == "left_only":
            out.append(f"removed {describe_action(r.ex_date, r.action, r.value_old)}")
        elif (r.value_old, r.price_factor_old, r.volume_factor_old) != (
            r.value_new, r.price_factor_new, r.volume_factor_new,
        ):  # fmt: skip
            out.append(
                f"revised {describe_action(r.ex_date, r.action, r.value_new)} "
                f"(factor {r.price_factor_old:.8g} → {r.price_factor_new:.8g})"
            )
    return out


# --- the "no unexplained jump" check (pure) -----------------------------------------------------
def session_boundaries(adjusted: pd.DataFrame) -> pd.DataFrame:
    """Per ticker and session: the close of its first and of its last bar."""
    frame = adjusted.sort_values(["ticker", "ts"])
    sessions = calendar.session_labels(frame["ts"]) if len(frame) else frame["ts"]
    grouped = frame.assign(session=sessions).groupby(["ticker", "session"], sort=True)["close"]
    out = pd.DataFrame({"first_close": grouped.first(), "last_close": grouped.last()})
    return out.reset_index()


def find_unexplained_jumps(
    boundaries: pd.DataFrame,
    k: float = JUMP_K,
    min_jump: float = MIN_JUMP_LOG,
    ledger: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Session opens whose adjusted close-to-close log return is an outlier (pure).

    ``boundaries``: ticker, session, first_close, last_close (see ``session_boundaries``). The
    return across the open of session s is log(first_close[s] / last_close[s − 1]). The scale is
    the robust (MAD) standard deviation of that ticker's session-open returns; a return is
    flagged when |r| > max(k × scale, min_jump). ``ledger`` (optional) annotates flagged dates
    that carry an action (then the factor is wrong rather than missing).
    """
    columns = ["ticker", "session", "log_return", "threshold", "scale", "ledger_action"]
    rows = []
    for ticker, group in boundaries.sort_values(["ticker", "session"]).groupby("ticker"):
        first = group["first_close"].to_numpy(dtype="float64")
        last = group["last_close"].to_numpy(dtype="float64")
        if len(group) < 2:
            continue
        r = np.log(first[1:] / last[:-1])
        days = pd.to_datetime(group["session"]).to_numpy()[1:]
        scale = math.nan
        if len(r) >= MIN_SCALE_RETURNS:
            scale = MAD_TO_SD * float(np.median(np.abs(r - np.median(r))))
        threshold = max(k * scale, min_jump) if not math.isnan(scale) else min_jump
        for i in np.flatnonzero(np.abs(r) > threshold):
            day = pd.Timestamp(days[i])
            note = ""
            if ledger is not None and len(ledger):
                hits = ledger[(ledger["ticker"] == ticker) & (ledger["ex_date"] == day)]
                note = "; ".join(
                    describe_action(h.ex_date, h.action, h.value) for h in hits.itertuples()
                )
            rows.append([ticker, day, float(r[i]), threshold, scale, note])
    frame = pd.DataFrame(rows, columns=columns)
    frame["session"] = pd.to_datetime(frame["session"]).astype("datetime64[ns]")
    return frame


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
        closes = _prior_closes_db(engine, str(ticker), group["ex_date"])
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

    The seed's function: run daily before the open. It asks for the whole history (or
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


# --- database: building adjusted bars ------------------------------------------------------------
@dataclass(frozen=True)
class RawSpan:
    """A ticker's stored raw bars: first and last bar start, and the row count."""

    first_ts: pd.Timestamp
    last_ts: pd.Timestamp
    rows: int


@dataclass(frozen=True)
class BuildState:
    """What a ticker's adjusted bars were last built from (table ``adjusted_bars_state``)."""

    ticker: str
    ledger_hash: str
    applied: pd.DataFrame
    as_of: pd.Timestamp
    raw_rows: int
    raw_last_ts: pd.Timestamp
    built_at: pd.Timestamp


@dataclass(frozen=True)
class TickerBuild:
    """What one ticker's build did.

    mode: ``full`` (every stored session rebuilt in one transaction), ``sessions`` (only the
    sessions asked for), ``unchanged`` (already current), ``empty`` (no raw bars).
    ``stale_sessions``: sessions whose factors changed in this build (earlier data that was
    stale); ``changes``: the ledger differences that caused it, in words.
    """

    ticker: str
    mode: BuildMode
    plan: AdjustmentPlan
    rows_written: int = 0
    sessions_written: list[pd.Timestamp] = field(default_factory=list)
    stale_sessions: list[pd.Timestamp] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    reason: str = ""

    def summary(self) -> str:
        """One line for logs and metadata."""
        if self.mode == "full" and self.reason == "first build":
            return (
                f"{self.ticker}: first build, {len(self.sessions_written)} sessions, "
                f"{len(self.plan.applied)} actions applied"
            )
        if self.mode == "full" and self.stale_sessions:
            return (
                f"rebuilt {len(self.stale_sessions)} earlier sessions of {self.ticker} "
                f"because of {'; '.join(self.changes) or self.reason}"
            )
        return f"{self.ticker}: {self.mode}, {self.rows_written} rows ({self.reason})"


@dataclass(frozen=True)
class Staleness:
    """A ticker whose adjusted bars no longer match the ledger as of its data."""

    ticker: str
    changes: list[str]
    stale_sessions: int
    first_stale: pd.Timestamp | None
    last_session: pd.Timestamp
    fingerprint: str


def raw_span(engine: Engine, ticker: str) -> RawSpan | None:
    """First/last stored raw bar and row count of a ticker (None when it has none)."""
    from quant_assets.storage.schema import price_data

    query = select(func.min(price_data.c.ts), func.max(price_data.c.ts), func.count()).where(
        price_data.c.ticker == ticker
    )
    with engine.connect() as conn:
        first, last, rows = conn.execute(query).one()
    if not rows:
        return None
    both = to_utc(pd.Series([first, last]))
    return RawSpan(both.iloc[0], both.iloc[1], int(rows))


def _prior_closes_db(
    engine: Engine, ticker: str, ex_dates: Iterable[pd.Timestamp]
) -> dict[pd.Timestamp, float]:
    """Like ``prior_closes`` but from ``price_data`` (one indexed query per ex-date)."""
    from quant_assets.storage.schema import price_data

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
            cut = to_db_timestamp(_session_start_utc(label), engine)
            close = conn.execute(query, {"cut": cut}).scalar()
            if close is not None:
                out[label] = float(close)
    return out


def current_plan(engine: Engine, ticker: str) -> tuple[RawSpan | None, AdjustmentPlan]:
    """The plan a build of ``ticker`` would apply now (ledger as of its last stored session)."""
    span = raw_span(engine, ticker)
    ledger = read_corporate_actions(engine, [ticker])
    as_of = None if span is None else calendar.session_of(span.last_ts)
    candidates = (
        ledger["ex_date"] if as_of is None else ledger["ex_date"][ledger["ex_date"] <= as_of]
    )
    closes = {} if span is None else _prior_closes_db(engine, ticker, candidates)
    plan = plan_adjustment(ticker, ledger, as_of, closes)
    return span, plan


def read_build_state(engine: Engine, ticker: str) -> BuildState | None:
    """The stored state of a ticker's adjusted bars (None: never built)."""
    t = adjusted_bars_state
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.ticker == ticker)).mappings().first()
    if row is None:
        return None
    times = to_utc(pd.Series([row["raw_last_ts"], row["built_at"]]))
    return BuildState(
        ticker=ticker,
        ledger_hash=row["ledger_hash"],
        applied=applied_from_json(row["applied"]),
        as_of=calendar.to_session_label(pd.Timestamp(row["as_of"])),
        raw_rows=int(row["raw_rows"]),
        raw_last_ts=times.iloc[0],
        built_at=times.iloc[1],
    )


def adjusted_sessions(engine: Engine, ticker: str) -> list[pd.Timestamp]:
    """Sessions of a ticker that have adjusted rows."""
    query = select(adjusted_bars.c.session).where(adjusted_bars.c.ticker == ticker).distinct()
    with engine.connect() as conn:
        values = conn.execute(query).scalars().all()
    return sorted(calendar.to_session_label(pd.Timestamp(v)) for v in values)


def rebuild_ticker(
    engine: Engine,
    ticker: str,
    sessions: Sequence[pd.Timestamp] | None = None,
    *,
    force: bool = False,
    now: pd.Timestamp | None = None,
) -> TickerBuild:
    """Bring one ticker's adjusted bars up to date with its raw bars and ledger.

    Full rebuild (all stored sessions, one transaction) when the plan's fingerprint differs from
    the stored state's, when never built, when ``force``, or — with ``sessions`` None — when the
    raw data changed (row count or last bar). Otherwise with ``sessions`` only those sessions are
    rewritten (one transaction); with ``sessions`` None nothing is written.
    """
    now = pd.Timestamp(now if now is not None else _now())
    span, plan = current_plan(engine, ticker)
    _log_skips(plan)
    if span is None:
        return TickerBuild(ticker, "empty", plan, reason="no raw bars stored")
    state = read_build_state(engine, ticker)
    previous = None if state is None else state.applied
    ledger_stale = state is None or state.ledger_hash != plan.fingerprint
    raw_changed = state is not None and (
        state.raw_rows != span.rows or state.raw_last_ts != span.last_ts
    )
    if force or ledger_stale or (sessions is None and raw_changed):
        reason = (
            "forced" if force and not ledger_stale
            else "first build" if state is None
            else "ledger changed" if ledger_stale
            else "raw bars changed"
        )  # fmt: skip
        bars = read_bars(engine, [ticker], span.first_ts, span.last_ts + pd.Timedelta(minutes=1))
        adjusted = adjust_bars(bars, plan.applied, now)
        days = sorted({calendar.to_session_label(d) for d in adjusted["session"].unique()})
        # Stale = stored sessions whose factors this build changed (none on a first build).
        stale = changed_sessions(days, previous, plan.applied) if previous is not None else []
        changes = ledger_changes(previous, plan.applied) if ledger_stale else []
        requested = {calendar.to_session_label(d) for d in (sessions or [])}
        stale = [d for d in stale if d not in requested]
        _write_full(engine, ticker, adjusted, _state_row(ticker, plan, span, now), plan, now)
        build = TickerBuild(ticker, "full", plan, len(adjusted), days, stale, changes, reason)
        log.info("%s", build.summary())
        return build
    if not sessions:
        return TickerBuild(ticker, "unchanged", plan, reason="adjusted bars are current")
    labels = sorted({calendar.to_session_label(d) for d in sessions})
    start = _session_start_utc(labels[0])
    end = _session_start_utc(labels[-1] + pd.Timedelta(days=1))
    bars = read_bars(engine, [ticker], start, end)
    bars = bars[calendar.session_labels(bars["ts"]).isin(labels).to_numpy()]
    adjusted = adjust_bars(bars, plan.applied, now)
    _write_sessions(
        engine, ticker, labels, adjusted, _state_row(ticker, plan, span, now), plan, now
    )
    return TickerBuild(ticker, "sessions", plan, len(adjusted), labels, [], [], "ledger unchanged")


def rebuild_adjusted_bars(
    engine: Engine | None = None,
    tickers: Sequence[str] | None = None,
    sessions: Mapping[str, Sequence[pd.Timestamp]] | None = None,
    *,
    force: bool = False,
    now: pd.Timestamp | None = None,
) -> list[TickerBuild]:
    """``rebuild_ticker`` for each ticker (default: every ticker with raw bars, or the keys of
    ``sessions``); each ticker is its own transaction."""
    engine = engine or get_engine()
    if tickers is None:
        tickers = sorted(sessions) if sessions is not None else _tickers_with_bars(engine)
    return [
        rebuild_ticker(
            engine, t, None if sessions is None else sessions.get(t, []), force=force, now=now
        )
        for t in tickers
    ]


def adjust_prices_for_splits(
    db_engine: Engine | None = None, tickers: Sequence[str] | None = None
) -> list[TickerBuild]:
    """The seed's function: bring in every split not yet processed.

    Rebuilds (raw × all factors, splits and dividends together) each ticker with an
    unprocessed split, so running it again changes nothing: the rebuilt table is a function of
    raw bars and ledger, and an action already applied cannot be applied twice.
    """
    return _adjust_pending(db_engine or get_engine(), SPLIT, tickers)


def adjust_prices_for_dividends(
    db_engine: Engine | None = None, tickers: Sequence[str] | None = None
) -> list[TickerBuild]:
    """The seed's function for cash dividends; see ``adjust_prices_for_splits``."""
    return _adjust_pending(db_engine or get_engine(), DIVIDEND, tickers)


def _adjust_pending(
    engine: Engine, action: str, tickers: Sequence[str] | None
) -> list[TickerBuild]:
    t = corporate_actions
    query = select(t.c.ticker).where(t.c.action == action, t.c.processed_at.is_(None)).distinct()
    with engine.connect() as conn:
        pending = set(conn.execute(query).scalars().all())
    chosen = sorted(pending if tickers is None else pending & set(tickers))
    return rebuild_adjusted_bars(engine, chosen)


def find_stale_tickers(engine: Engine, tickers: Sequence[str]) -> list[Staleness]:
    """Tickers whose stored adjusted bars were built from a different plan than the current one.

    A ticker never built, or without raw bars, is not listed (nothing stored is wrong).
    """
    out = []
    for ticker in tickers:
        state = read_build_state(engine, ticker)
        if state is None:
            continue
        span, plan = current_plan(engine, ticker)
        if span is None or plan.fingerprint == state.ledger_hash:
            continue
        stale = changed_sessions(adjusted_sessions(engine, ticker), state.applied, plan.applied)
        out.append(
            Staleness(
                ticker=ticker,
                changes=ledger_changes(state.applied, plan.applied),
                stale_sessions=len(stale),
                first_stale=stale[0] if stale else None,
                last_session=calendar.session_of(span.last_ts),
                fingerprint=plan.fingerprint,
            )
        )
    return out


def read_adjusted_bars(
    engine: Engine,
    tickers: Sequence[str] | None,
    start: pd.Timestamp,
    end: pd.Timestamp,
    kind: AdjustmentKind = "total_return",
) -> pd.DataFrame:
    """Adjusted bars with ``start <= ts < end`` in the bar layout (volume float64), sorted.

    ``total_return`` (what the models use) or ``split_only`` (close = split_close; open, high,
    low rescaled by split_factor / price_factor).
    """
    if kind not in ("total_return", "split_only"):
        raise ValueError(f"kind must be 'total_return' or 'split_only', not {kind!r}")
    t = adjusted_bars
    cols = [*BAR_COLUMNS, "split_close", "price_factor", "split_factor"]
    query = select(*(t.c[c] for c in cols)).where(
        t.c.ts >= to_db_timestamp(start, engine), t.c.ts < to_db_timestamp(end, engine)
    )
    if tickers is not None:
        query = query.where(t.c.ticker.in_(list(tickers)))
    with engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(query.order_by(t.c.ticker, t.c.ts)).fetchall(), columns=cols
        )
    frame["ticker"] = frame["ticker"].astype("string")
    frame["ts"] = to_utc(frame["ts"]) if len(frame) else frame["ts"].astype("datetime64[ns, UTC]")
    for col in cols[2:]:
        frame[col] = frame[col].astype("float64")
    if kind == "split_only":
        ratio = frame["split_factor"] / frame["price_factor"]
        for col in ("open", "high", "low"):
            frame[col] = frame[col] * ratio
        frame["close"] = frame["split_close"]
    return frame[list(BAR_COLUMNS)].reset_index(drop=True)


def read_session_boundaries(engine: Engine, tickers: Sequence[str]) -> pd.DataFrame:
    """Per ticker and session, first and last adjusted close (for the jump check)."""
    t = adjusted_bars
    out = []
    for agg, name in ((func.min, "first_close"), (func.max, "last_close")):
        edge = (
            select(t.c.ticker, t.c.session, agg(t.c.ts).label("ts"))
            .where(t.c.ticker.in_(list(tickers)))
            .group_by(t.c.ticker, t.c.session)
            .subquery()
        )
        query = select(t.c.ticker, t.c.session, t.c.close).join(
            edge, (t.c.ticker == edge.c.ticker) & (t.c.ts == edge.c.ts)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        out.append(pd.DataFrame(rows, columns=["ticker", "session", name]))
    frame = out[0].merge(out[1], on=["ticker", "session"])
    frame["ticker"] = frame["ticker"].astype("string")
    frame["session"] = pd.to_datetime(frame["session"]).astype("datetime64[ns]")
    return frame.sort_values(["ticker", "session"], ignore_index=True)


# --- transactions -------------------------------------------------------------------------------
def _write_full(
    engine: Engine,
    ticker: str,
    adjusted: pd.DataFrame,
    state: dict[str, object],
    plan: AdjustmentPlan,
    now: pd.Timestamp,
) -> None:
    """Replace every adjusted row of the ticker, its state and processed marks: one transaction."""
    with engine.begin() as conn:
        _lock_ticker(conn, ticker)
        conn.execute(delete(adjusted_bars).where(adjusted_bars.c.ticker == ticker))
        _insert_adjusted(conn, adjusted)
        _put_state(conn, state)
        _mark_processed(conn, ticker, plan.applied, now, only_unmarked=False)


def _write_sessions(
    engine: Engine,
    ticker: str,
    labels: Sequence[pd.Timestamp],
    adjusted: pd.DataFrame,
    state: dict[str, object],
    plan: AdjustmentPlan,
    now: pd.Timestamp,
) -> None:
    """Replace the adjusted rows of some sessions of the ticker: one transaction."""
    days = [d.date() for d in labels]
    with engine.begin() as conn:
        _lock_ticker(conn, ticker)
        conn.execute(
            delete(adjusted_bars).where(
                adjusted_bars.c.ticker == ticker, adjusted_bars.c.session.in_(days)
            )
        )
        _insert_adjusted(conn, adjusted)
        _put_state(conn, state)
        _mark_processed(conn, ticker, plan.applied, now, only_unmarked=True)


def _lock_ticker(conn: Connection, ticker: str) -> None:
    """Serialize concurrent builds of one ticker (PostgreSQL; SQLite serializes writers).

    Held to the end of the transaction, so a second build deletes what the first committed
    instead of colliding with it on the primary key.
    """
    if conn.dialect.name == "postgresql":
        key = int(hashlib.sha256(f"adjusted_bars:{ticker}".encode()).hexdigest()[:15], 16)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _insert_adjusted(conn: Connection, adjusted: pd.DataFrame) -> None:
    frame = adjusted.loc[:, list(ADJUSTED_COLUMNS)].copy()
    frame["session"] = pd.Series(
        [d.date() for d in pd.to_datetime(frame["session"])], index=frame.index, dtype="object"
    )
    for start in range(0, len(frame), INSERT_CHUNK_ROWS):
        _insert_chunk(conn, frame.iloc[start : start + INSERT_CHUNK_ROWS])


def _insert_chunk(conn: Connection, chunk: pd.DataFrame) -> None:
    """Plain INSERT of rows known to be absent (their keys were deleted in this transaction)."""
    insert_frame(conn, adjusted_bars.name, chunk)


def _put_state(conn: Connection, state: dict[str, object]) -> None:
    t = adjusted_bars_state
    row = dict(state)
    if conn.dialect.name == "sqlite":  # naive UTC text on SQLite (see schema.py)
        for key in ("raw_last_ts", "built_at"):
            row[key] = row[key].replace(tzinfo=None)  # type: ignore[attr-defined]
    conn.execute(delete(t).where(t.c.ticker == row["ticker"]))
    conn.execute(insert(t), [row])


def _mark_processed(
    conn: Connection, ticker: str, applied: pd.DataFrame, now: pd.Timestamp, only_unmarked: bool
) -> None:
    if applied.empty:
        return
    t = corporate_actions
    stmt = update(t).where(
        t.c.ticker == ticker,
        t.c.ex_date == bindparam("d"),
        t.c.action == bindparam("a"),
    )
    if only_unmarked:
        stmt = stmt.where(t.c.processed_at.is_(None))
    stamp = now.tz_convert("UTC").to_pydatetime()
    if conn.dialect.name == "sqlite":
        stamp = stamp.replace(tzinfo=None)
    params = [
        {"d": pd.Timestamp(r.ex_date).date(), "a": str(r.action)} for r in applied.itertuples()
    ]
    conn.execute(stmt.values(processed_at=stamp), params)


def _state_row(ticker: str, plan: AdjustmentPlan, span: RawSpan, now: pd.Timestamp) -> dict:
    return {
        "ticker": ticker,
        "ledger_hash": plan.fingerprint,
        "applied": applied_to_json(plan.applied),
        "as_of": (plan.as_of or calendar.session_of(span.last_ts)).date(),
        "raw_rows": span.rows,
        "raw_last_ts": span.last_ts.tz_convert("UTC").to_pydatetime(),
        "built_at": now.tz_convert("UTC").to_pydatetime(),
    }


# --- small helpers ------------------------------------------------------------------------------
def _log_skips(plan: AdjustmentPlan) -> None:
    if plan.skipped.empty:
        return
    early = plan.skipped["reason"].str.startswith("before any data")
    for r in plan.skipped[~early].itertuples():
        log.info(
            "%s: skipped %s: %s",
            plan.ticker,
            describe_action(r.ex_date, r.action, r.value),
            r.reason,
        )
    if early.any():
        log.info(
            "%s: skipped %d action(s) dated before any stored data", plan.ticker, int(early.sum())
        )


def _tickers_with_bars(engine: Engine) -> list[str]:
    from quant_assets.storage.schema import price_data

    with engine.connect() as conn:
        return sorted(conn.execute(select(price_data.c.ticker).distinct()).scalars().all())


def _session_start_utc(label: pd.Timestamp) -> pd.Timestamp:
    """Midnight New York of a session label, in UTC (bars before it belong to earlier days)."""
    return pd.Timestamp(label).tz_localize(calendar.MARKET_TZ).tz_convert("UTC")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _today() -> pd.Timestamp:
    return calendar.to_session_label(pd.Timestamp.now(tz=calendar.MARKET_TZ))
