"""Dagster resources: the database, the market source and MLflow (configuration only, no secrets).

No resource takes a password or URL as config: Dagster shows resource config in the UI and
stores it in run records. The database URL comes from the environment (settings) at run time.
Each resource delegates to the core: ``storage.database.get_engine``,
``market.factory.source_from_settings`` and ``tracking``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field
from sqlalchemy import Engine

from quant_assets import tracking
from quant_assets.market.factory import source_from_settings
from quant_assets.market.sources import MarketSource
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


def _config_value(value: Any) -> Any:
    """A settings value in the form a resource field holds it (dates, times, paths as text)."""
    if isinstance(value, date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


class MarketSourceResource(dg.ConfigurableResource):
    """Where bars and corporate actions come from: ``synthetic`` (default), ``yfinance``,
    ``files``, ``alpaca`` or ``massive``.

    The fields are the market settings of the same names (``QUANT_SOURCE``, ``QUANT_TICKERS``,
    ``QUANT_SYNTHETIC_*``, …); their defaults are the settings' own defaults, not the
    environment's values, so a run's config says exactly which market it read. API keys are
    never fields (Dagster shows resource config): the source reads them from the environment.
    """

    source: str = _DEFAULTS["source"].default
    tickers: list[str] = Field(default_factory=lambda: list(get_settings().tickers))
    synthetic_seed: int = _DEFAULTS["synthetic_seed"].default
    synthetic_signal: float = _DEFAULTS["synthetic_signal"].default
    synthetic_missing_rate: float = _DEFAULTS["synthetic_missing_rate"].default
    synthetic_start: str = _DEFAULTS["synthetic_start"].default.isoformat()
    synthetic_end: str = _DEFAULTS["synthetic_end"].default.isoformat()
    synthetic_regime_shift_at: str | None = None
    synthetic_liquidity: str = _DEFAULTS["synthetic_liquidity"].default
    yfinance_min_interval_s: float = _DEFAULTS["yfinance_min_interval_s"].default
    alpaca_feed: str = _DEFAULTS["alpaca_feed"].default
    alpaca_min_interval_s: float = _DEFAULTS["alpaca_min_interval_s"].default
    massive_min_interval_s: float = _DEFAULTS["massive_min_interval_s"].default
    files_dir: str | None = None
    files_tz: str = _DEFAULTS["files_tz"].default
    files_ts_label: str = _DEFAULTS["files_ts_label"].default

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> MarketSourceResource:
        """The resource configured from QUANT_* settings."""
        s = settings or get_settings()
        return cls(**{name: _config_value(getattr(s, name)) for name in cls.model_fields})

    def settings(self) -> Settings:
        """The environment's settings with this resource's market fields."""
        return Settings(**self.model_dump())

    def get_source(self) -> MarketSource:
        """The configured source (a synthetic market is built once per process and config)."""
        return source_from_settings(self.settings())


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + model registry (defaults: the SQLite store under QUANT_HOME).

    Set ``tracking_uri`` (e.g. ``http://mlflow:5000``) to use a server; ``make mlflow-ui``
    opens the embedded store.
    """

    tracking_uri: str | None = None  # None: Settings().mlflow_tracking_uri
    artifact_root: str | None = None  # None: Settings().mlflow_artifact_root (new experiments)
    experiment_name: str = tracking.EXPERIMENT
    registered_model_prefix: str = tracking.MODEL_PREFIX

    def resolved_tracking_uri(self) -> str:
        """The store this resource writes to."""
        return self.tracking_uri or Settings().mlflow_tracking_uri

    def registered_model_name(self, arch: str) -> str:
        """The registered model of one architecture's training runs."""
        return tracking.registered_model_name(arch, self.registered_model_prefix)

    @contextlib.contextmanager
    def start_run(
        self, run_name: str, tags: Mapping[str, Any] | None = None
    ) -> Iterator[tracking.MlflowRun]:
        """A run that ends FINISHED, or FAILED when the block raises."""
        uri = self.resolved_tracking_uri()
        client = tracking.tracking_client(uri)
        root = Path(self.artifact_root) if self.artifact_root else Settings().mlflow_artifact_root
        experiment = tracking.experiment_id(client, self.experiment_name, root, uri)
        run = client.create_run(
            experiment, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}
        )
        handle = tracking.MlflowRun(client, run.info.run_id, experiment)
        try:
            yield handle
        except BaseException:
            client.set_terminated(handle.run_id, "FAILED")
            raise
        client.set_terminated(handle.run_id, "FINISHED")
