"""corporate_actions and adjusted_bars through Dagster, on SQLite and on real PostgreSQL."""

from __future__ import annotations

import logging
from functools import cache

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from quant_assets.corporate_actions import adjusted_store
from quant_assets.corporate_actions import ledger as action_ledger
from quant_assets.defs.corporate_actions import (
    CHECK_LEDGER_VALID,
    CHECK_NO_JUMP,
    adjusted_bars,
    adjusted_bars_rebuild_sensor,
    corporate_actions,
    premarket_corporate_actions_job,
    premarket_corporate_actions_schedule,
    rebuild_adjusted_bars_job,
)
from quant_assets.defs.ingestion import raw_bars
from quant_assets.defs.partitions import day_key
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.market import calendar
from quant_assets.settings import Settings
from quant_assets.storage.bars import write_bars
from quant_assets.storage.database import get_engine

log = logging.getLogger(__name__)

TICKERS = ["AAPL", "MSFT"]  # synthetic positions 0 (2:1 split, dividends) and 1 (3:1 split)
FIRST, LAST = "2026-01-02", "2026-06-30"
START = pd.Timestamp(FIRST, tz=calendar.MARKET_TZ).tz_convert("UTC")
END = pd.Timestamp("2026-07-01", tz=calendar.MARKET_TZ).tz_convert("UTC")
SESSIONS = calendar.sessions(FIRST, LAST)
AAPL_SPLIT = pd.Timestamp("2026-03-16")  # session index max(5, int(0.40 × 124)) = 49


def market() -> MarketSourceResource:
    return MarketSourceResource(tickers=TICKERS, synthetic_start=FIRST, synthetic_end=LAST)


def resources() -> dict[str, object]:
    return {"database": DatabaseResource(), "market": market()}


@cache
def sampled(ticker: str) -> pd.DataFrame:
    bars = market().get_source().get_bars(ticker, START, END)
    session = calendar.session_labels(bars["ts"])
    edge = (session != session.shift(1)) | (session != session.shift(-1))
    return bars[(edge | (bars["ts"].dt.minute % 30 == 0)).to_numpy()].reset_index(drop=True)


def load_raw(settings: Settings) -> None:
    for ticker in TICKERS:
        write_bars(sampled(ticker), get_engine(settings))


def run_adjusted(instance: dg.DagsterInstance, first: str, last: str, tickers=()):
    """adjusted_bars over days first … last (every ticker, or ``tickers``)."""
    return dg.materialize(
        [raw_bars, corporate_actions, adjusted_bars],
        selection=[adjusted_bars],
        instance=instance,
        resources=resources(),
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        run_config={"ops": {"adjusted_bars": {"config": {"tickers": list(tickers)}}}},
    )


def run_ledger(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [corporate_actions, adjusted_bars],
        selection=[corporate_actions],
        instance=instance,
        resources=resources(),
    )


def asset_meta(result: dg.ExecuteInProcessResult, node: str) -> dict:
    """Metadata of the run's own materializations (not the reported earlier partitions)."""
    own = [
        m
        for m in result.asset_materializations_for_node(node)
        if "rebuilt_because" not in m.metadata
    ]
    return own[0].metadata


def data_version(result: dg.ExecuteInProcessResult) -> str:
    return result.get_asset_materialization_events()[0].materialization.tags["dagster/data_version"]


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def assert_matches_truth(settings: Settings) -> float:
    source = market().get_source()
    worst = 0.0
    for ticker in TICKERS:
        got = adjusted_store.read_adjusted_bars(get_engine(settings), [ticker], START, END)
        want = source.true_adjusted_bars(ticker, START, END)
        want = want[want["ts"].isin(got["ts"])].reset_index(drop=True)
        assert got["ts"].tolist() == want["ts"].tolist()
        for col in ("open", "high", "low", "close"):
            worst = max(worst, float(np.max(np.abs(got[col] / want[col] - 1))))
        assert (got["volume"].to_numpy() == want["volume"].to_numpy()).all()
    assert worst < 1e-9
    return worst


