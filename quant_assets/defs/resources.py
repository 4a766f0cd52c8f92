"""Dagster resources: the database and the market source (configuration only, no secrets).

Neither resource takes a password or URL as config: Dagster shows resource config in the UI and
stores it in run records. The database URL comes from the environment (settings) at run time.
"""

from __future__ import annotations

from functools import cache

import dagster as dg
import pandas as pd
from pydantic import Field
from sqlalchemy import Engine

from quant_assets.market.sources import MarketSource, YFinanceSource
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.settings import Settings, get_settings
from quant_assets.storage.database import get_engine


class DatabaseResource(dg.ConfigurableResource):
    """The project database (QUANT_DATABASE_URL / DB_* / SQLite under QUANT_HOME)."""

    def settings(self) -> Settings:
        """Settings read now, so a run sees the environment it was launched with."""
        return Settings()

    @property
    def engine(self) -> Engine:
        """The process-wide engine for the configured database."""
        return get_engine(self.settings())

    def describe(self) -> str:
        """The database URL with its password masked (for logs and metadata)."""
        return self.settings().safe_url()


_DEFAULTS = Settings.model_fields


class MarketSourceResource(dg.ConfigurableResource):
    """Where bars and corporate actions come from: ``synthetic`` (default) or ``yfinance``."""

    source: str = "synthetic"
    tickers: list[str] = Field(default_factory=lambda: list(get_settings().tickers))
    # Defaults are the settings' own defaults (one place), not the environment's values.
    synthetic_seed: int = _DEFAULTS["synthetic_seed"].default
    synthetic_signal: float = _DEFAULTS["synthetic_signal"].default
    synthetic_missing_rate: float = _DEFAULTS["synthetic_missing_rate"].default
    synthetic_start: str = _DEFAULTS["synthetic_start"].default.isoformat()
    synthetic_end: str = _DEFAULTS["synthetic_end"].default.isoformat()
    synthetic_regime_shift_at: str | None = None
    yfinance_min_interval_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> MarketSourceResource:
        """The resource configured from QUANT_* settings."""
        s = settings or get_settings()
        shift = s.synthetic_regime_shift_at
        return cls(
            source=s.source,
            tickers=list(s.tickers),
            synthetic_seed=s.synthetic_seed,
            synthetic_signal=s.synthetic_signal,
            synthetic_missing_rate=s.synthetic_missing_rate,
            synthetic_start=s.synthetic_start.isoformat(),
            synthetic_end=s.synthetic_end.isoformat(),
            synthetic_regime_shift_at=None if shift is None else shift.isoformat(),
        )

    def synthetic_config(self) -> SyntheticConfig:
        """The synthetic market's configuration."""
        shift = self.synthetic_regime_shift_at
        return SyntheticConfig(
            seed=self.synthetic_seed,
            tickers=tuple(self.tickers),
            start=self.synthetic_start,
            end=self.synthetic_end,
            signal=self.synthetic_signal,
            missing_rate=self.synthetic_missing_rate,
            regime_shift_at=None if shift is None else pd.Timestamp(shift),
        )

    def get_source(self) -> MarketSource:
        """The configured source (a synthetic market is built once per process and config)."""
        if self.source == "synthetic":
            return _synthetic_market(self.synthetic_config())
        if self.source == "yfinance":
            return YFinanceSource(min_interval_s=self.yfinance_min_interval_s)
        raise ValueError(f"unknown market source {self.source!r}; use 'synthetic' or 'yfinance'")


@cache
def _synthetic_market(config: SyntheticConfig) -> SyntheticMarket:
    # The simulation is deterministic and costly to rebuild; share it between runs in a process.
    return SyntheticMarket(config)
