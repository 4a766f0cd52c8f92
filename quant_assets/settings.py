"""All configuration and data paths, read from the environment or a ``.env`` file.

Every project setting is named ``QUANT_<FIELD>`` (e.g. ``QUANT_HOME``, ``QUANT_TICKERS``); the
database may also be given with the original plan's plain names ``DB_HOST``, ``DB_USER``,
``DB_PASSWORD``, ``DB_NAME``, ``DB_PORT``. With nothing set the project runs embedded: an SQLite
file under ``QUANT_HOME`` (default ``./.quant``) and the synthetic market as data source. Every
file the project writes lies under ``QUANT_HOME``, at a path named here.

The pure core's own parameter sets (``TrainingConfig``, ``DriftThresholds``) are frozen
dataclasses; ``env_overrides`` reads their ``QUANT_TRAIN_*`` / ``QUANT_DRIFT_*`` overrides with the
same pydantic-settings machinery, so there is one way to configure anything.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

DEFAULT_TICKERS: tuple[str, ...] = (
    "AAPL",
    "MSFT",
    "NVDA",
    "AMZN",
    "GOOGL",
    "META",
    "TSLA",
    "JPM",
    "V",
    "UNH",
    "XOM",
    "JNJ",
    "WMT",
    "PG",
    "MA",
    "HD",
    "CVX",
    "KO",
    "PEP",
    "COST",
)
TRAINING_DATASET = Path("datasets") / "training_dataset.npz"  # relative to QUANT_HOME
SOURCES: tuple[str, ...] = ("synthetic", "yfinance", "files", "alpaca", "massive")
# Characters Dagster refuses in static partition keys, plus whitespace.
_FORBIDDEN_TICKER_CHARS = set("|[],") | {" ", "\t"}


def _db_field(name: str) -> AliasChoices:
    return AliasChoices(f"QUANT_{name}", name)


MLFLOW_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")


def liquidity_map(text: str) -> dict[str, tuple[float, float]]:
    """Parse "TICKER:traded[:tick_bps],…" (0 < traded <= 1, tick_bps >= 0)."""
    out: dict[str, tuple[float, float]] = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        parts = entry.split(":")
        try:
            traded = float(parts[1])
            tick = float(parts[2]) if len(parts) == 3 else 0.0
        except (IndexError, ValueError):
            traded = tick = float("nan")
        if len(parts) > 3 or not (0 < traded <= 1) or not tick >= 0:
            raise ValueError(
                f"QUANT_SYNTHETIC_LIQUIDITY entry {entry!r} is not TICKER:traded[:tick_bps] "
                "with 0 < traded <= 1 and tick_bps >= 0"
            )
        out[parts[0].strip().upper()] = (traded, tick)
    return out


class Settings(BaseSettings):
    """Project settings; see the README's configuration reference for each one."""

    model_config = SettingsConfigDict(
        env_prefix="QUANT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    home: Path = Path(".quant")

    # Database: a full URL wins; otherwise DB_* parts; otherwise SQLite under `home`.
    database_url: SecretStr | None = None
    db_host: str | None = Field(None, validation_alias=_db_field("DB_HOST"))
    db_port: int = Field(5432, validation_alias=_db_field("DB_PORT"))
    db_user: str | None = Field(None, validation_alias=_db_field("DB_USER"))
    db_password: SecretStr | None = Field(None, validation_alias=_db_field("DB_PASSWORD"))
    db_name: str = Field("quant", validation_alias=_db_field("DB_NAME"))
    db_connect_attempts: int = Field(6, ge=1)
    db_connect_backoff_s: float = Field(0.5, gt=0)

    # Market data.
    tickers: Annotated[tuple[str, ...], NoDecode] = DEFAULT_TICKERS
    source: str = "synthetic"  # one of SOURCES (checked below with a one-line message)
    yfinance_min_interval_s: float = Field(1.0, gt=0)  # calls to Yahoo at least this far apart
    # Keyed vendors: the keys come from the environment only (never config, logs or metadata).
    alpaca_api_key: SecretStr | None = Field(None, validation_alias=_db_field("ALPACA_API_KEY"))
    alpaca_secret_key: SecretStr | None = Field(
        None, validation_alias=_db_field("ALPACA_SECRET_KEY")
    )
    alpaca_feed: Literal["iex", "sip"] = "iex"
    alpaca_min_interval_s: float = Field(0.3, gt=0)  # the free plan allows 200 calls a minute
    massive_api_key: SecretStr | None = Field(None, validation_alias=_db_field("MASSIVE_API_KEY"))
    massive_min_interval_s: float = Field(12.0, gt=0)  # the basic plan allows 5 calls a minute
    # Files: one per ticker (or with a ticker column) in files_dir; see market/file_source.py.
    files_dir: Path | None = None
    files_tz: str = "UTC"  # the zone of naive timestamps in the files
    files_ts_label: Literal["start", "end"] = "start"  # a row is stamped at its bar's start/end
    # MLflow: a tracking server or database (MLFLOW_TRACKING_URI, as MLflow itself reads it);
    # unset, the SQLite file under home.
    mlflow_uri: str | None = Field(None, validation_alias=_db_field("MLFLOW_TRACKING_URI"))
    # Where people open the MLflow UI (`make mlflow-ui`): asset metadata links runs there.
    mlflow_ui_url: str = "http://127.0.0.1:5000"

    # raw_bars' completeness check: None judges each session against the ticker's own typical
    # share of minutes (market/coverage.py); a number is a fixed share of the session's minutes
    # (0.98 suits liquid tickers only).
    completeness_floor: float | None = Field(None, gt=0, le=1)
    poll_interval_s: float = Field(30.0, gt=0)
    poll_jitter_s: float = Field(3.0, ge=0)
    # A poller restarted after a longer outage queues gaps for this many sessions back only.
    poller_max_backfill_sessions: int = Field(10, ge=0)
    partitions_start: date = date(2026, 1, 2)
    # How a launched run executes its steps (definitions.py): in the run's process, or one
    # process per step (steps in parallel, each paying the ~15 s import of the code location).
    step_executor: Literal["in_process", "multiprocess"] = "in_process"

    # The demo window (sessions, inclusive) that `make demo` materializes.
    demo_start: date = date(2026, 9, 1)
    demo_end: date = date(2026, 10, 30)

    # The synthetic market (the embedded source and the ground truth of the tests).
    synthetic_seed: int = 7
    # A planted predictable component, so the demo models have something real to learn;
    # 0 makes the market a martingale (the leakage guard tests use that).
    synthetic_signal: float = Field(0.2, ge=0)
    synthetic_missing_rate: float = Field(0.002, ge=0, lt=1)
    synthetic_start: date = date(2026, 1, 2)
    synthetic_end: date = date(2026, 12, 31)
    synthetic_regime_shift_at: pd.Timestamp | None = None
    # Thin tickers: "TICKER:traded[:tick_bps],…" — the share of minutes with a trade and the
    # price tick in bps of the start price (market/synthetic.py "Liquidity"); others trade
    # every minute.
    synthetic_liquidity: str = ""

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in SOURCES:
            raise ValueError(
                f"unknown source {value!r}; QUANT_SOURCE is one of {', '.join(SOURCES)}"
            )
        return name

    @field_validator("mlflow_uri")
    @classmethod
    def _check_mlflow_uri(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = value.split(":", 1)[0].split("+", 1)[0].lower() if ":" in value else ""
        if scheme not in MLFLOW_SCHEMES:
            raise ValueError(
                "MLFLOW_TRACKING_URI must be a tracking server or database URI "
                f"({', '.join(MLFLOW_SCHEMES)}); MLflow's file store (./mlruns) is not used"
            )
        return value.strip()

    @field_validator("synthetic_liquidity")
    @classmethod
    def _check_liquidity(cls, value: str) -> str:
        liquidity_map(value)  # refuses a malformed entry with its text
        return value.strip()

    @property
    def synthetic_liquidity_map(self) -> dict[str, tuple[float, float]]:
        """``synthetic_liquidity`` as ticker -> (traded share, tick in bps)."""
        return liquidity_map(self.synthetic_liquidity)

    @field_validator("tickers", mode="before")
    @classmethod
    def _split_tickers(cls, value: object) -> object:
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("tickers")
    @classmethod
    def _check_tickers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one ticker is required")
        tickers = tuple(t.upper() for t in value)
        bad = [t for t in tickers if _FORBIDDEN_TICKER_CHARS & set(t)]
        if bad:
            raise ValueError(f"tickers may not contain '|', '[', ']', ',' or spaces: {bad}")
        if len(set(tickers)) != len(tickers):
            raise ValueError(f"duplicate tickers in {tickers}")
        return tickers

    @field_validator("synthetic_regime_shift_at", mode="before")
    @classmethod
    def _parse_shift(cls, value: object) -> object:
        if value in (None, ""):
            return None
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

    @model_validator(mode="after")
    def _check_windows(self) -> Settings:
        if self.demo_end < self.demo_start:
            raise ValueError("QUANT_DEMO_END is before QUANT_DEMO_START")
        if self.synthetic_end < self.synthetic_start:
            raise ValueError("QUANT_SYNTHETIC_END is before QUANT_SYNTHETIC_START")
        return self

    def sqlalchemy_url(self) -> URL:
        """The database URL, with the password inside (never log it: use `safe_url`)."""
        if self.database_url is not None:
            return make_url(self.database_url.get_secret_value())
        if self.db_host:
            return URL.create(
                "postgresql+psycopg2",
                username=self.db_user,
                password=self.db_password.get_secret_value() if self.db_password else None,
                host=self.db_host,
                port=self.db_port,
                database=self.db_name,
            )
        return URL.create("sqlite", database=str((self.home / "quant.db").resolve()))

    def safe_url(self) -> str:
        """The database URL with its password masked, fit for logs and metadata."""
        return self.sqlalchemy_url().render_as_string(hide_password=True)

    @property
    def mlflow_tracking_uri(self) -> str:
        """MLflow's tracking store: MLFLOW_TRACKING_URI, else an SQLite file under `home`."""
        return self.mlflow_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_root(self) -> Path:
        """Where MLflow keeps the artifacts of experiments it creates."""
        return self.home / "mlflow-artifacts"

    @property
    def model_config_path(self) -> Path:
        """Where the deployment registry (model_config.json) lives."""
        return self.home / "config" / "model_config.json"

    @property
    def models_dir(self) -> Path:
        """Model bundles, one folder ``{arch}_v{N}`` each."""
        return self.home / "models"

    @property
    def training_dataset_path(self) -> Path:
        """The training dataset the model assets and the champion validation read."""
        return self.home / TRAINING_DATASET

    @property
    def exports_dir(self) -> Path:
        """Default folder of ``quant export-features``."""
        return self.home / "exports"

    @property
    def demo_summary_path(self) -> Path:
        """What ``quant demo`` writes at the end."""
        return self.home / "demo_summary.json"


@cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()


class _Overrides(BaseSettings):
    # No defaults are validated: only what the environment sets is read and returned.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", env_parse_none_str="none", validate_default=False
    )


def field_types(cls: type) -> dict[str, Any]:
    """Name → resolved type of each field of a dataclass (in declaration order)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def env_overrides(prefix: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``fields`` (name → type) set in the environment or ``.env`` as ``{prefix}{NAME}``.

    Values are parsed and checked by pydantic-settings like every other setting (``none`` is
    None, ``true``/``false``/``1``/``0`` are booleans); a bad one raises ValueError naming the
    variable.
    """
    model = create_model(
        f"{prefix.title().replace('_', '')}Overrides",
        __base__=_Overrides,
        **{name: (kind, None) for name, kind in fields.items()},
    )
    try:
        values = model(_env_prefix=prefix)
    except ValidationError as err:
        problems = "; ".join(
            f"{prefix}{str(e['loc'][0]).upper()}={e['input']!r}: {e['msg']}" for e in err.errors()
        )
        raise ValueError(problems) from None
    return values.model_dump(exclude_unset=True)