def rebuilt_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetMaterialization]:
    records = instance.fetch_materializations(dg.AssetKey("adjusted_bars"), limit=1000).records
    return [
        r.asset_materialization
        for r in records
        if r.run_id == run_id and "rebuilt_because" in r.asset_materialization.metadata
    ]


def planner_rows(settings: Settings) -> tuple[float, int] | None:
    """PostgreSQL's planner estimate of adjusted_bars' rows (-1 until analyzed) and the true
    count; None on SQLite, which keeps no statistics to refresh."""
    engine = get_engine(settings)
    if engine.dialect.name != "postgresql":
        return None
    estimate = "SELECT reltuples FROM pg_class WHERE relname = 'adjusted_bars'"
    with engine.connect() as conn:
        counted = conn.execute(text("SELECT count(*) FROM adjusted_bars")).scalar_one()
        return float(conn.execute(text(estimate)).scalar_one()), int(counted)


@pytest.fixture(autouse=True)
def two_tickers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANT_TICKERS", ",".join(TICKERS))


def test_ledger_then_adjusted_bars_equal_ground_truth(quant_env: Settings) -> None:
    load_raw(quant_env)
    with dg.DagsterInstance.ephemeral() as instance:
        ledger_run = run_ledger(instance)
        assert ledger_run.success
        meta = ledger_run.asset_materializations_for_node("corporate_actions")[0].metadata
        assert meta["new_actions"].value == 4  # AAPL: split + 2 dividends; MSFT: split
        assert meta["stale_tickers"].value == {}
        assert checks(ledger_run)[CHECK_LEDGER_VALID].passed
        version = data_version(ledger_run)

        last_two = [d.strftime("%Y-%m-%d") for d in SESSIONS[-2:]]
        result = run_adjusted(instance, last_two[0], last_two[1])
        assert result.success and len(instance.get_runs()) == 2
        assert checks(result)[CHECK_NO_JUMP].passed
        rows = planner_rows(quant_env)  # statistics refreshed for the jump check's join
        assert rows is None or rows[0] == rows[1] > 0
        meta = asset_meta(result, "adjusted_bars")
        assert meta["full_rebuilds"].value == 2 and meta["actions_applied"].value == 4
        assert meta["scope"].value == "all 2 tickers"
        two_days = calendar.span_of_days(SESSIONS[-2], SESSIONS[-1])
        stored = adjusted_store.read_adjusted_bars(get_engine(quant_env), TICKERS, *two_days)
        assert meta["rows_stored"].value == len(stored) > 0
        assert rebuilt_events(instance, result.run_id) == []  # a first build made nothing stale
        worst = assert_matches_truth(quant_env)
        log.info(f"max relative error vs ground truth through Dagster: {worst:.2e}")

        again = run_ledger(instance)
        meta = again.asset_materializations_for_node("corporate_actions")[0].metadata
        assert meta["new_actions"].value == 0 and meta["unchanged_actions"].value == 4
        assert data_version(again) == version  # same ledger, same data version
        rerun = run_adjusted(instance, last_two[0], last_two[1])
        modes = asset_meta(rerun, "adjusted_bars")["modes"].value
        assert modes == {"AAPL": "sessions", "MSFT": "sessions"}
        assert rebuilt_events(instance, rerun.run_id) == []


