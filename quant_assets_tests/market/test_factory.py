"""The configured source: every name builds its source, a missing key or bad name is one line."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import SecretStr, ValidationError

from quant_assets.market.alpaca_source import AlpacaSource
from quant_assets.market.factory import SourceConfigError, source_from_settings
from quant_assets.market.massive_source import MassiveSource
from quant_assets.market.synthetic import SyntheticMarket
from quant_assets.market.yfinance_source import YFinanceSource
from quant_assets.settings import SOURCES, Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)


def test_each_source_name_builds_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "MASSIVE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(source_from_settings(settings()), SyntheticMarket)
    assert isinstance(source_from_settings(settings(source="yfinance")), YFinanceSource)
    alpaca = settings(
        source="alpaca",
        alpaca_api_key=SecretStr("key-123"),
        alpaca_secret_key=SecretStr("secret-456"),
        alpaca_feed="sip",
    )
    built = source_from_settings(alpaca)
    assert isinstance(built, AlpacaSource) and built.feed == "sip"
    assert "key-123" not in repr(built) and "secret-456" not in repr(built)
    massive = source_from_settings(settings(source="massive", massive_api_key=SecretStr("m-789")))
    assert isinstance(massive, MassiveSource) and "m-789" not in repr(massive)


def test_keys_come_from_the_vendors_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "from-env")
    monkeypatch.setenv("MASSIVE_API_KEY", "also-from-env")
    s = settings()
    assert s.alpaca_api_key is not None and s.alpaca_api_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(s) and "also-from-env" not in str(s)


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "MASSIVE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SourceConfigError, match="ALPACA_API_KEY"):
        source_from_settings(settings(source="alpaca"))
    with pytest.raises(SourceConfigError, match="MASSIVE_API_KEY"):
        source_from_settings(settings(source="massive"))


def test_an_unknown_source_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as err:
        settings(source="csv")
    (problem,) = err.value.errors()
    assert all(name in problem["msg"] for name in SOURCES)
    assert settings(source=" YFinance ").source == "yfinance"


def test_the_file_source_is_built_once_per_folder_state(tmp_path) -> None:
    from quant_assets.market.file_source import FileSource, FileSourceError
    from quant_assets.market.synthetic import SyntheticConfig
    from quant_assets_tests.market.helpers import write_market

    with pytest.raises(SourceConfigError, match="QUANT_FILES_DIR"):
        source_from_settings(settings(source="files"))
    with pytest.raises(FileSourceError, match=str(tmp_path / "nowhere")):
        source_from_settings(settings(source="files", files_dir=tmp_path / "nowhere"))
    market = SyntheticMarket(
        SyntheticConfig(tickers=("AAPL",), start="2026-03-02", end="2026-03-31")
    )
    start, end = pd.Timestamp("2026-03-03", tz="UTC"), pd.Timestamp("2026-03-05", tz="UTC")
    write_market(market, tmp_path / "bars", start, end)
    s = settings(source="files", files_dir=tmp_path / "bars", tickers="AAPL")
    first = source_from_settings(s)
    assert isinstance(first, FileSource) and source_from_settings(s) is first
    (tmp_path / "bars" / "MSFT.csv").write_text("timestamp,open,high,low,close,volume\n")
    assert source_from_settings(s) is not first  # the folder changed: read it again


def test_synthetic_liquidity_makes_thin_tickers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANT_SYNTHETIC_LIQUIDITY", "thin:0.2:20")
    market = source_from_settings(settings(tickers=("AAPL", "THIN")))
    start, end = pd.Timestamp("2026-03-02", tz="UTC"), pd.Timestamp("2026-03-07", tz="UTC")
    liquid, thin = (len(market.get_bars(t, start, end)) for t in ("AAPL", "THIN"))
    assert liquid > 0.99 * 5 * 390 and 0.15 < thin / liquid < 0.25
    assert source_from_settings(settings(tickers=("AAPL", "THIN"))) is market  # cached
    with pytest.raises(ValidationError, match="is not TICKER:traded"):
        settings(synthetic_liquidity="THIN:0")
