"""A hypothesis strategy of arbitrary bar rows (NaN, inf, huge, odd tickers, NaT, any day) and
the frame they make; shared by the validation and the poller property tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

PRICE_AND_VOLUME = ("open", "high", "low", "close", "volume")

_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -1.0, 1e300, 2.0**63, 100.0, 100.5]),
)
bad_rows = st.fixed_dictionaries(
    {
        "ticker": st.one_of(st.sampled_from(["AAPL", "MSFT", "ZZZ", "X" * 40, ""]), st.none()),
        "minute": st.one_of(st.integers(-600, 1000), st.none()),
        "day": st.integers(-3, 3),
        **{c: _values for c in PRICE_AND_VOLUME},
    }
)


def frame_of(rows: list[dict], open_: pd.Timestamp) -> pd.DataFrame:
    """The rows as a bar frame: ts = ``open_`` + day days + minute minutes (NaT for None)."""
    ts = [
        pd.NaT if r["minute"] is None else open_ + pd.Timedelta(days=r["day"], minutes=r["minute"])
        for r in rows
    ]
    return pd.DataFrame(
        {
            "ticker": pd.array([r["ticker"] for r in rows], dtype="string"),
            "ts": pd.array(ts, dtype="datetime64[ns, UTC]"),
            **{c: np.array([r[c] for r in rows], dtype="float64") for c in PRICE_AND_VOLUME},
        }
    )
