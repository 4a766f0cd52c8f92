"""Calendar helpers that have no other direct test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.market.calendar import in_regular_session, regular_session_mask


def test_regular_session_mask_matches_in_regular_session() -> None:
    # a DST switch (2026-03-08), a holiday (2026-11-26) and an early close (2026-11-27)
    stamps = pd.date_range("2026-03-02", "2026-03-14", freq="7min", tz="UTC").append(
        pd.date_range("2026-11-23", "2026-11-30", freq="3min", tz="UTC")
    )
    expected = in_regular_session(pd.Series(stamps)).to_numpy()
    np.testing.assert_array_equal(regular_session_mask(stamps), expected)
    assert expected.any() and not expected.all()


def test_regular_session_mask_is_false_for_nat_and_outside_the_calendar() -> None:
    stamps = pd.DatetimeIndex([pd.NaT, "1990-01-02 15:00", "2099-01-02 15:00"], tz="UTC")
    assert not regular_session_mask(stamps).any()
