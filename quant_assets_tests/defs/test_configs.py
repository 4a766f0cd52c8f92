"""Run config of the day-partitioned assets: which tickers a run builds."""

from __future__ import annotations

import dagster as dg
import pytest

from quant_assets.defs.configs import TickersConfig

UNIVERSE = ["MSFT", "AAPL", "KO"]


def test_no_tickers_means_the_whole_universe_sorted() -> None:
    assert TickersConfig().chosen(UNIVERSE) == ["AAPL", "KO", "MSFT"]
    assert TickersConfig(tickers=["KO", "AAPL", "KO"]).chosen(UNIVERSE) == ["AAPL", "KO"]


def test_a_ticker_outside_the_universe_is_refused_with_the_valid_ones_named() -> None:
    with pytest.raises(dg.Failure, match=r"tickers ZZZZ are not in .*\(MSFT, AAPL, KO\)"):
        TickersConfig(tickers=["AAPL", "ZZZZ"]).chosen(UNIVERSE)
