"""Walk-forward folds over sessions: K expanding training spans, each scored on the block after it.

``expanding_folds(sessions, folds, block_sessions=None, val_fraction, test_fraction)``. With N
sessions in order and a block of b sessions (default N // (K + 1), scikit-learn's
``TimeSeriesSplit`` default), fold k = 1 … K is scored on the b sessions

    [N − (K − k + 1)·b, N − (K − k)·b)

and learns from every session before them: the first span starts at the first session and each
fold's span is the previous one plus the previous fold's scored block (expanding); the last
block ends at the last session, and the first span takes the remainder N − K·b.

Each fold is a ``SplitPlan`` of the dataset builder: ``plan_split`` over the span and its block,
with the block as the ``holdout`` — train / val / test over the span by the nightly's fractions
(val for early stopping and calibration, test for the models' own metrics), the block scored
like the nightly's holdout. ``build_dataset(..., plan=fold.plan)`` then applies the purge and
embargo at every boundary, the block's included, so this module does neither itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from quant_assets.market import calendar
from quant_assets.models.dataset import SplitPlan, plan_split

MIN_SPAN_SESSIONS = 3  # one session each of train, validation and test


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: its number (1-based) and the split plan of its dataset."""

    number: int
    plan: SplitPlan

    @property
    def scored(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last session of the block the fold is scored on."""
        return self.plan.sessions["holdout"]  # type: ignore[return-value]

    @property
    def trained(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last session the fold learns from (train through test)."""
        return self.plan.sessions["train"][0], self.plan.sessions["test"][1]  # type: ignore[index]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the number and the plan's segments."""
        return {"fold": self.number, **self.plan.to_dict()}


def block_length(n_sessions: int, folds: int, block_sessions: int | None = None) -> int:
    """The scored block's sessions: ``block_sessions``, or N // (K + 1)."""
    return int(block_sessions) if block_sessions is not None else n_sessions // (folds + 1)


def expanding_folds(
    sessions: Sequence[Any],
    folds: int,
    block_sessions: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> list[Fold]:
    """The K folds over ``sessions`` (see the module docstring); ValueError when they do not fit."""
    days = sorted({calendar.to_session_label(s) for s in sessions})
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    block = block_length(len(days), folds, block_sessions)
    first_span = len(days) - folds * block
    if block < 1 or first_span < MIN_SPAN_SESSIONS:
        raise ValueError(
            f"{len(days)} sessions are too few for {folds} folds scored on blocks of "
            f"{max(block, 1)} sessions after a first training span of at least "
            f"{MIN_SPAN_SESSIONS} sessions"
        )
    out = []
    for k in range(1, folds + 1):
        end = first_span + k * block
        out.append(Fold(k, plan_split(days[:end], block, val_fraction, test_fraction)))
    return out
