"""The configured market source: ``source_from_settings`` (``QUANT_SOURCE`` and its settings)."""

from __future__ import annotations

from quant_assets.market.sources import MarketSource
from quant_assets.market.synthetic import SyntheticConfig, synthetic_market
from quant_assets.market.yfinance_source import YFinanceSource
from quant_assets.settings import Settings


def synthetic_config(settings: Settings) -> SyntheticConfig:
    """The synthetic market the ``QUANT_SYNTHETIC_*`` settings describe."""
    return SyntheticConfig(
        seed=settings.synthetic_seed,
        tickers=tuple(settings.tickers),
        start=settings.synthetic_start.isoformat(),
        end=settings.synthetic_end.isoformat(),
        signal=settings.synthetic_signal,
        missing_rate=settings.synthetic_missing_rate,
        regime_shift_at=settings.synthetic_regime_shift_at,
    )


def source_from_settings(settings: Settings) -> MarketSource:
    """The source ``settings.source`` names (a synthetic market is built once per config)."""
    if settings.source == "synthetic":
        return synthetic_market(synthetic_config(settings))
    if settings.source == "yfinance":
        return YFinanceSource(min_interval_s=settings.yfinance_min_interval_s)
    raise ValueError(f"unknown market source {settings.source!r}; use 'synthetic' or 'yfinance'")
