"""Bar frame helpers: each ticker's newest rows by position."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from quant_assets.market.frames import newest_positions


@given(
    rows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), unique=True, max_size=60),
    n=st.integers(1, 8),
)
def test_newest_positions_are_each_tickers_last_n_rows_in_order(
    rows: list[tuple[int, int]], n: int
) -> None:
    frame = pd.DataFrame(rows, columns=["code", "ts"], dtype="int64")
    got = newest_positions(frame["code"].to_numpy(), frame["ts"].to_numpy(), n)
    expected = frame.sort_values(["code", "ts"]).groupby("code").tail(n).index.to_numpy()
    np.testing.assert_array_equal(got, expected)
