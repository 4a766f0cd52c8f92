"""The configured market source: ``source_from_settings`` (``QUANT_SOURCE`` and its settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr

from quant_assets.market.alpaca_source import AlpacaSource
from quant_assets.market.file_source import FileSource
from quant_assets.market.massive_source import MassiveSource
from quant_assets.market.sources import MarketSource
from quant_assets.market.synthetic import Liquidity, SyntheticConfig, synthetic_market
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
        liquidity={
            ticker: Liquidity(traded, tick)
            for ticker, (traded, tick) in settings.synthetic_liquidity_map.items()
        }
        or Liquidity(),
    )


class SourceConfigError(ValueError):
    """The configured source cannot be built (a missing key or folder); the message says which
    setting to give."""


def source_from_settings(settings: Settings) -> MarketSource:
    """The source ``settings.source`` names (a synthetic market is built once per config)."""
    if settings.source == "synthetic":
        return synthetic_market(synthetic_config(settings))
    if settings.source == "yfinance":
        return YFinanceSource(min_interval_s=settings.yfinance_min_interval_s)
    if settings.source == "files":
        if settings.files_dir is None:
            raise SourceConfigError("QUANT_SOURCE=files needs QUANT_FILES_DIR (the folder)")
        folder = Path(settings.files_dir).expanduser().resolve()
        return _file_source(
            folder,
            settings.files_tz,
            settings.files_ts_label,
            tuple(settings.tickers),
            _fingerprint(folder),
        )
    if settings.source == "alpaca":
        return AlpacaSource(
            _secret(settings.alpaca_api_key, "alpaca", "ALPACA_API_KEY"),
            _secret(settings.alpaca_secret_key, "alpaca", "ALPACA_SECRET_KEY"),
            settings.alpaca_feed,
            min_interval_s=settings.alpaca_min_interval_s,
        )
    if settings.source == "massive":
        return MassiveSource(
            _secret(settings.massive_api_key, "massive", "MASSIVE_API_KEY"),
            min_interval_s=settings.massive_min_interval_s,
        )
    raise SourceConfigError(f"no source is built for {settings.source!r}")


def _secret(value: SecretStr | None, source: str, variable: str) -> str:
    if value is None or not value.get_secret_value():
        raise SourceConfigError(f"QUANT_SOURCE={source} needs {variable} in the environment")
    return value.get_secret_value()


@lru_cache(maxsize=4)
def _file_source(
    folder: Path, tz: str, ts_label: str, tickers: tuple[str, ...], fingerprint: tuple
) -> FileSource:
    # One instance per folder state: its files are read once per process and served from
    # memory; a file added, removed or rewritten changes the fingerprint and gives a new one.
    del fingerprint
    return FileSource(folder, tz=tz, ts_label=ts_label, tickers=tickers)


def _fingerprint(folder: Path) -> tuple:
    """Names, sizes and modification times of the folder's files (FileSource refuses a missing
    folder with its own clear error, so a missing one is just an empty fingerprint here)."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()))
