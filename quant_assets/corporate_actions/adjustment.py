"""Which corporate actions apply to a ticker's bars, with which factors, and the jump check (pure).

One change of design against the original plan: raw bars (``price_data``) are never overwritten. The
adjusted bars (``adjusted_bars``) are *rebuilt* as ``raw × cumulative factor``, the factors
computed from the ledger (``corporate_actions``) as of the build, so applying the same action
twice is impossible by construction; "processed" marks (``processed_at``) only record which
actions a build included.

Conventions (CRSP / Yahoo; docs/architecture.md, market conventions)
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
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quant_assets.corporate_actions.ledger import (
    ACTIONS,
    DIVIDEND,
    LEDGER_KEY,
    SPLIT,
    CorporateActionError,
    describe_action,
    empty_ledger,
    normalize_ledger,
)
from quant_assets.market import calendar
from quant_assets.market.coverage import MAX_GAP_SESSIONS
from quant_assets.market.frames import BAR_COLUMNS, PRICE_COLUMNS

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
        cut = calendar.span_of_days(label, label)[0].tz_localize(None).to_datetime64()
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
    built_at = pd.Timestamp(built_at if built_at is not None else pd.Timestamp.now(tz="UTC"))
    frame = bars.loc[:, list(BAR_COLUMNS)].sort_values(["ticker", "ts"], ignore_index=True)
    sessions = (
        calendar.session_labels(frame["ts"])
        if len(frame)
        else pd.Series([], dtype="datetime64[ns]")
    )
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
    """Session opens whose adjusted close-to-close log return is an outlier, or crosses a hole
    (pure).

    ``boundaries``: ticker, session, first_close, last_close (see ``session_boundaries``). The
    return across the open of session s is log(first_close[s] / last_close[s − 1]). The scale is
    the robust (MAD) standard deviation of that ticker's session-open returns over consecutive
    sessions; a return is flagged when |r| > max(k × scale, min_jump). A return across a hole of
    more than ``MAX_GAP_SESSIONS`` sessions cannot be judged against an overnight scale (a
    split in the hole and months of drift look alike): it is always listed, with
    ``sessions_skipped`` > 0 — the caller decides what it weighs. ``ledger`` (optional)
    annotates flagged dates that carry an action (then the factor is wrong rather than missing).
    """
    columns = [
        "ticker", "session", "log_return", "threshold", "scale", "sessions_skipped",
        "ledger_action",
    ]  # fmt: skip
    rows = []
    for ticker, group in boundaries.sort_values(["ticker", "session"]).groupby("ticker"):
        first = group["first_close"].to_numpy(dtype="float64")
        last = group["last_close"].to_numpy(dtype="float64")
        if len(group) < 2:
            continue
        r = np.log(first[1:] / last[:-1])
        days = pd.to_datetime(group["session"]).to_numpy()[1:]
        skipped = _sessions_between(pd.DatetimeIndex(pd.to_datetime(group["session"])))
        across = skipped > MAX_GAP_SESSIONS
        scale = math.nan
        if (~across).sum() >= MIN_SCALE_RETURNS:
            inside = r[~across]
            scale = MAD_TO_SD * float(np.median(np.abs(inside - np.median(inside))))
        threshold = max(k * scale, min_jump) if not math.isnan(scale) else min_jump
        for i in np.flatnonzero((np.abs(r) > threshold) | across):
            day = pd.Timestamp(days[i])
            note = ""
            if ledger is not None and len(ledger):
                hits = ledger[(ledger["ticker"] == ticker) & (ledger["ex_date"] == day)]
                note = "; ".join(
                    describe_action(h.ex_date, h.action, h.value) for h in hits.itertuples()
                )
            gap = int(skipped[i]) if across[i] else 0
            rows.append([ticker, day, float(r[i]), threshold, scale, gap, note])
    frame = pd.DataFrame(rows, columns=columns)
    frame["session"] = pd.to_datetime(frame["session"]).astype("datetime64[ns]")
    frame["sessions_skipped"] = frame["sessions_skipped"].astype("int64")
    return frame


def _sessions_between(days: pd.DatetimeIndex) -> np.ndarray:
    """Calendar sessions strictly between each pair of consecutive ``days``."""
    position = np.searchsorted(calendar.exchange_calendar().sessions, days)
    return np.diff(position) - 1
