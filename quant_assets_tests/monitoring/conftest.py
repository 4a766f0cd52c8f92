"""A small live database: four sessions of three tickers (one thin) and their adjusted bars."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from quant_assets.corporate_actions.adjusted_store import rebuild_adjusted_bars
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.market import calendar
from quant_assets.market.synthetic import Liquidity, SyntheticConfig, SyntheticMarket

TICKERS = ("AAA", "BBB", "THIN")
DAYS = list(calendar.sessions("2026-03-02", "2026-03-05"))


@pytest.fixture
def market_db(engine: Engine) -> Engine:
    """Four sessions of three tickers (one thin; splits and dividends on) and their adjusted
    bars; the last session has only its raw bars, as during a live day."""
    for ticker in TICKERS:
        liquidity = Liquidity(traded=0.2, tick_bps=20.0) if ticker == "THIN" else Liquidity()
        market = SyntheticMarket(
            SyntheticConfig(
                seed=5, tickers=(ticker,), start="2026-02-02", end="2026-03-06", liquidity=liquidity
            )
        )
        ingest_sessions(market, engine, ticker, list(DAYS))
    rebuild_adjusted_bars(engine, list(TICKERS))
    return engine