def test_missing_split_is_flagged_then_the_new_action_rebuilds_earlier_partitions(
    quant_env: Settings,
) -> None:
    load_raw(quant_env)
    engine = get_engine(quant_env)
    source = market().get_source()
    ledger = pd.concat(
        action_ledger.ledger_from_source(
            source.get_splits(t), source.get_dividends(t), "test", START
        )
        for t in TICKERS
    )
    without_split = ledger[~((ledger["ticker"] == "AAPL") & (ledger["action"] == "split"))]
    action_ledger.record_corporate_actions(without_split, engine, TICKERS, today=pd.Timestamp(LAST))
    last = SESSIONS[-1].strftime("%Y-%m-%d")
    with dg.DagsterInstance.ephemeral() as instance:
        flagged = run_adjusted(instance, last, last, ["AAPL"])
        check = checks(flagged)[CHECK_NO_JUMP]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        jumps = check.metadata["jumps"].value
        assert len(jumps) == 1 and jumps[0].startswith(f"AAPL {AAPL_SPLIT.date()}: -0.6")

        ledger_run = run_ledger(instance)
        stale = (
            ledger_run.asset_materializations_for_node("corporate_actions")[0]
            .metadata["stale_tickers"]
            .value
        )
        assert list(stale) == ["AAPL"]
        assert stale["AAPL"]["changes"] == [f"new split 2:1 ex {AAPL_SPLIT.date()}"]
        assert stale["AAPL"]["stale_sessions"] == int((SESSIONS < AAPL_SPLIT).sum())

        defs = dg.Definitions(
            assets=[raw_bars, corporate_actions, adjusted_bars],
            jobs=[rebuild_adjusted_bars_job],
            sensors=[adjusted_bars_rebuild_sensor],
            resources=resources(),
        )
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        tick = adjusted_bars_rebuild_sensor.evaluate_tick(context)
        (request,) = tick.run_requests
        assert request.partition_key == day_key(last)
        assert request.run_config == {"ops": {"adjusted_bars": {"config": {"tickers": ["AAPL"]}}}}
        assert "new split 2:1" in request.tags["quant/rebuild_reason"]

        rebuild = dg.materialize(
            [raw_bars, corporate_actions, adjusted_bars],
            selection=[adjusted_bars],
            instance=instance,
            resources=resources(),
            partition_key=request.partition_key,
            run_config=request.run_config,
        )
        assert rebuild.success and checks(rebuild)[CHECK_NO_JUMP].passed
        meta = asset_meta(rebuild, "adjusted_bars")
        n_before = int((SESSIONS < AAPL_SPLIT).sum())
        assert meta["rebuilds"].value == [
            f"rebuilt {n_before} earlier sessions of AAPL because of new split 2:1 ex "
            f"{AAPL_SPLIT.date()}"
        ]
        events = rebuilt_events(instance, rebuild.run_id)
        assert len(events) == n_before
        assert all(
            e.metadata["rebuilt_because"].value == f"AAPL: new split 2:1 ex {AAPL_SPLIT.date()}"
            and e.metadata["rebuilt_tickers"].value == ["AAPL"]
            for e in events
        )
        partitions = {e.partition for e in events}
        assert day_key(SESSIONS[0]) in partitions
        assert day_key(AAPL_SPLIT) not in partitions  # factors unchanged there
        assert "| AAPL | full |" in meta["per_ticker"].value
        # the partition's figures still name every ticker: MSFT was never built
        assert meta["scope"].value.startswith("1 of 2 tickers (AAPL)")
        assert "| MSFT | not in this run | – | – | 0 |" in meta["per_ticker"].value
        day = calendar.span_of_days(SESSIONS[-1], SESSIONS[-1])
        assert meta["rows_stored"].value == len(
            adjusted_store.read_adjusted_bars(engine, ["AAPL"], *day)
        )

        adjusted_store.rebuild_adjusted_bars(engine, ["MSFT"])
        assert_matches_truth(quant_env)
        after = run_ledger(instance)
        assert (
            after.asset_materializations_for_node("corporate_actions")[0]
            .metadata["stale_tickers"]
            .value
            == {}
        )


def test_schedule_jobs_and_definitions_load() -> None:
    assert premarket_corporate_actions_schedule.cron_schedule == "0 8 * * 1-5"
    assert premarket_corporate_actions_schedule.execution_timezone == "America/New_York"
    assert premarket_corporate_actions_schedule.job_name == premarket_corporate_actions_job.name
    defs = dg.Definitions(
        assets=[raw_bars, corporate_actions, adjusted_bars],
        jobs=[premarket_corporate_actions_job, rebuild_adjusted_bars_job],
        schedules=[premarket_corporate_actions_schedule],
        sensors=[adjusted_bars_rebuild_sensor],
        resources=resources(),
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    parents = graph.get(dg.AssetKey("adjusted_bars")).parent_keys
    assert parents == {dg.AssetKey("raw_bars"), dg.AssetKey("corporate_actions")}
