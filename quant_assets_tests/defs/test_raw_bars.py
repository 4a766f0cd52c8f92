"""The raw_bars asset materialized through Dagster, on SQLite and on real PostgreSQL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from quant_assets.defs import partitions
from quant_assets.defs.ingestion import progress_line, raw_bars, ticker_done
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.market import calendar
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import get_engine
from quant_assets_tests.market.helpers import market_bars, write_bars

TICKERS = ["AAPL", "MSFT"]
REPO = Path(__file__).resolve().parents[2]
MODULE = "quant_assets.definitions"
BAD_PRINT = pd.Timestamp("2026-09-02 17:00", tz="UTC")


def market() -> MarketSourceResource:
    return MarketSourceResource(
        tickers=TICKERS, synthetic_start="2026-08-03", synthetic_end="2026-09-30"
    )


def run_range(first: str, last: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_bars],
        instance=instance,
        resources={"database": DatabaseResource(), "market": market()},
        tags={
            "dagster/asset_partition_range_start": f"{first}|{TICKERS[0]}",
            "dagster/asset_partition_range_end": f"{last}|{TICKERS[-1]}",
        },
    )


def stored_rows(settings: Settings) -> int:
    with get_engine(settings).connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM price_data")).scalar_one()


@pytest.fixture(autouse=True)
def only_two_tickers(monkeypatch: pytest.MonkeyPatch) -> None:
    # The partitions definition is built from settings at import: keep the default 20 tickers
    # there and materialize a sub-rectangle with two of them (AAPL is first, MSFT second).
    monkeypatch.setenv("QUANT_TICKERS", ",".join(TICKERS))


def test_range_materializes_in_one_run_and_matches_source(quant_env: Settings) -> None:
    with dg.instance_for_test() as instance:
        result = run_range("2026-09-01", "2026-09-08", instance)
        assert result.success
        runs = instance.get_runs()
        assert len(runs) == 1  # the whole range in one run (single_run backfill policy)
        checks = result.get_asset_check_evaluations()
        assert {c.check_name: c.passed for c in checks} == {
            "no_duplicate_bars": True,
            "ohlc_sanity": True,
            "no_price_spikes": True,
            "complete_against_calendar": True,
        }
        meta = result.asset_materializations_for_node("raw_bars")[0].metadata
        assert meta["partitions"].value == 2 * 6  # 1-8 Sep: 6 weekdays, Labour Day among them
        assert meta["non_session_days"].value == ["2026-09-07"]
        password = quant_env.sqlalchemy_url().password
        assert not password or password not in meta["database"].value
        # Each partition's own figures: an observation of that partition.
        key = "2026-09-02|MSFT"
        observed = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_bars"), asset_partitions=[key]),
            limit=1,
        ).records[0]
        own = observed.asset_observation.metadata
        start, end = calendar.span_of_days("2026-09-02", "2026-09-02")
        stored = read_bars(get_engine(quant_env), ["MSFT"], start, end)
        assert own["rows"].value == len(stored) < meta["rows"].value
        assert own["expected_minutes"].value == 390
    source = market().get_source()
    engine = get_engine(quant_env)
    start = calendar.session_bounds("2026-09-01")[0]
    end = calendar.session_bounds("2026-09-08")[1]
    for ticker in TICKERS:
        expected = source.get_bars(ticker, start, end)
        stored = read_bars(engine, [ticker], start, end)
        pd.testing.assert_frame_equal(stored, expected.reset_index(drop=True), check_exact=True)
    assert meta["rows"].value == stored_rows(quant_env)


def test_rerun_is_idempotent_and_holiday_is_empty(quant_env: Settings) -> None:
    with dg.instance_for_test() as instance:
        assert run_range("2026-09-07", "2026-09-08", instance).success
        first = stored_rows(quant_env)
        again = run_range("2026-09-07", "2026-09-08", instance)
        meta = again.asset_materializations_for_node("raw_bars")[0].metadata
        assert meta["rows_new_or_changed"].value == 0
        assert stored_rows(quant_env) == first == meta["rows"].value
        holiday = run_range("2026-09-07", "2026-09-07", instance)
        assert holiday.success
        hmeta = holiday.asset_materializations_for_node("raw_bars")[0].metadata
        assert hmeta["rows"].value == 0 and hmeta["expected_minutes"].value == 0


def test_a_grid_past_the_limit_is_warned_in_the_run_log(
    quant_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partitions, "MAX_PARTITION_KEYS", 10)  # the project's grid is larger
    with dg.instance_for_test() as instance:
        result = run_range("2026-09-01", "2026-09-01", instance)
        assert result.success
        records = instance.all_logs(result.run_id)
        warned = [r.user_message for r in records if r.level == logging.WARNING]
        assert any("more than the ~10 partitions per asset" in m for m in warned)


def files_market(folder: Path) -> MarketSourceResource:
    """AAPL at 20 % of its minutes, MSFT whole but cut at 10:29 on 2026-09-03 and with one bad
    print (an open 8 % above the closes around it) on 2026-09-02."""
    source = market().get_source()
    start, end = calendar.span_of_days("2026-09-01", "2026-09-04")
    bars = market_bars(source, TICKERS, start, end)  # type: ignore[arg-type]
    thin = (bars["ticker"] == "AAPL") & (np.random.default_rng(1).random(len(bars)) > 0.2)
    cut = (bars["ticker"] == "MSFT") & (bars["ts"] >= pd.Timestamp("2026-09-03 14:30", tz="UTC"))
    cut &= bars["ts"] < pd.Timestamp("2026-09-04", tz="UTC")
    bad = bars.index[(bars["ticker"] == "MSFT") & (bars["ts"] == BAD_PRINT)]
    for col in ("open", "high"):
        bars.loc[bad, col] = bars.loc[bad, "close"] * 1.08
    write_bars(bars[~thin & ~cut], folder)
    return MarketSourceResource(tickers=TICKERS, source="files", files_dir=str(folder))


def test_coverage_is_judged_per_ticker(
    quant_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = {"database": DatabaseResource(), "market": files_market(tmp_path / "files")}
    tags = {
        "dagster/asset_partition_range_start": f"2026-09-01|{TICKERS[0]}",
        "dagster/asset_partition_range_end": f"2026-09-04|{TICKERS[-1]}",
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize([raw_bars], instance=instance, resources=resources, tags=tags)
        monkeypatch.setenv("QUANT_COMPLETENESS_FLOOR", "0.98")
        fixed = dg.materialize([raw_bars], instance=instance, resources=resources, tags=tags)
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}
    complete = check["complete_against_calendar"]
    assert not complete.passed  # the cut session only: thin AAPL is complete at its own share
    assert complete.metadata["incomplete_sessions"].value == 1
    assert complete.metadata["worst_partitions"].value[0].startswith("2026-09-03|MSFT: 15%")
    meta = result.asset_materializations_for_node("raw_bars")[0].metadata
    assert meta["truncated_sessions"].value == 1 and meta["holes"].value == 0
    assert meta["coverage"].value["MSFT"]["truncated"] == ["2026-09-03"]
    spikes = check["no_price_spikes"]
    assert not spikes.passed and spikes.metadata["spiked_prices"].value == 2  # open and high
    assert spikes.metadata["spikes"].value[0].startswith(f"MSFT {BAD_PRINT.isoformat()} high")
    floor = {c.check_name: c for c in fixed.get_asset_check_evaluations()}
    assert floor["complete_against_calendar"].metadata["incomplete_sessions"].value == 5


@pytest.mark.postgres
def test_dagster_instance_on_postgres(pg_server, tmp_path: Path, monkeypatch) -> None:
    """dagster.postgres.yaml, as shipped, runs an instance whose storage is real PostgreSQL."""
    from quant_assets_tests.helpers import new_pg_database

    url = new_pg_database(pg_server)
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    for name, value in {
        "DAGSTER_PG_HOST": parts.host,
        "DAGSTER_PG_PORT": str(parts.port),
        "DAGSTER_PG_USER": parts.username,
        "DAGSTER_PG_PASSWORD": parts.password,
        "DAGSTER_PG_DB": parts.database,
    }.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((REPO / "dagster.postgres.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("QUANT_HOME", str(tmp_path / "quant"))
    monkeypatch.delenv("QUANT_DATABASE_URL", raising=False)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run_range("2026-09-01", "2026-09-01", instance)
        assert result.success
        assert instance.get_latest_materialization_event(dg.AssetKey("raw_bars")) is not None
    assert parts.password not in (home / "dagster.yaml").read_text()


def test_definitions_load_and_validate() -> None:
    from quant_assets.definitions import defs

    # Loading reads Dagster's context-local defs-state storage; an instance another test
    # opened and never closed could otherwise be the one found. Give it a live one.
    with dg.instance_for_test():
        dg.Definitions.validate_loadable(defs)
    env = {**os.environ, "DAGSTER_HOME": ""}
    env.pop("DAGSTER_HOME")
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", MODULE],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@given(st.integers(1, 500), st.from_regex(r"[A-Z0-9.\-]{1,10}", fullmatch=True), st.text())
def test_a_progress_line_names_its_ticker(done: int, ticker: str, text: str) -> None:
    assert ticker_done(progress_line(done, done + 1, ticker, text)) == ticker
    assert ticker_done(f"{ticker}: {text}") is None  # any other message of the run
