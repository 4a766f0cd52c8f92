"""Metadata: JSON rounding (six significant digits, structure and non-floats kept) and the
coverage of a run of some tickers."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from quant_assets.defs.metadata import coverage, json_value, rounded

LEAVES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(), st.booleans()
)
TREES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _leaves(data):
    if isinstance(data, dict):
        for v in data.values():
            yield from _leaves(v)
    elif isinstance(data, list | tuple):
        for v in data:
            yield from _leaves(v)
    else:
        yield data


@given(TREES)
def test_only_finite_floats_change_and_by_less_than_their_sixth_digit(data) -> None:
    out = rounded(data)
    for before, after in zip(_leaves(data), _leaves(out), strict=True):
        if isinstance(before, float) and math.isfinite(before):
            assert math.isclose(after, before, rel_tol=5e-6, abs_tol=0.0)
            assert float(f"{after:.6g}") == after  # at most six significant digits left
        elif isinstance(before, float):
            assert math.isnan(after) if math.isnan(before) else after == before
        else:
            assert after == before and type(after) is type(before)


def test_a_metric_reads_short_in_the_ui() -> None:
    value = json_value({"log_loss": 0.9551234567891234, "n": 3, "per_class": [1 / 3, 2 / 3]})
    assert (
        json.dumps(value.data)
        == '{"log_loss": 0.955123, "n": 3, "per_class": [0.333333, 0.666667]}'
    )


def test_coverage_lists_every_market_ticker_built_or_not() -> None:
    stored = {"AAPL": 10, "MSFT": 7}
    full = coverage({"AAPL": ["10"], "MSFT": ["7"]}, ["rows"], stored)
    assert full["scope"].value == "all 2 tickers" and full["rows_stored"].value == 17
    partial = coverage({"MSFT": ["full", "7"], "TSLA": ["full", "3"]}, ["mode", "rows"], stored)
    assert partial["scope"].value.startswith("2 of 3 tickers (MSFT, TSLA); the others'")
    assert partial["per_ticker"].value.splitlines() == [
        "| ticker | mode | rows | rows stored (these days) |",
        "|---|---|---|---|",
        "| AAPL | not in this run | – | 10 |",
        "| MSFT | full | 7 | 7 |",
        "| TSLA | full | 3 | 0 |",
    ]
