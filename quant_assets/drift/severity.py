"""From a stream of drift levels to rollback decisions: persistence, latch and cool-down.

``advance(state, level, at, thresholds)`` is a pure step function; ``DriftState`` is small and
JSON-serializable, so a Dagster sensor can keep it in its cursor (``state.to_json()`` /
``DriftState.from_json(cursor)``) or a table can hold it.

Rules (in this order, for an evaluation at time ``at`` with level ``level``):

1. An evaluation at or before the last one seen is ignored (a sensor tick that re-reads the same
   window must not count twice): no rollback, state unchanged.
2. If ``model_version`` is given and differs from the last one seen, the severe streak restarts
   (the reference statistics changed with the model).
3. ``level`` None (not evaluated: the session so far had fewer than ``min_rows`` rows; ``note``,
   the report's reason, says how many) neither extends nor breaks any streak.
   ``severe`` extends the severe streak; ``warn`` / ``none`` resets it to 0. ``none`` extends
   the clear streak, anything else resets it; K consecutive ``none`` evaluations *re-arm* the
   monitor after a rollback (hysteresis: the drift must be gone, not merely dip below severe).
4. A rollback is decided when the streak reaches ``thresholds.persistence`` (K) consecutive
   severe evaluations, the monitor is armed, and no rollback happened within
   ``thresholds.cooldown_minutes`` (the cool-down). Then the streak restarts, the monitor is
   disarmed (latched) and ``last_rollback_at`` = ``at``.

Why the latch on top of the cool-down: after a rollback to the previous stable model, a market
that has really changed still drifts away from *that* model's training data too; another
rollback (to an even older model) cannot help, only the nightly retrain on the new regime can,
and a new champion trained on it is not drifted, which re-arms the monitor. The cool-down alone
would roll back once per cool-down period for as long as the regime lasts (flapping); re-arming
on a single evaluation below severe was not enough either (under a persistent 3x regime the
first windows of the next session dip to warn: too few rows). The cool-down still matters when
the drift clears and comes straight back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from quant_assets.drift.thresholds import LEVELS, DriftThresholds, Level

__all__ = ["DriftDecision", "DriftState", "Level", "advance"]


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class DriftState:
    """What the decision needs to remember between evaluations (JSON round trip)."""

    consecutive_severe: int = 0
    consecutive_clear: int = 0
    armed: bool = True
    last_rollback_at: pd.Timestamp | None = None
    last_evaluated_at: pd.Timestamp | None = None
    last_level: Level | None = None
    evaluations: int = 0
    rollbacks: int = 0
    model_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "consecutive_severe": self.consecutive_severe,
            "consecutive_clear": self.consecutive_clear,
            "armed": self.armed,
            "last_rollback_at": _iso(self.last_rollback_at),
            "last_evaluated_at": _iso(self.last_evaluated_at),
            "last_level": self.last_level,
            "evaluations": self.evaluations,
            "rollbacks": self.rollbacks,
            "model_version": self.model_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftState:
        level = data.get("last_level")
        if level is not None and level not in LEVELS:
            raise ValueError(f"unknown drift level {level!r}")
        version = data.get("model_version")
        return cls(
            consecutive_severe=int(data.get("consecutive_severe", 0)),
            consecutive_clear=int(data.get("consecutive_clear", 0)),
            armed=bool(data.get("armed", True)),
            last_rollback_at=_ts(data.get("last_rollback_at")),
            last_evaluated_at=_ts(data.get("last_evaluated_at")),
            last_level=level,
            evaluations=int(data.get("evaluations", 0)),
            rollbacks=int(data.get("rollbacks", 0)),
            model_version=None if version is None else str(version),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> DriftState:
        """Parse a cursor; None or an empty string give the initial state."""
        return cls() if not text else cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class DriftDecision:
    """The outcome of one evaluation: roll back or not, why, and the next state."""

    rollback: bool
    reason: str
    level: Level | None
    evaluated_at: pd.Timestamp
    consecutive_severe: int  # the streak including this evaluation (before a rollback resets it)
    in_cooldown: bool
    armed: bool  # after this evaluation
    state: DriftState

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollback": self.rollback,
            "reason": self.reason,
            "level": self.level,
            "evaluated_at": _iso(self.evaluated_at),
            "consecutive_severe": self.consecutive_severe,
            "in_cooldown": self.in_cooldown,
            "armed": self.armed,
            "state": self.state.to_dict(),
        }


def advance(
    state: DriftState,
    level: Level | None,
    at: Any,
    thresholds: DriftThresholds,
    model_version: str | None = None,
    note: str | None = None,
) -> DriftDecision:
    """One step of the decision state machine (see the module docstring for the rules);
    ``note`` (why a window was not evaluated, e.g. "not evaluated (12 rows < 30)") goes into
    the reason when ``level`` is None."""
    if level is not None and level not in LEVELS:
        raise ValueError(f"unknown drift level {level!r}")
    now = _ts(at)
    if now is None:
        raise ValueError("at is required")
    k = thresholds.persistence
    cooldown_end = (
        None
        if state.last_rollback_at is None
        else state.last_rollback_at + pd.Timedelta(minutes=thresholds.cooldown_minutes)
    )
    in_cooldown = cooldown_end is not None and now < cooldown_end
    if state.last_evaluated_at is not None and now <= state.last_evaluated_at:
        return DriftDecision(
            False, f"ignored: already evaluated up to {_iso(state.last_evaluated_at)}",
            level, now, state.consecutive_severe, in_cooldown, state.armed, state,
        )  # fmt: skip

    streak, clear, armed = state.consecutive_severe, state.consecutive_clear, state.armed
    version = state.model_version if model_version is None else str(model_version)
    if state.model_version is not None and version != state.model_version:
        streak = 0
    if level == "severe":
        streak, clear = streak + 1, 0
    elif level == "warn":
        streak, clear = 0, 0
    elif level == "none":
        streak, clear = 0, clear + 1
        armed = armed or clear >= k

    rollback = level == "severe" and streak >= k and armed and not in_cooldown
    if level is None:
        reason = f"{note or 'not evaluated (too few rows)'}; streak unchanged"
    elif level != "severe":
        reason = f"{level}: no severe drift"
        if armed and not state.armed:
            reason += f"; re-armed after {clear} clear evaluations"
        elif not armed:
            reason += f"; latched until {k} consecutive clear evaluations ({clear} so far)"
    elif rollback:
        reason = f"severe drift for {streak} consecutive evaluations (K = {k}): roll back"
    elif streak < k:
        reason = f"severe drift, {streak} of {k} consecutive evaluations"
    elif not armed:
        reason = (
            f"severe drift for {streak} evaluations, but a rollback already happened at "
            f"{_iso(state.last_rollback_at)} and the drift has not cleared since (latched: "
            f"{k} consecutive evaluations without drift re-arm)"
        )
    else:
        reason = f"severe drift for {streak} evaluations, in cool-down until {_iso(cooldown_end)}"

    new = replace(
        state,
        consecutive_severe=0 if rollback else streak,
        consecutive_clear=clear,
        armed=False if rollback else armed,
        last_rollback_at=now if rollback else state.last_rollback_at,
        last_evaluated_at=now,
        last_level=level if level is not None else state.last_level,
        evaluations=state.evaluations + (level is not None),
        rollbacks=state.rollbacks + rollback,
        model_version=version,
    )
    return DriftDecision(rollback, reason, level, now, streak, in_cooldown, new.armed, new)
