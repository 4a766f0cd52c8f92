"""Single bad prints in 1-minute bars: a robust spike check (pure core).

A print is a *spike* when one of a bar's prices (open, high, low, close) is far from the closes
around it on **both** sides: from the median close of the ``NEIGHBOURS`` bars before it and
from that of the ``NEIGHBOURS`` bars after it, in the same session of the same ticker. A real
move is followed (or preceded) by prices at its level, so it agrees with one side; a bad print
(an open of 20.73 and a low of 19.41 between bars near 18.7) agrees with neither.

"Far" is |log(price / median)| above max(``MIN_SPIKE_LOG``, ``SPIKE_K`` × the ticker's scale),
the scale being a robust σ of its bar-to-bar log returns: the 75th percentile of their absolute
values / 1.15 (σ for normal returns). Quantiles rather than the MAD, because exact-zero
returns are 15–62 % of a thin ticker's bars and make the MAD zero. Bars at a session's edge,
without a neighbour on one side, are not judged.

Spikes are *reported* (``raw_bars``' ``no_price_spikes`` check), never dropped: a true print
that merely looks odd must stay, and a person decides.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.market import calendar
from quant_assets.market.frames import PRICE_COLUMNS

NEIGHBOURS = 5
SPIKE_K = 20.0
MIN_SPIKE_LOG = 0.02  # 2 %: below it a print is never called a spike
_Q75_TO_SD = 1.15  # 75th percentile of |x| for x ~ N(0, σ²) is 1.15 σ
SPIKE_COLUMNS: tuple[str, ...] = (
    "ticker", "ts", "column", "price", "reference", "log_deviation", "threshold",
)  # fmt: skip


def find_price_spikes(bars: pd.DataFrame) -> pd.DataFrame:
    """``SPIKE_COLUMNS`` of every spiked price in ``bars`` (ticker, ts, open, high, low, close;
    any order, any tickers), sorted by ticker and ts; empty when there is none."""
    if bars.empty:
        return pd.DataFrame(columns=list(SPIKE_COLUMNS))
    frame = bars.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)
    segment = [frame["ticker"].astype(str), calendar.session_labels(frame["ts"])]
    log_close = np.log(frame["close"].astype("float64"))
    by_segment = log_close.groupby(segment, sort=False)
    before = by_segment.transform(lambda s: s.shift(1).rolling(NEIGHBOURS, min_periods=1).median())
    after = by_segment.transform(
        lambda s: s[::-1].shift(1).rolling(NEIGHBOURS, min_periods=1).median()[::-1]
    )
    threshold = frame["ticker"].astype(str).map(_thresholds(frame, log_close, segment))
    found = []
    for column in PRICE_COLUMNS:
        price = np.log(frame[column].astype("float64"))
        deviation = np.minimum((price - before).abs(), (price - after).abs())
        hit = deviation > threshold  # NaN (a session edge) is never a hit
        if hit.any():
            found.append(
                pd.DataFrame(
                    {
                        "ticker": frame.loc[hit, "ticker"].astype(str),
                        "ts": frame.loc[hit, "ts"],
                        "column": column,
                        "price": frame.loc[hit, column].astype("float64"),
                        "reference": np.exp(before[hit]),  # the level it left
                        "log_deviation": deviation[hit],
                        "threshold": threshold[hit],
                    }
                )
            )
    if not found:
        return pd.DataFrame(columns=list(SPIKE_COLUMNS))
    out = pd.concat(found, ignore_index=True)
    return out.sort_values(["ticker", "ts", "column"], ignore_index=True)[list(SPIKE_COLUMNS)]


def _thresholds(frame: pd.DataFrame, log_close: pd.Series, segment: list[pd.Series]) -> pd.Series:
    """Per ticker: max(MIN_SPIKE_LOG, SPIKE_K × robust σ of its bar-to-bar log returns)."""
    returns = log_close.groupby(segment, sort=False).diff().abs()
    scale = returns.groupby(frame["ticker"].astype(str)).quantile(0.75) / _Q75_TO_SD
    return np.maximum(MIN_SPIKE_LOG, SPIKE_K * scale.fillna(0.0))
