"""The day × ticker partition grid's size warning (Dagster advises ≤ ~100k keys per asset)."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.partitions import (
    DATE_DIM,
    MAX_PARTITION_KEYS,
    TICKER_DIM,
    PartitionGridWarning,
    grid_warning,
    warn_if_grid_too_large,
)
from quant_assets_tests.helpers import fresh_interpreter

YEAR_2025_WEEKDAYS = 261


def year_grid(n_tickers: int) -> dg.MultiPartitionsDefinition:
    """Weekdays of 2025 (a closed window: the count does not move with today) × tickers."""
    days = dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5", start="2025-01-01", end="2026-01-01", fmt="%Y-%m-%d"
    )
    tickers = dg.StaticPartitionsDefinition([f"T{k:04d}" for k in range(n_tickers)])
    return dg.MultiPartitionsDefinition({DATE_DIM: days, TICKER_DIM: tickers})


def test_one_year_holds_about_380_tickers() -> None:
    fits = MAX_PARTITION_KEYS // YEAR_2025_WEEKDAYS
    assert len(year_grid(1).get_partition_keys()) == YEAR_2025_WEEKDAYS
    assert grid_warning(year_grid(fits)) is None
    message = grid_warning(year_grid(fits + 1))
    assert message is not None
    keys = YEAR_2025_WEEKDAYS * (fits + 1)
    assert f"{keys:,} keys" in message
    assert f"{YEAR_2025_WEEKDAYS} weekdays" in message and f"{fits + 1} tickers" in message
    assert "partition by day only" in message and "ticker groups" in message


@pytest.mark.parametrize("n_tickers", [1, 4, 10])
def test_the_limit_is_the_number_of_keys(n_tickers: int) -> None:
    keys = YEAR_2025_WEEKDAYS * n_tickers
    assert grid_warning(year_grid(n_tickers), limit=keys) is None
    assert grid_warning(year_grid(n_tickers), limit=keys - 1) is not None


def test_warns_past_the_limit_and_is_silent_within() -> None:
    with pytest.warns(PartitionGridWarning, match="partition grid"):
        warn_if_grid_too_large(year_grid(2), limit=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_grid_too_large(year_grid(2))


def test_loading_the_definitions_with_a_large_universe_warns(tmp_path: Path) -> None:
    env = {
        "QUANT_HOME": str(tmp_path),
        "QUANT_TICKERS": ",".join(f"T{k:04d}" for k in range(500)),
        "QUANT_PARTITIONS_START": "2025-01-01",
    }
    done = fresh_interpreter("import quant_assets.definitions", tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "PartitionGridWarning" in done.stderr
    assert "500 tickers" in done.stderr and "partition by day only" in done.stderr
