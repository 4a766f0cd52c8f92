"""The feature contract, without computing anything: names, versions, table columns.

Light on purpose (no pandas-ta, no numba): the database schema, the model bundles and the drift
monitor import it, and ``features.indicators`` computes what it names.

Columns (``FEATURE_TABLE_COLUMNS``): ticker, ts; raw indicators rsi_14, macd, macd_signal,
macd_hist (12/26/9), ema_12, ema_26, bb_lower/bb_middle/bb_upper (20 bars, 2 sd),
bb_bandwidth = (upper − lower) / middle (a fraction, not pandas-ta's ×100), bb_percent = %b,
realized_vol_30 = sqrt(Σ of the last 30 squared bar log returns; the overnight one included),
volume_mean_30 (mean of the last 30 bars' volume, this bar included), volume_rel_30 = volume /
volume_mean_30, log_ret_1/5/15/30; New York time fields minute_of_hour, hour_of_day,
day_of_week (Monday = 0), minute_of_session (minutes since 09:30); model-only forms macd_rel,
macd_signal_rel, macd_hist_rel (÷ close), close_ema_12_rel, close_ema_26_rel (close / ema − 1),
sin/cos of minute_of_hour (period 60), minute_of_session (period 780: half a turn per session)
and day_of_week (period 5); warm (bool).

``FEATURE_SPEC.columns`` are the model inputs, in order; ``CALENDAR_FEATURES`` are the inputs
that are functions of the clock only (the drift monitor leaves them out: they cannot drift).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quant_assets.market.calendar import SESSION_MINUTES
from quant_assets.market.coverage import MAX_GAP_SESSIONS

RSI_LENGTH = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
EMA_LENGTHS: tuple[int, int] = (12, 26)
BB_LENGTH, BB_STD = 20, 2.0
REALIZED_VOL_BARS = 30
VOLUME_MEAN_BARS = 30
LAG_MINUTES: tuple[int, ...] = (1, 5, 15, 30)
FEATURE_WARMUP_BARS = SESSION_MINUTES  # one full session; features.indicators derives why

RAW_INDICATOR_COLUMNS: tuple[str, ...] = (
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "ema_12",
    "ema_26",
    "bb_lower",
    "bb_middle",
    "bb_upper",
    "bb_bandwidth",
    "bb_percent",
    "realized_vol_30",
    "volume_mean_30",
    "volume_rel_30",
    *(f"log_ret_{k}" for k in LAG_MINUTES),
)
TIME_COLUMNS: tuple[str, ...] = (
    "minute_of_hour",
    "hour_of_day",
    "day_of_week",
    "minute_of_session",
)


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered model inputs and their version: one object, carried by every model bundle.

    ``warmup_bars``: bars of a ticker's history before a row is ``warm``. ``max_gap_sessions``:
    a hole of more whole sessions than this in a ticker's bars starts its series afresh
    (indicators, lag returns and warm-up restart after it); None never restarts (bundles made
    before the rule existed).
    """

    version: str
    columns: tuple[str, ...]
    warmup_bars: int
    max_gap_sessions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for a model bundle."""
        return {
            "version": self.version,
            "columns": list(self.columns),
            "warmup_bars": self.warmup_bars,
            "max_gap_sessions": self.max_gap_sessions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of ``to_dict``."""
        gap = data.get("max_gap_sessions")
        return cls(
            str(data["version"]),
            tuple(data["columns"]),
            int(data["warmup_bars"]),
            None if gap is None else int(gap),
        )


FEATURE_SPEC = FeatureSpec(
    version="2",
    columns=(
        "rsi_14",
        "macd_rel",
        "macd_signal_rel",
        "macd_hist_rel",
        "close_ema_12_rel",
        "close_ema_26_rel",
        "bb_bandwidth",
        "bb_percent",
        "realized_vol_30",
        *(f"log_ret_{k}" for k in LAG_MINUTES),
        "volume_rel_30",
        "minute_of_hour_sin",
        "minute_of_hour_cos",
        "minute_of_session_sin",
        "minute_of_session_cos",
        "day_of_week_sin",
        "day_of_week_cos",
    ),
    warmup_bars=FEATURE_WARMUP_BARS,
    max_gap_sessions=MAX_GAP_SESSIONS,
)

FEATURE_TABLE_COLUMNS: tuple[str, ...] = (
    "ticker",
    "ts",
    *RAW_INDICATOR_COLUMNS,
    *TIME_COLUMNS,
    *(c for c in FEATURE_SPEC.columns if c not in RAW_INDICATOR_COLUMNS),
    "warm",
)
CALENDAR_FEATURES: tuple[str, ...] = (
    "minute_of_hour_sin",
    "minute_of_hour_cos",
    "minute_of_session_sin",
    "minute_of_session_cos",
    "day_of_week_sin",
    "day_of_week_cos",
)
